"""The store's files as TinyDB sees them: JSON documents written all-or-nothing (atomic.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tinydb.storages import Storage

from ugro_tui.atomic import write_atomic


class Corrupt(Exception):
    """A file that is no JSON document (the store sets it aside, or recovers from the generation before)."""


class AtomicJSONStorage(Storage):
    """A TinyDB storage whose writes are all-or-nothing: a crash leaves the old file or the new one."""

    def __init__(self, path: str | os.PathLike[str], **_: Any) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if not raw.strip():
            return None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise Corrupt(f"not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise Corrupt("not a TinyDB document")
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        write_atomic(self.path, json.dumps(data, separators=(",", ":")).encode())

    def close(self) -> None:
        return None


def version(path: Path) -> tuple[int, int, int] | None:
    """A file's inode, size and mtime (None: absent): what a cache of the file's parse is keyed by."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
