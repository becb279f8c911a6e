"""The dispatcher's watch on shared cards: a rank over its declared memory gets a warning (the job's reason while
it runs, its events, the event journal and so notify_command), or with `gpu_mem_enforce` stops the job as failed;
and a job that ran out of CUDA memory on a shared card is told who shared it."""

from __future__ import annotations

import asyncio
import dataclasses

from ugro_tui.core.jobs import events
from ugro_tui.core.jobs.async_store import AsyncJobStore
from ugro_tui.core.jobs.model import Job, JobState
from ugro_tui.core.jobs.sharing import OverUse, OverUseWatch, card_room, declared_mib, gb, sharers_of
from ugro_tui.core.telemetry.model import ClusterState, GpuSample, NodeState

OOM = "CUDA out of memory"


class MemoryWatch:
    def __init__(self, store: AsyncJobStore, state: ClusterState) -> None:
        self.store = store
        self.state = state
        self.watch = OverUseWatch()
        self.seen: dict[str, float] = {}
        self.short: set[tuple[str, int]] = set()  # shared cards told of being short (until they are not)

    async def observe(self, jobs: dict[int, Job]) -> None:
        sharing = {j.id: j for j in jobs.values() if j.state is JobState.RUNNING and declared_mib(j.spec)}
        found: list[OverUse] = []
        for name, status in list(self.state.nodes.items()):
            at = status.received_at
            if at is None or at == self.seen.get(name) or status.state is not NodeState.ONLINE:
                continue
            self.seen[name] = at
            found += self.watch.observe(name, at, status.gpus, sharing)
            for gpu in status.gpus:
                await self._short(name, gpu, sharers_of(sharing.values(), name, gpu.index))
        for over in found:
            await self._act(sharing[over.job_id], over)

    async def _short(self, node: str, gpu: GpuSample, sharers: list[Job]) -> None:
        """A shared card whose other processes grew so far that its jobs' declared memory no longer fits: the jobs
        are warned, naming what grew. ugro never kills a process it did not start; new placements see the room
        gone."""
        room = card_room(gpu, sharers, 0)
        key = (node, gpu.index)
        foreign = [h for h in room.holders if h.job is None] if room is not None and sharers else []
        if room is None or not room.short_mib or not foreign:
            self.short.discard(key)
            return
        if key in self.short:
            return
        self.short.add(key)
        text = (f"{node}:{gpu.index} is {gb(room.short_mib)} short of what its jobs declared: "
                + ", ".join(str(h) for h in foreign) + " (ugro does not stop processes it did not start)")
        for job in sharers:
            await asyncio.to_thread(events.tell, job, f"warning: {text}", "gpu-mem-over")
            await self.store.update_active({job.id: lambda j, t=text: dataclasses.replace(j, warning=t)
                                            if j.state.active else j})

    async def _act(self, job: Job, over: OverUse) -> None:
        enforce = job.spec.gpu_mem_enforce
        text = f"stopped: {over}" if enforce else f"warning: {over}"
        await asyncio.to_thread(events.tell, job, text, "gpu-mem-over")

        def change(j: Job) -> Job:
            if not j.state.active:
                return j
            if enforce:
                return j if j.stop else dataclasses.replace(j, stop=f"stopped by --gpu-mem-enforce: {over}")
            return dataclasses.replace(j, warning=str(over))

        await self.store.update_active({job.id: change})

    def shared_with(self, job: Job, jobs: dict[int, Job]) -> str:
        """Who else was on the cards of a job that ran out of CUDA memory: the other sharing jobs and processes."""
        others: list[str] = []
        for node, gpus in job.placement:
            status = self.state.nodes.get(node)
            for gpu in status.gpus if status else ():
                if gpu.index not in gpus:
                    continue
                room = card_room(gpu, sharers_of({**jobs, job.id: job}.values(), node, gpu.index), 0)
                others += [f"{h} on {node}:{gpu.index}" for h in (room.holders if room else ()) if h.job != job.id]
        return "; the card was shared with " + ", ".join(others) if others else ""


def diagnose_shared(job: Job, before: Job, jobs: dict[int, Job], watch: MemoryWatch) -> Job:
    """A sharing job that failed with CUDA out of memory: its diagnosis names what shared its cards."""
    if not declared_mib(job.spec) or not job.diagnosis or job.diagnosis == before.diagnosis \
            or not job.diagnosis.startswith(OOM):
        return job
    cause, sep, hint = job.diagnosis.partition(" — ")
    shared = watch.shared_with(before, jobs)
    if not shared:
        return job
    return dataclasses.replace(job, diagnosis=f"{cause}{shared}{sep}{hint}")
