"""The job store for code on an event loop: each call runs in a thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ugro_tui.core.jobs.model import Job, JobSpec, JobState
from ugro_tui.core.jobs.store import JobStore


class AsyncJobStore:
    """The job store for code on an event loop: every call runs in a thread, so a lock held by another process
    (flock) and the fsync of a write never freeze the app or the dispatcher."""

    def __init__(self, store: JobStore) -> None:
        self.sync = store

    async def identity(self) -> str:
        return await asyncio.to_thread(self.sync.identity)

    async def active(self) -> list[Job]:
        return await asyncio.to_thread(self.sync.active)

    async def take_in(self) -> None:
        await asyncio.to_thread(self.sync.take_in)

    async def all(self) -> list[Job]:
        return await asyncio.to_thread(self.sync.all)

    async def get(self, job_id: int) -> Job:
        return await asyncio.to_thread(self.sync.get, job_id)

    async def submit(self, specs: list[JobSpec], **options: Any) -> list[Job]:
        return await asyncio.to_thread(self.sync.submit, specs, **options)

    async def update(self, job_id: int, change: Callable[[Job], Job]) -> Job:
        return await asyncio.to_thread(self.sync.update, job_id, change)

    async def update_active(self, changes: dict[int, Callable[[Job], Job]]) -> list[Job]:
        return await asyncio.to_thread(self.sync.update_active, changes)

    async def move(self, job_id: int, to: JobState, *, reason: str = "", **changes: Any) -> Job:
        return await asyncio.to_thread(lambda: self.sync.move(job_id, to, reason=reason, **changes))
