"""The dispatcher: exactly one at a time (a lock file), in the TUI or headless as `ugro scheduler`.

Each tick it settles dependencies, follows running jobs, carries out cancel requests, places waiting jobs on
free GPUs and hands each placement to the launcher.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.model import Job, JobState
from ugro_tui.core.jobs.placement import Decision, FreeGpu, NodeCapacity, place
from ugro_tui.core.jobs.store import AsyncJobStore, JobStore
from ugro_tui.core.telemetry.model import ClusterState, NodeState


class Launcher(Protocol):
    """Starts placed jobs on their nodes and follows them (the launch issue's SSH launcher implements this)."""

    async def start(self, job: Job) -> Job:
        """Start `job` (state starting, placement set); return it running, with per-node runs recorded."""
        ...

    async def poll(self, job: Job) -> Job:
        """Return the job as it is now: still running, or finished with exit codes and a reason."""
        ...

    async def cancel(self, job: Job) -> Job:
        """Stop every process of the job on every node; return it cancelled."""
        ...


def capacity(cluster: Cluster, state: ClusterState, jobs: list[Job]) -> list[NodeCapacity]:
    """Free GPUs per node: online, no process on it (anyone's process makes it busy), not held by a job."""
    taken = {(node, gpu) for job in jobs if job.state.active for node, gpus in job.placement for gpu in gpus}
    out = []
    for node in cluster.nodes:
        status = state.nodes.get(node.name)
        gpus = status.gpus if status is not None else ()
        online = status is not None and status.state is NodeState.ONLINE and status.error is None
        free = tuple(FreeGpu(g.index, g.memory_free_mib) for g in gpus
                     if online and not g.processes and (node.name, g.index) not in taken)
        out.append(NodeCapacity(node.name, node.labels, free, len(gpus),
                                max((g.memory_total_mib or 0 for g in gpus), default=0)))
    return out


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


class Dispatcher:
    def __init__(self, cluster: Cluster, store: JobStore, state: ClusterState, launcher: Launcher, *,
                 starve_after: float = 600.0, clock: Callable[[], float] = time.time) -> None:
        self.cluster = cluster
        self.store = AsyncJobStore(store)  # every store call in a thread: the event loop never waits on a flock
        self.state = state
        self.launcher = launcher
        self.starve_after = starve_after
        self.clock = clock

    async def tick(self) -> list[Job]:
        """One round; returns the jobs still queued, starting or running afterwards."""
        jobs = {j.id: j for j in await self.store.active()}
        await self._follow(jobs)
        waiting = await self._settle_dependencies(jobs)
        decisions = place(waiting, capacity(self.cluster, self.state, list(jobs.values())), now=self.clock(),
                          starve_after=self.starve_after)
        await self._apply(decisions, jobs)
        return [j for j in await self.store.active() if j.state is not JobState.HELD]

    async def _follow(self, jobs: dict[int, Job]) -> None:
        for job in list(jobs.values()):
            if job.cancel_requested and not job.state.finished:
                if job.state.active:
                    done = await self.launcher.cancel(job)
                    await self.store.update(job.id, lambda _j, d=done: d)
                else:
                    await self.store.move(job.id, JobState.CANCELLED, reason="cancelled")
                jobs.pop(job.id)
            elif job.state.active:
                now = await self.launcher.poll(job)
                if now != job:
                    await self.store.update(job.id, lambda _j, n=now: n)
                    jobs[job.id] = now
                if now.state.finished:
                    jobs.pop(job.id)

    async def _settle_dependencies(self, jobs: dict[int, Job]) -> list[Job]:
        waiting = []
        reasons: dict[int, str] = {}
        for job in jobs.values():
            if job.state is not JobState.QUEUED:
                continue
            blocked = None
            for dep in job.spec.after:
                other = jobs.get(dep) or await self.store.get(dep)
                if other.state in (JobState.FAILED, JobState.CANCELLED):
                    await self.store.move(job.id, JobState.FAILED, reason=f"job {dep} it runs after was {other.state}")
                    blocked = "failed"
                    break
                if other.state is not JobState.SUCCEEDED:
                    blocked = f"waits for job {dep} to succeed"
            if blocked is None:
                waiting.append(job)
            elif blocked != "failed":
                reasons[job.id] = blocked
        await self._set_reasons(jobs, reasons)
        return waiting

    async def _set_reasons(self, jobs: dict[int, Job], reasons: dict[int, str]) -> None:
        changes = {jid: (lambda j, r=r: dataclasses.replace(j, reason=r))
                   for jid, r in reasons.items() if jid in jobs and jobs[jid].reason != r}
        if changes:
            await self.store.update_active(changes)

    async def _apply(self, decisions: list[Decision], jobs: dict[int, Job]) -> None:
        reasons = {}
        for d in decisions:
            if d.placement is None:
                reasons[d.job_id] = d.reason
                continue
            job = await self.store.move(d.job_id, JobState.STARTING, reason="starting", placement=d.placement)
            try:
                started = await self.launcher.start(job)
            except Exception as exc:  # a failed start is the job's failure, never the dispatcher's
                await self.store.move(job.id, JobState.FAILED, reason=f"could not start: {exc}")
                continue
            await self.store.update(job.id, lambda _j, s=started: s)
        await self._set_reasons(jobs, reasons)

    async def run(self, *, interval: float, until_idle: bool = False, ready: Callable[[], bool] = lambda: True
                  ) -> None:
        while True:
            if ready():
                left = await self.tick()
                if until_idle and not left:
                    return
            await asyncio.sleep(interval)
