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

    def write(self, data: dict[str, dict[str, Any]], encoded: Encoded | None = None) -> None:
        """`encoded`: the documents of data["jobs"] as encoded before (active.json's 10,000 waiting jobs are not
        encoded again when one of them changed)."""
        body = encoded.table(data, "jobs") if encoded is not None else json.dumps(data, separators=(",", ":")).encode()
        write_atomic(self.path, body)

    def close(self) -> None:
        return None


class Encoded:
    """Compact JSON of documents, each encoded once per document object: the store replaces a changed job's
    document and never edits one, so an unchanged object encodes the same."""

    def __init__(self) -> None:
        self._seen: dict[Any, tuple[Any, bytes]] = {}

    def of(self, key: Any, doc: Any) -> bytes:
        seen = self._seen.get(key)
        if seen is None or seen[0] is not doc:
            seen = self._seen[key] = (doc, json.dumps(doc, separators=(",", ":")).encode())
        return seen[1]

    def keep(self, keys: set[Any]) -> None:
        for gone in self._seen.keys() - keys:
            del self._seen[gone]

    def table(self, data: dict[str, Any], name: str) -> bytes:
        """`data` as json.dumps(separators=(",", ":")) writes it, `name`'s table first."""
        table = data.get(name) or {}
        parts = [json.dumps(key).encode() + b":" + self.of(key, doc) for key, doc in table.items()]
        self.keep(set(table))
        rest = json.dumps({k: v for k, v in data.items() if k != name}, separators=(",", ":")).encode()
        head = b'{"' + name.encode() + b'":{' + b",".join(parts) + b"}"
        return head + (b"," + rest[1:] if rest != b"{}" else b"}")

    def array(self, name: str, docs: list[tuple[Any, Any]]) -> bytes:
        """`{name: [doc, ...]}` for (key, doc) pairs, in their order."""
        parts = [self.of(key, doc) for key, doc in docs]
        self.keep({key for key, _ in docs})
        return b'{"' + name.encode() + b'":[' + b",".join(parts) + b"]}"


def version(path: Path) -> tuple[int, int, int] | None:
    """A file's inode, size and mtime (None: absent): what a cache of the file's parse is keyed by."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
