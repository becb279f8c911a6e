"""The dispatcher's lock: exactly one dispatcher per job store (a flock), and who holds it, for the app to show."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


class DispatcherLock:
    """flock on `dispatcher.lock`; the holder writes who it is, so the TUI can show it."""

    def __init__(self, root: Path) -> None:
        self.path = root / "dispatcher.lock"
        self._file: IO[str] | None = None

    def acquire(self, owner: str) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 - held open for as long as we dispatch
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        f.seek(0)
        f.truncate()
        f.write(f"{owner} pid {os.getpid()}\n")
        f.flush()
        self._file = f
        return True

    def holder(self) -> str | None:
        """Who dispatches now, if not us: e.g. "scheduler pid 4242"."""
        if self._file is not None:
            return None
        try:
            return self.path.read_text().strip() or None
        except OSError:
            return None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
