"""The dispatcher's watch on desktops: a process ugro did not start that holds more than `yield_min_mib` on one of a
desktop's GPUs for `yield_after` seconds yields that GPU to its user; once the process has been gone for
`yield_idle_minutes`, the GPU comes back. In each round, before placing, the jobs on yielded GPUs are asked to make
way: the preemptible ones are preempted (requeued, keeping their work), the others stop only when the yield was
forced (failed, their retry policy applying)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.async_store import AsyncJobStore
from ugro_tui.core.jobs.elastic import without
from ugro_tui.core.jobs.model import Job, JobState
from ugro_tui.core.jobs.sharing import gb
from ugro_tui.core.jobs.yields import STOP_PREFIX, Yield, YieldBook, expired, hits, take, yielded
from ugro_tui.core.telemetry.model import ClusterState, GpuProcess, NodeState


def _foreign(processes: tuple[GpuProcess, ...], least_mib: int) -> GpuProcess | None:
    """The biggest process on a card that is no ugro job's rank and holds more than `least_mib`."""
    big = [p for p in processes if p.ugro_job is None and (p.used_mib or 0) > least_mib]
    return max(big, key=lambda p: p.used_mib or 0, default=None)


STAYING = GpuProcess(-1, None, None, None)  # a foreign process there for less than yield_after: not yet a yield


class YieldWatch:
    def __init__(self, cluster: Callable[[], Cluster], store: AsyncJobStore, state: ClusterState,
                 clock: Callable[[], float] = time.time,
                 shed: Callable[[Job, set[str], str], None] = lambda job, nodes, why: None) -> None:
        self.cluster = cluster  # as it is now (cluster.toml may change under a running daemon)
        self.store = store
        self.book = YieldBook(store.sync.root)
        self.state = state
        self.clock = clock
        self.shed = shed  # an elastic job gives up the yielded nodes alone (the dispatcher stops that part)
        self.seen: dict[tuple[str, int], float] = {}  # a foreign process on a desktop's card: since when
        self.sampled: dict[str, float] = {}
        self.yields: list[Yield] = []
        self.started = False  # the first round compares with the file (a restarted daemon tells nothing again)
        self.problem = ""  # the last trouble with the yields file, for `ugro status`

    async def observe(self, jobs: dict[int, Job]) -> list[Yield]:
        """Update the yields from the newest samples, end those whose time is up, and ask the jobs on yielded
        cards to make way. Returns the yields in effect, for placement."""
        cluster = self.cluster()
        now = self.clock()
        found = self._look(cluster, now)
        idle_s = cluster.yield_idle_minutes * 60
        stored, after = await asyncio.to_thread(self.book.change, lambda ys: self._update(ys, found, now, idle_s))
        before = self.yields if self.started else stored  # what the last round saw: yields by hand count too
        self.started = True
        for y in after:
            if not any(b.node == y.node and b.gpus == y.gpus and b.auto == y.auto for b in before):
                await asyncio.to_thread(_tell, "gpu-yielded", y, f"{y.cards()} {y.describe(idle_s)}: {y.why}")
        for y in before:
            if not any(a.node == y.node and a.gpus == y.gpus for a in after):
                await asyncio.to_thread(_tell, "gpu-unyielded", y, f"{y.cards()} is back in the queue "
                                                                    f"(it was yielded to {y.to})")
        self.yields = after
        self.problem = self.book.problem
        await self._make_way(jobs, after, idle_s)
        return after

    def _look(self, cluster: Cluster, now: float) -> dict[tuple[str, int], GpuProcess | None]:
        """Per card of a desktop with a fresh sample: the foreign process on it that has stayed long enough (None:
        none there now). Cards without a fresh sample are left out: a node that stopped answering changes nothing."""
        out: dict[tuple[str, int], GpuProcess | None] = {}
        for node in cluster.nodes:
            status = self.state.nodes.get(node.name)
            if not node.desktop or status is None or status.state is not NodeState.ONLINE \
                    or status.received_at is None or status.received_at == self.sampled.get(node.name):
                continue
            self.sampled[node.name] = status.received_at
            for gpu in status.gpus:
                key = (node.name, gpu.index)
                proc = _foreign(gpu.processes, cluster.yield_min_mib)
                if proc is None:
                    self.seen.pop(key, None)
                    out[key] = None
                    continue
                since = self.seen.setdefault(key, now)
                out[key] = proc if now - since >= cluster.yield_after else STAYING
        return out

    def _update(self, yields: list[Yield], found: dict[tuple[str, int], GpuProcess | None], now: float,
                idle_s: float) -> list[Yield]:
        cluster = self.cluster()
        for (node, gpu), proc in found.items():
            have = yielded(yields, node, gpu)
            if proc is None:  # nothing foreign there now: an auto yield starts counting its idle time
                if have is not None and have.auto and have.gone_at is None:
                    yields = [dataclasses.replace(y, gone_at=now) if y is have else y for y in yields]
            elif proc is STAYING:  # there, not yet for yield_after: only an auto yield's idle clock stops
                if have is not None and have.auto and have.gone_at is not None:
                    yields = [dataclasses.replace(y, gone_at=None) if y is have else y for y in yields]
            elif have is None:
                who = proc.user or cluster.node(node).user or "its owner"
                what = (proc.command or f"pid {proc.pid}").rsplit("/", 1)[-1]
                yields = take(yields, Yield(node, (gpu,), who, now, auto=True,
                                            why=f"{who}'s {what} took {gb(proc.used_mib or 0)} on {node}:{gpu}"))
            elif have.auto and have.gone_at is not None:
                yields = [dataclasses.replace(y, gone_at=None) if y is have else y for y in yields]
        known = {n.name for n in cluster.nodes}
        done = expired(yields, now, idle_s)
        return [y for y in yields if y not in done and y.node in known]

    async def _make_way(self, jobs: dict[int, Job], yields: list[Yield], idle_s: float) -> None:
        if not yields:
            return
        changes = {}
        for job in jobs.values():
            if job.state is not JobState.RUNNING or job.preempt or job.stop or job.cancel_requested:
                continue
            y = hits(job.placement, yields)
            if y is None:
                continue
            why = f"{y.cards()} {y.describe(idle_s)} ({y.why})"
            gone = {n for n, gpus in job.placement if any(yielded(yields, n, g) for g in gpus)}
            if (job.spec.preemptible or y.force) and without(job, gone) is not None:
                self.shed(job, gone, why)  # it goes on with the nodes left
            elif job.spec.preemptible:
                changes[job.id] = lambda j, w=why: dataclasses.replace(j, preempt=w) \
                    if j.state is JobState.RUNNING and not j.preempt else j
            elif y.force:
                changes[job.id] = lambda j, w=why: dataclasses.replace(j, stop=f"{STOP_PREFIX}{w}") \
                    if j.state is JobState.RUNNING and not j.stop else j
        if changes:
            await self.store.update_active(changes)


def _tell(kind: str, y: Yield, text: str) -> None:
    from ugro_tui.core.alerts.journal import Journal
    from ugro_tui.core.alerts.rules import Event

    now = time.time()
    Journal().add([Event(f"{kind}-{y.node}-{','.join(map(str, y.gpus))}-{int(now)}", kind, now, text, node=y.node)])
