"""A job's events: what ugro did to it beyond its states (checkpoints deleted, copied, resumed from), one JSON line
each in the state dir, appended, so a crash loses at most the line being written."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ugro_tui import paths


def _path(job_id: int, kind: str = "jsonl") -> Path:
    return paths.state_dir() / "events" / f"job-{int(job_id)}.{kind}"


def add(job_id: int, text: str, now: float | None = None, kind: str = "jsonl") -> None:
    path = _path(job_id, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"t": round(time.time() if now is None else now, 3), "event": text}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write with O_APPEND: lines from two processes never interleave
    finally:
        os.close(fd)


def add_states(job_id: int, trail: tuple[str, ...]) -> None:
    """The states a stored change went through (`queued → starting → running`), apart from the events the detail
    shows: `ugro show --json` has them as "states", the job's history of states whichever backend ran it."""
    add(job_id, " → ".join(trail), kind="states.jsonl")


def states(job_id: int) -> list[tuple[float, str]]:
    return read(job_id, kind="states.jsonl")


def read(job_id: int, kind: str = "jsonl") -> list[tuple[float, str]]:
    try:
        text = _path(job_id, kind).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
            out.append((float(doc["t"]), str(doc["event"])))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line
    return out


def tell(job, text: str, kind: str) -> None:
    """A happening worth more than the job's own events: also in the event journal, so `notify_command`, `ugro
    events` and the app's toasts get it (gpu-mem-over, session-ending, job-preempted, ...)."""
    from ugro_tui.core.alerts.journal import Journal
    from ugro_tui.core.alerts.rules import Event

    add(job.id, text)
    now = time.time()
    said = text if kind.startswith("session-") else f"job {job.id} ({job.spec.name}): {text}"  # a session's names it
    Journal().add([Event(f"{kind}-{job.id}-{int(now)}", kind, now, said, job.id, job.spec.name)])
