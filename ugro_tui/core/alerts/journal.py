"""The cluster's events: the last KEEP in `events.jsonl` in the state dir, and which ones were delivered.

Only the dispatcher (the lock holder) writes; anyone reads. An event is written before it is delivered, and marked
delivered after its notify command ran, so a dispatcher killed in between delivers it again on its next start (at
least once); ids make a second write of the same happening a no-op.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from ugro_tui import paths
from ugro_tui.atomic import write_atomic
from ugro_tui.core.alerts.rules import Event

KEEP = 1000


def journal_path() -> Path:
    return paths.state_dir() / "events.jsonl"


def read_events(path: Path | None = None, offset: int = 0) -> tuple[list[Event], int]:
    """Events from byte `offset` on, and the offset after the last whole line (a torn last line waits)."""
    path = path or journal_path()
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], 0
    if offset and not data and path.stat().st_size < offset:  # trimmed since: start again
        return read_events(path, 0)
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].splitlines():
        try:
            out.append(Event.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue
    return out, offset + end


class Journal:
    def __init__(self, root: Path | None = None) -> None:
        root = root or paths.state_dir()
        self.path = root / "events.jsonl"
        self.state_path = root / "events.state.json"
        root.mkdir(parents=True, exist_ok=True)
        events, _ = read_events(self.path)
        self.ids = {e.id for e in events}
        self.state = self._load_state()
        self._lock = threading.Lock()  # the round and the delivery run in two threads

    def _load_state(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {"delivered": [], "watching": None}
        if not isinstance(doc, dict):
            return {"delivered": [], "watching": None}
        delivered = [d for d in doc.get("delivered") or [] if isinstance(d, str)]
        watching = doc.get("watching")
        watching = [int(i) for i in watching if isinstance(i, int)] if isinstance(watching, list) else None
        return {"delivered": delivered, "watching": watching}

    def save_state(self) -> None:
        with self._lock:
            self.state["delivered"] = self.state["delivered"][-2 * KEEP:]
            write_atomic(self.state_path, json.dumps(self.state))

    @property
    def watching(self) -> set[int] | None:
        """Job ids not finished at the last look; None before the first (nothing before it is reported)."""
        ids = self.state["watching"]
        return None if ids is None else set(ids)

    def watch(self, ids: set[int]) -> None:
        self.state["watching"] = sorted(ids)

    def add(self, events: list[Event]) -> list[Event]:
        """Append the events not written before; returns those."""
        with self._lock:
            return self._add(events)

    def _add(self, events: list[Event]) -> list[Event]:
        new = [e for e in events if e.id not in self.ids]
        if not new:
            return []
        data = "".join(json.dumps(e.to_json()) + "\n" for e in new).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.ids.update(e.id for e in new)
        self._trim()
        return new

    def _trim(self) -> None:
        if len(self.ids) <= KEEP + KEEP // 5:
            return
        events, _ = read_events(self.path)
        kept = events[-KEEP:]
        write_atomic(self.path, "".join(json.dumps(e.to_json()) + "\n" for e in kept))
        self.ids = {e.id for e in kept}

    def undelivered(self) -> list[Event]:
        done = set(self.state["delivered"])
        return [e for e in read_events(self.path)[0] if e.id not in done]

    def delivered(self, event: Event) -> None:
        with self._lock:
            self.state["delivered"].append(event.id)
        self.save_state()
