"""The dispatcher: exactly one at a time (a lock file), in the TUI or headless as `ugro scheduler`.

Each tick it settles dependencies, follows running jobs, carries out cancel requests, places waiting jobs on
free GPUs and hands each placement to the launcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable

from ugro_tui.config import Cluster
from ugro_tui.core.jobs import elastic
from ugro_tui.core.jobs.async_store import AsyncJobStore
from ugro_tui.core.jobs.early_stop import judge
from ugro_tui.core.jobs.estimate import start_estimates
from ugro_tui.core.jobs.events import tell
from ugro_tui.core.jobs.leftovers import leftovers_read
from ugro_tui.core.jobs.memory_watch import MemoryWatch, diagnose_shared
from ugro_tui.core.jobs.model import Job, JobState, NodeRun, reroute, transition
from ugro_tui.core.jobs.placement import Decision, NodeCapacity, allowed, capacity, job_order, place
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.jobs.yield_watch import YieldWatch
from ugro_tui.core.jobs.yields import STOP_PREFIX
from ugro_tui.core.lifecycle import JobGuard, NotReadyBackoff, dependencies, merge, retry_or_fail
from ugro_tui.core.sessions.watch import SessionWatch
from ugro_tui.core.sync.service import NotReady
from ugro_tui.core.telemetry.model import ClusterState, NodeState
from ugro_tui.core.transport import ConnectError
from ugro_tui.errors import UgroError

AVOID_FOR = 60.0  # seconds a restarting service keeps off the nodes that stopped answering


class Launcher:
    """Everything the dispatcher asks of whatever starts placed jobs on their nodes and follows them (SshLauncher;
    the tests' doubles). The defaults are what a launcher with no such concern does."""

    unreachable: dict[int, set[str]]  # per job: nodes its last poll could not reach

    def __init__(self) -> None:
        self.unreachable = {}

    async def start(self, job: Job) -> Job:
        """Start `job` (state starting, placement set); return it running, with per-node runs recorded."""
        raise NotImplementedError

    async def poll(self, job: Job) -> Job:
        """Return the job as it is now: still running, or finished with exit codes and a reason."""
        raise NotImplementedError

    async def cancel(self, job: Job) -> Job:
        """Stop every process of the job on every node; return it cancelled."""
        raise NotImplementedError

    async def lose(self, job: Job, lost: dict[str, float]) -> Job:
        """Nodes of a running job stayed unreachable too long (name -> since when): end the attempt."""
        return job

    async def reconcile(self, job: Job) -> Job:
        """A job left starting by a dispatcher that died while launching it: adopt it, or end the attempt."""
        return job

    async def started_before(self, job: Job) -> tuple[tuple[str, NodeRun], ...]:
        """A job whose start a store recovery may have lost: the runs of its attempt found on the nodes, if any."""
        return ()

    def start_failed(self, job: Job, error: Exception) -> Job:
        """A start that raised: the job fails (a service restarts by its policy instead)."""
        return transition(job, JobState.FAILED, reason=f"could not start: {error}")

    async def sweep_leftovers(self, online: set[str]) -> None:
        """Kill what nodes that are back (`online`) still run of attempts that ended while they were away."""

    async def preempt(self, job: Job) -> Job:
        """Stop a preempted job's processes (its grace to save first) and return it queued again."""
        done = await self.cancel(job)
        return reroute(done, JobState.QUEUED, reason=job.preempt) if done.state is JobState.CANCELLED else done

    async def grow(self, job: Job, node: str, gpus: tuple[int, ...]) -> Job:
        """An elastic job's agent on one more node; returns the job with that node placed and running."""
        raise NotImplementedError

    async def shed(self, job: Job, nodes: set[str]) -> Job:
        """Stop an elastic job's part on `nodes` (TERM, its grace to save, KILL); returns it without them."""
        raise NotImplementedError

    async def session_probe(self, job: Job, message: str):
        """A session's processes and attached shells on its node (sessions/probe.py); `message` goes to them."""
        raise NotImplementedError


def _retried(done: Job, why: str) -> Job:
    """A job stopped for a forced yield: its attempt failed, so its retry policy decides (queued again or failed)."""
    return retry_or_fail(dataclasses.replace(done, state=JobState.RUNNING, trail=done.trail[:-1]), why,
                         done.diagnosis)


class SweepTrials:
    """Every trial of a sweep for the rules: the active ones from the tick, the finished ones read once and kept
    (a finished trial changes only when retried, and then it is active again)."""

    def __init__(self, store: AsyncJobStore) -> None:
        self.store = store
        self._done: dict[str, dict[int, Job]] = {}
        self._seen: dict[str, set[int]] = {}

    async def trials(self, sweep_id: str, jobs: dict[int, Job]) -> list[Job]:
        done = self._done.get(sweep_id)
        if done is None:
            done = self._done[sweep_id] = {j.id: j for j in await self.store.all()
                                           if j.spec.sweep_id == sweep_id and j.state.finished}
        active = {j.id: j for j in jobs.values() if j.spec.sweep_id == sweep_id}
        for job_id in self._seen.get(sweep_id, set()) - set(active) - set(done):
            with contextlib.suppress(UgroError):
                job = await self.store.get(job_id)
                if job.state.finished:
                    done[job_id] = job
        for job_id in active:
            done.pop(job_id, None)
        self._seen[sweep_id] = set(active)
        return sorted([*active.values(), *done.values()], key=lambda j: j.id)


async def mark_pruned(store: AsyncJobStore, sweeps: SweepTrials, jobs: dict[int, Job]) -> None:
    """Mark the running trials their sweep's rule stops; the backend stops them next (both backends use it)."""
    ids = {j.spec.sweep_id for j in jobs.values() if j.spec.sweep_id and j.spec.early_stop
           and j.state is JobState.RUNNING and not j.prune}
    verdicts: dict[int, str] = {}
    for sweep_id in sorted(s for s in ids if s):
        verdicts |= judge(await sweeps.trials(sweep_id, jobs))
    if verdicts:
        await store.update_active({jid: (lambda j, why=why: dataclasses.replace(j, prune=why)
                                         if j.state is JobState.RUNNING and not j.prune else j)
                                   for jid, why in verdicts.items()})


class Dispatcher:
    """One round per tick. Following a job and starting one run as tasks of their own, so a node that is slow or
    frozen delays only its own jobs; every error is caught per job, so one bad job never stops the others."""

    def __init__(self, cluster: Cluster, store: JobStore, state: ClusterState, launcher: Launcher, *,
                 starve_after: float = 600.0, clock: Callable[[], float] = time.time, wait: float = 0.5) -> None:
        self.cluster = cluster
        self.store = AsyncJobStore(store)  # every store call in a thread: the event loop never waits on a flock
        self.state = state
        self.launcher = launcher
        self.starve_after = starve_after
        self.clock = clock
        self.wait = wait  # seconds a tick waits for its follow tasks before placing (the rest finish later)
        self.guard = JobGuard(self.store, "dispatcher")
        self.errors = self.guard.errors  # job id -> the last error met while handling it
        self._busy: dict[int, asyncio.Task[None]] = {}  # a job being followed, started, cancelled
        self._unreachable_since: dict[str, float] = {}
        self._recovered = store.recovered_ids()  # jobs whose last change a store recovery may have lost
        self._sweeps = SweepTrials(self.store)
        self._limit_reasons: dict[int, str] = {}
        self._not_ready = NotReadyBackoff(clock)  # jobs whose placed nodes lacked their data or code
        self.memory = MemoryWatch(self.store, state)  # ranks over their declared memory on a shared card
        self.sessions = SessionWatch(self.store, state, launcher, clock)  # idle stops, ends, attached shells
        self.yields = YieldWatch(lambda: self.cluster, self.store, state, clock,  # desktops' GPUs for their owners
                                 shed=self._shed)
        self._jobs: dict[int, Job] = {}  # the round's active jobs, for a diagnosis that names a card's sharers

    async def tick(self) -> list[Job]:
        """One round; returns the jobs still queued, starting or running afterwards."""
        await self.store.take_in()  # the jobs submitted since: into active.json, so the submit log stays short
        jobs = {j.id: j for j in await self.store.active()}
        self._watch_nodes()
        tasks = [self._run(job.id, self._follow_one(job)) for job in jobs.values()
                 if job.id not in self._busy and (job.state.active or job.cancel_requested or job.prune
                                                  or job.stop)]
        if tasks:
            await asyncio.wait(tasks, timeout=self.wait)
        online = {n for n, s in self.state.nodes.items() if s.state is NodeState.ONLINE}
        with contextlib.suppress(UgroError, OSError, TimeoutError, ConnectError):  # a node gone again: next round
            await self.launcher.sweep_leftovers(online)
        jobs = self._jobs = {j.id: j for j in await self.store.active()}
        await self._early_stop(jobs)
        now = self.clock()
        waiting = [j for j in self._sweep_limits(await self._settle_dependencies(jobs), jobs)
                   if self._not_ready.due(j.id) and (j.service.next_start if j.service else 0.0) <= now]
        waiting = [self._elsewhere(j, now) for j in waiting]
        try:
            yields = await self.yields.observe(jobs)
        except OSError as exc:  # the yields file could not be written: the ones known stand, the queue goes on
            self.yields.problem = f"the yields file could not be written: {exc}"
            yields = self.yields.yields
        caps = capacity(self.cluster, self.state, list(jobs.values()), yields)
        running = [j for j in jobs.values() if j.state is JobState.RUNNING]
        decisions, estimates = await asyncio.to_thread(self._decide, waiting, caps, running, jobs, now)
        await self._apply(decisions, jobs, estimates)
        await self._grow(jobs, caps, decisions)
        await self.memory.observe(jobs)  # after placing: a failure to warn never holds a job back
        await self.sessions.observe(jobs)
        return [j for j in await self.store.active() if j.state is not JobState.HELD]

    def _decide(self, waiting: list[Job], caps: list[NodeCapacity], running: list[Job], jobs: dict[int, Job],
                now: float) -> tuple[list[Decision], dict[int, str]]:
        """Placement and start estimates: pure, and at 10,000 waiting jobs a fifth of a second, so in a thread
        (the daemon's socket and telemetry go on meanwhile)."""
        decisions = place(waiting, caps, now=self.clock(), starve_after=self.starve_after, running=running)
        return decisions, start_estimates([jobs[d.job_id] for d in decisions if d.placement is None
                                           and not d.preempt and d.job_id in jobs], running, caps, now)

    def _elsewhere(self, job: Job, now: float) -> Job:
        """A service restarting because its nodes stopped answering is placed on others for a while, if any may
        take it (telemetry can take some seconds to call a dead node offline)."""
        status = job.service
        if status is None or not status.avoid or now - (status.since or 0.0) > AVOID_FOR:
            return job
        names = tuple(n.name for n in self.cluster.nodes if n.name not in status.avoid
                      and allowed(job, NodeCapacity(n.name, n.labels)))
        return dataclasses.replace(job, spec=dataclasses.replace(job.spec, nodes=names)) if names else job

    def _run(self, job_id: int, work) -> asyncio.Task[None]:
        async def guarded() -> None:
            try:
                await self.guard.run(job_id, work)
            finally:
                self._busy.pop(job_id, None)

        task = asyncio.create_task(guarded(), name=f"dispatch:job-{job_id}")
        self._busy[job_id] = task
        return task

    def _watch_nodes(self) -> None:
        """When each node stopped answering (telemetry's view): the clock for node_lost_after."""
        for name, status in self.state.nodes.items():
            if status.state is NodeState.ONLINE:
                self._unreachable_since.pop(name, None)
            elif status.state in (NodeState.OFFLINE, NodeState.STALE) and status.received_at is not None:
                self._unreachable_since.setdefault(name, status.received_at)

    def lost_nodes(self, job: Job) -> dict[str, float]:
        """Nodes of the job unreachable for longer than node_lost_after: name -> since when."""
        now = self.clock()
        unreachable = self.launcher.unreachable.get(job.id, set())
        out = {}
        for node, _ in job.runs:
            since = self._unreachable_since.get(node)
            if since is None and node in unreachable:
                since = self._unreachable_since.setdefault(node, now)
            if since is not None and now - since >= self.cluster.node_lost_after:
                out[node] = since
        return out

    async def _save(self, now: Job) -> None:
        """Store what a follow learned, keeping what a user asked for in the meantime (lifecycle.merge)."""
        await self.store.update(now.id, lambda cur: merge(cur, now))

    async def _early_stop(self, jobs: dict[int, Job]) -> None:
        await mark_pruned(self.store, self._sweeps, jobs)

    def _sweep_limits(self, waiting: list[Job], jobs: dict[int, Job]) -> list[Job]:
        """Waiting trials beyond their sweep's max_concurrent sit this round out (the best-ordered ones go)."""
        running: dict[str, int] = {}
        for job in jobs.values():
            if job.spec.sweep_id and job.state.active:
                running[job.spec.sweep_id] = running.get(job.spec.sweep_id, 0) + 1
        out, self._limit_reasons = [], {}
        for job in sorted(waiting, key=job_order):
            sid, limit = job.spec.sweep_id, job.spec.max_concurrent
            if sid and limit and running.get(sid, 0) >= limit:
                self._limit_reasons[job.id] = f"waits: {limit} trial{'s' if limit != 1 else ''} of its sweep " \
                                              "already running (max_concurrent)"
                continue
            if sid:
                running[sid] = running.get(sid, 0) + 1
            out.append(job)
        return out

    async def _follow_one(self, job: Job) -> None:
        known = {n.name for n in self.cluster.nodes}
        gone = sorted({n for n, _ in job.placement} - known)
        if job.prune and not job.cancel_requested and job.state is JobState.RUNNING:
            now = await self.launcher.poll(job)  # it may have just ended: a finished trial is not pruned
            if now.state.finished or now.state is JobState.QUEUED:
                await self._save(dataclasses.replace(now, prune=""))
                return
            job = now  # what the poll learned (exit codes, the metric) goes on into the stop
        if job.preempt and job.state is JobState.RUNNING and not (job.cancel_requested or job.prune or job.stop):
            done = await self.launcher.preempt(job)
            if done.state is JobState.QUEUED:
                done = dataclasses.replace(done, preemptions=job.preemptions + 1)
                await asyncio.to_thread(tell, done, f"preempted: {job.preempt}", "job-preempted")
            await self._save(done)
        elif (job.cancel_requested or job.prune or job.stop) and not job.state.finished:
            if job.state.active:
                done = await self.launcher.cancel(job)
                if job.stop and not job.cancel_requested and done.state is JobState.CANCELLED:
                    ended = JobState.SUCCEEDED if job.spec.kind == "session" else JobState.FAILED  # given back
                    done = reroute(done, ended, reason=job.stop) if ended is JobState.SUCCEEDED or \
                        not job.stop.startswith(STOP_PREFIX) else _retried(done, job.stop)
                elif job.prune and not job.cancel_requested and done.state is JobState.CANCELLED:
                    done = reroute(done, JobState.PRUNED, reason=job.prune)
                await self._save(done)
            else:
                await self.store.move(job.id, JobState.CANCELLED, reason="cancelled")
        elif gone and job.state.active:
            reason = f"node {', '.join(gone)} is no longer in {self.cluster.source}; its processes there were left"
            reachable = dataclasses.replace(job, runs=tuple((n, r) for n, r in job.runs if n in known))
            if reachable.runs:  # the nodes still configured stop their part, as far as they answer
                with contextlib.suppress(UgroError, OSError, TimeoutError, ConnectError):
                    await self.launcher.cancel(reachable)
            await self.store.move(job.id, JobState.FAILED, reason=reason)
        elif job.state is JobState.STARTING:  # left by a dispatcher that died mid-launch
            await self._save(await self.launcher.reconcile(job))
        elif job.state is JobState.RUNNING:
            now = diagnose_shared(await self.launcher.poll(job), job, self._jobs, self.memory)
            lost = self.lost_nodes(now) if not now.state.finished else {}
            if lost:
                now = await self.launcher.lose(now, lost)
            if now != job:
                await self._save(now)

    async def _settle_dependencies(self, jobs: dict[int, Job]) -> list[Job]:
        waiting = []
        reasons: dict[int, str] = {}
        for job in jobs.values():
            if job.state is not JobState.QUEUED:
                continue
            deps = await dependencies(job, jobs, self.store)
            if deps.fail:
                await self.store.move(job.id, JobState.FAILED, reason=deps.fail)
            elif deps.pending:
                reasons[job.id] = deps.reason
            else:
                waiting.append(job)
        await self._set_reasons(jobs, reasons)
        return waiting

    async def _set_reasons(self, jobs: dict[int, Job], reasons: dict[int, str]) -> None:
        changes = {jid: (lambda j, r=r: dataclasses.replace(j, reason=r))
                   for jid, r in reasons.items() if jid in jobs and jobs[jid].reason != r}
        if changes:
            await self.store.update_active(changes)

    async def _apply(self, decisions: list[Decision], jobs: dict[int, Job], estimates: dict[int, str]) -> None:
        reasons = dict(self._limit_reasons)
        for d in decisions:
            if d.preempt:
                await self._mark_preempted(jobs[d.job_id], d.preempt)
            if d.placement is None:
                waiting = jobs.get(d.job_id)
                reason = d.reason + (f"; {estimates[d.job_id]}" if d.job_id in estimates else "")
                reasons[d.job_id] = f"{waiting.preempt}; {reason}" if waiting and waiting.preempt else reason
                continue
            if d.job_id in self._busy:
                continue
            job = await self.store.move(d.job_id, JobState.STARTING, reason="starting", placement=d.placement)
            self._run(job.id, self._start(job))
        await self._set_reasons(jobs, reasons)

    async def _grow(self, jobs: dict[int, Job], caps: list[NodeCapacity], decisions: list[Decision]) -> None:
        """Elastic jobs below MAX take a node that fits them and that this round left free (one each per round)."""
        growing = [j for j in jobs.values() if elastic.may_grow(j) and j.id not in self._busy]
        if not growing:
            return
        taken = {(n, g) for d in decisions for n, gpus in d.placement or () for g in gpus}
        reserved = {n for d in decisions for n in d.reserved}
        free = {c.name: [(g.index, g.free_mib) for g in c.free if g.whole and (c.name, g.index) not in taken]
                for c in caps if c.name not in reserved}
        able = {j.id: {c.name for c in caps if allowed(j, c)} for j in growing}
        avoid = set(await asyncio.to_thread(leftovers_read))  # a lost node's part is swept before it rejoins
        for job, node, gpus in elastic.grow_choices(growing, free, able, avoid):
            self._run(job.id, self._grow_onto(job, node, gpus))

    def _shed(self, job: Job, nodes: set[str], why: str) -> None:
        """An elastic job gives up some of its nodes (yielded) and goes on with the others."""
        if job.id not in self._busy:
            self._run(job.id, self._shed_nodes(job, nodes, why))

    async def _shed_nodes(self, job: Job, nodes: set[str], why: str) -> None:
        smaller = await self.launcher.shed(job, nodes)
        await self._save(await asyncio.to_thread(elastic.went_on, smaller, why))

    async def _grow_onto(self, job: Job, node: str, gpus: tuple[int, ...]) -> None:
        grown = await self.launcher.grow(job, node, gpus)
        await self._save(await asyncio.to_thread(elastic.grew, grown, node))

    async def _mark_preempted(self, by: Job, victims: tuple[int, ...]) -> None:
        """The running jobs placement chose to make room for `by`: the follow stops and requeues them (once: a job
        already being preempted keeps who preempted it first)."""
        why = f"preempted by job {by.id} (priority {by.spec.priority})"
        await self.store.update_active({vid: lambda j: dataclasses.replace(j, preempt=why)
                                        if j.state is JobState.RUNNING and not j.preempt else j for vid in victims})

    async def _start(self, job: Job) -> None:
        if job.id in self._recovered:  # its start may be the write a recovery lost: look on the nodes first
            self._recovered.discard(job.id)
            runs = await self.launcher.started_before(job)
            if runs:
                placed = tuple((n, g) for n, g in job.placement if n in {x for x, _ in runs}) or \
                    tuple((n, ()) for n, _ in runs)
                adopted = transition(dataclasses.replace(job, runs=runs, placement=placed), JobState.RUNNING,
                                     reason="running (found on its nodes after the job store was recovered)")
                await self._save(adopted)
                return
        try:
            started = await self.launcher.start(job)
        except NotReady as exc:  # a placed node lacks its data or code: queued again, no attempt spent
            why, sent = f"{exc} {self._not_ready.wait(job.id)}", exc.sync_sent
            await self.store.update(job.id, lambda j: transition(
                j, JobState.QUEUED, reason=why, attempt=max(0, j.attempt - 1),
                sync_sent=sent or j.sync_sent) if j.state is JobState.STARTING else j)
            return
        except Exception as exc:  # a failed start is the job's failure, never the dispatcher's
            await self.store.update(job.id, lambda j, e=exc: self.launcher.start_failed(j, e)
                                    if j.state is JobState.STARTING else j)
            return
        await self._save(started)
        if started.preemptions:
            where = f" from {started.resume_from}" if started.resume_from else " (no checkpoint to resume from)"
            await asyncio.to_thread(tell, started, f"resumed after {started.preemptions} preemption(s){where}",
                                    "job-resumed")

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for the follows and starts in flight (a scheduler that is asked to stop, and the tests)."""
        busy = list(self._busy.values())
        if busy:
            await asyncio.wait(busy, timeout=timeout)

    async def run(self, *, interval: float, until_idle: bool = False, ready: Callable[[], bool] = lambda: True
                  ) -> None:
        while True:
            if ready():
                left = await self.tick()
                if until_idle and not left:
                    return
            await asyncio.sleep(interval)
