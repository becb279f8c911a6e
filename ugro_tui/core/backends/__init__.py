"""Where jobs run: ugro's own dispatcher over SSH (core/jobs) or a Slurm cluster (slurm/), behind one interface."""

from __future__ import annotations

from typing import Protocol

from ugro_tui.core.jobs.model import Job


class Backend(Protocol):
    """What the app, `ugro scheduler`, `ugro web` and the doctor drive, whichever runs the jobs. The store is the
    shared truth: they submit, cancel, hold and release by writing it; the backend's tick carries it out."""

    errors: dict[int, str]  # job id -> the last error met while handling it

    async def tick(self) -> list[Job]:
        """One round; returns the jobs still queued, starting or running afterwards (held ones are not)."""
        ...

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for what the last rounds left in flight."""
        ...
