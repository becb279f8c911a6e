"""New jobs, appended to a log beside active.json: a submit writes one line however many jobs wait.

`ugro submit` appends its jobs (one JSON document per line, fsynced) under the store's lock and is done. The next
write of active.json under the lock takes them in and rotates the log to `submitted.prev.jsonl`, so a damaged
active.json recovered from its previous generation gets them back from there. A crash between the two writes
leaves a job in both files: active.json's copy wins. A line cut short by a crash mid-append was never
acknowledged; it is skipped, and the next append starts on a line of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from ugro_tui.atomic import fsync_dir
from ugro_tui.core.jobs.json_files import version


class Inbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.previous_path = path.with_name("submitted.prev.jsonl")
        self._seen: tuple[tuple[int, int, int], dict[str, dict[str, Any]]] | None = None

    def append(self, docs: list[dict[str, Any]]) -> None:
        """Durable once it returns (call it under the store's lock)."""
        payload = b"".join(json.dumps(d, separators=(",", ":")).encode() + b"\n" for d in docs)
        new = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn line from a crash: end it first
                payload = b"\n" + payload
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_dir(self.path.parent)

    def docs(self) -> dict[str, dict[str, Any]]:
        """id -> document of every job in the log, read once per version of the file."""
        return self._read(self.path, cache=True)

    def previous_docs(self) -> dict[str, dict[str, Any]]:
        return self._read(self.previous_path, cache=False)

    def _read(self, path: Path, *, cache: bool) -> dict[str, dict[str, Any]]:
        key = version(path)
        if key is None:
            return {}
        if cache and self._seen is not None and self._seen[0] == key:
            return self._seen[1]
        out: dict[str, dict[str, Any]] = {}
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}
        for line in raw.split(b"\n")[:-1]:  # the part after the last newline was never acknowledged
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict) and isinstance(doc.get("id"), int):
                    out[str(doc["id"])] = doc
        if cache:
            self._seen = (key, out)
        return out

    def rotate(self) -> None:
        """After active.json took the log's jobs in (under the lock): the log starts empty."""
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, self.previous_path)
            fsync_dir(self.path.parent)
