"""The Slurm backend's dispatcher: the same job store, states, retries, sweeps and rank logs; Slurm places and runs.

Each tick reads the whole queue once (`squeue --json`), follows every submitted job from it (a job that has left
the queue is asked of `scontrol`, then `sacct`), carries out cancels, prunes, holds and releases, and submits what
waits. Each job is handled in a task of its own and its errors are its own: one bad job never stops the others.
A submit first writes an empty Slurm reference, then sbatch writes the new id into the run root, so a dispatcher
killed in between finds the job there instead of submitting it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

from ugro_tui.config import Cluster
from ugro_tui.core.backends.slurm.client import SlurmClient, SlurmError
from ugro_tui.core.backends.slurm.script import node_dir, run_root, submission
from ugro_tui.core.backends.slurm.states import SlurmJob, hostnames
from ugro_tui.core.jobs.async_store import AsyncJobStore
from ugro_tui.core.jobs.diagnose import diagnose
from ugro_tui.core.jobs.dispatcher import SweepTrials, mark_pruned
from ugro_tui.core.jobs.launcher import METRIC_EVERY, tail_text
from ugro_tui.core.jobs.logs import local_copy, read_via, sync_node
from ugro_tui.core.jobs.metric import MetricFollower
from ugro_tui.core.jobs.model import Job, JobState, NodeRun, SlurmRef, transition
from ugro_tui.core.jobs.placement import job_order
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.lifecycle import JobGuard, NotReadyBackoff, dependencies, merge, retry_or_fail
from ugro_tui.core.pool import Pool


def step_to(job: Job, to: JobState, **changes) -> Job:
    """Move a job to `to` through the states it skipped while Slurm ran it between two looks."""
    if job.state in (JobState.QUEUED, JobState.HELD) and to in (JobState.RUNNING, JobState.SUCCEEDED,
                                                                  JobState.FAILED, JobState.PRUNED):
        if job.state is JobState.HELD:
            job = transition(job, JobState.QUEUED)
        job = transition(job, JobState.STARTING, attempt=job.attempt, reason="starting")
    if job.state is JobState.STARTING and to is not JobState.RUNNING and to is not JobState.CANCELLED:
        job = transition(job, JobState.RUNNING)
    return transition(job, to, **changes)


def refused(job: Job, why: str) -> Job:
    """Slurm would not take the job: failed, never started (a hold made meanwhile does not save it)."""
    if job.state.finished:
        return job
    waiting = job if job.state is JobState.QUEUED else transition(job, JobState.QUEUED)
    return transition(waiting, JobState.FAILED, reason=why, slurm=None)


class SlurmDispatcher:
    def __init__(self, cluster: Cluster, store: JobStore, pool: Pool) -> None:
        assert cluster.slurm is not None
        self.cluster = cluster
        self.pool = pool
        self.store = AsyncJobStore(store)
        self.client = SlurmClient(cluster, pool)
        self.metrics = MetricFollower()
        self.guard = JobGuard(self.store, "slurm")
        self.errors = self.guard.errors  # job id -> the last error met while handling it
        self.problem: str | None = None  # the queue could not be read: why (shown by the app)
        self._sweeps = SweepTrials(self.store)
        self._asked: dict[int, str] = {}  # job id -> the scancel/hold/release already sent for its Slurm state
        self._not_ready = NotReadyBackoff()  # jobs whose data or code was not on the login node

    # --- one round ---------------------------------------------------------------------------------------------

    async def tick(self) -> list[Job]:
        jobs = {j.id: j for j in await self.store.active()}
        try:
            queue = await self.client.queue()
        except (SlurmError, OSError, TimeoutError) as exc:
            self.problem = f"Slurm's queue could not be read: {exc}"
            return [j for j in jobs.values() if j.state is not JobState.HELD]
        self.problem = None
        follows = [self._guard(j.id, self._follow(j, queue)) for j in jobs.values() if j.slurm is not None]
        await asyncio.gather(*follows)
        jobs = {j.id: j for j in await self.store.active()}
        await self._early_stop(jobs)
        await self._submit_waiting(jobs)
        return [j for j in await self.store.active() if j.state is not JobState.HELD]

    async def _guard(self, job_id: int, work) -> None:
        await self.guard.run(job_id, work)

    async def drain(self, timeout: float = 30.0) -> None:
        """Nothing runs between ticks here: every follow and submit is awaited within its tick."""

    # --- following ---------------------------------------------------------------------------------------------

    async def _follow(self, job: Job, queue: dict[str, SlurmJob]) -> None:
        assert job.slurm is not None
        if not job.slurm.job_id:  # a submit a dead dispatcher left in flight: did sbatch get it?
            found = await self.client.submitted(run_root(self.cluster, job))
            await self.store.update(job.id, lambda j: dataclasses.replace(
                j, slurm=dataclasses.replace(j.slurm or SlurmRef(), job_id=found)) if found
                else dataclasses.replace(j, slurm=None, attempt=max(0, j.attempt - 1)))
            return
        sj = queue.get(job.slurm.job_id) or await self.client.remembered(job.slurm.job_id)
        if sj is None:
            reason = "Slurm no longer knows its job " + job.slurm.job_id
            await self._save(job, step_to(job, JobState.CANCELLED if job.cancel_requested else JobState.FAILED,
                                          reason=reason))
            return
        state = sj.ugro_state
        never = sj.reason == "DependencyNeverSatisfied"
        if (job.cancel_requested or job.prune or never) and not state.finished:
            if self._asked.get(job.id) != "cancel":
                await self.client.control("cancel", [sj.job_id])
                self._asked[job.id] = "cancel"
            return
        if state in (JobState.QUEUED, JobState.HELD):
            await self._pending(job, sj)
        elif state is JobState.RUNNING:
            await self._running(job, sj)
        else:
            await self._ended(job, sj)

    async def _pending(self, job: Job, sj: SlurmJob) -> None:
        want = "hold" if job.state is JobState.HELD else "release"
        if (want == "hold") != (sj.reason in ("JobHeldUser", "JobHeldAdmin")) and sj.reason != "JobHeldAdmin":
            if self._asked.get(job.id) != want:
                await self.client.control(want, [sj.job_id])
                self._asked[job.id] = want
            return
        self._asked.pop(job.id, None)
        reason = "held by the user" if job.state is JobState.HELD else sj.said
        slurm = self._ref(job, sj)
        if job.reason != reason or job.slurm != slurm:
            await self._save(job, dataclasses.replace(job, reason=reason, slurm=slurm))

    def _ref(self, job: Job, sj: SlurmJob) -> SlurmRef:
        assert job.slurm is not None
        return dataclasses.replace(job.slurm, state=sj.state, partition=sj.partition or job.slurm.partition)

    def _runs(self, job: Job, sj: SlurmJob) -> tuple[tuple[str, NodeRun], ...]:
        root = run_root(self.cluster, job)
        names = hostnames(sj.nodes) or [n for n, _ in job.runs]
        return tuple((n, NodeRun(run_dir=node_dir(root, n))) for n in names)

    async def _running(self, job: Job, sj: SlurmJob) -> None:
        if job.state is not JobState.RUNNING:
            runs = self._runs(job, sj)
            job = step_to(job, JobState.RUNNING, reason=f"running on {sj.nodes} (Slurm job {sj.job_id})",
                          runs=runs, placement=tuple((n, ()) for n, _ in runs), ran_on=tuple(n for n, _ in runs),
                          slurm=self._ref(job, sj), rendezvous=None)
            await self._save(job)
        await self.sync_logs(job)
        metric = await asyncio.to_thread(self.metrics.update, job, time.time())
        if metric != job.metric and self.metrics.due(job, METRIC_EVERY):
            await self._save(job, dataclasses.replace(job, metric=metric))

    async def _ended(self, job: Job, sj: SlurmJob) -> None:
        runs = self._runs(job, sj) if sj.nodes else job.runs
        exits = await self.client.exits(run_root(self.cluster, job), [n for n, _ in runs]) if runs else {}
        runs = tuple((n, dataclasses.replace(r, exit_code=exits.get(n))) for n, r in runs)
        job = dataclasses.replace(job, runs=runs, slurm=self._ref(job, sj),
                                  placement=job.placement or tuple((n, ()) for n, _ in runs))
        await self.sync_logs(job)
        with contextlib.suppress(OSError):
            job = dataclasses.replace(job, metric=await asyncio.to_thread(self.metrics.update, job, time.time()))
        self.metrics.forget(job.id)
        self._asked.pop(job.id, None)
        state = sj.ugro_state
        if job.prune and not job.cancel_requested and state is JobState.CANCELLED:
            done = step_to(job, JobState.PRUNED, reason=job.prune)
        elif state is JobState.CANCELLED and sj.reason == "DependencyNeverSatisfied" and not job.cancel_requested:
            # It never ran: the lifecycle's rule decides, as on SSH machines. A parent that failed (or was
            # cancelled, pruned) fails it naming the parent; a parent being retried is waited for again.
            deps = await dependencies(job, {}, self.store)
            if deps.fail is None:
                await self._save(job, dataclasses.replace(job, slurm=None, attempt=max(0, job.attempt - 1),
                                                          reason=deps.reason or "waits for the jobs it runs after"))
                return
            done = refused(job, deps.fail)
        elif state is JobState.CANCELLED:
            who = "the user" if job.cancel_requested else "Slurm (scancel outside ugro, or an administrator)"
            done = step_to(job, JobState.CANCELLED, reason=f"cancelled by {who}")
        elif state is JobState.SUCCEEDED:
            done = step_to(job, JobState.SUCCEEDED, reason="every node exited 0")
        else:
            bad = {n: r.exit_code for n, r in runs if r.exit_code not in (None, 0)}
            why = "; ".join(f"{n} exited {c}" for n, c in bad.items()) or sj.said
            if bad and sj.state != "FAILED":
                why += f" ({sj.said})"
            text = await asyncio.to_thread(lambda: "\n".join(tail_text(local_copy(job, n)) for n, _ in runs))
            found = diagnose(text, {n: r.exit_code for n, r in runs})
            done = self._failed(job, why, str(found) if found else None)
        await self._save(job, done)

    def _failed(self, job: Job, why: str, diagnosis: str | None) -> Job:
        """As on SSH machines, once the job counts as having run (Slurm may have run it between two looks)."""
        ran = job if job.state is JobState.RUNNING else step_to(job, JobState.RUNNING)
        return retry_or_fail(ran, why, diagnosis)

    async def sync_logs(self, job: Job) -> None:
        """Bring the local copies of every node's logs up to date, read through the login node (or, with
        `follow = "node"`, on the node itself where it is one of [[nodes]])."""
        await asyncio.gather(*(sync_node(self.pool.get(read_via(self.cluster, job, n)), job, n, r.run_dir)
                               for n, r in job.runs if r.run_dir), return_exceptions=True)

    async def _save(self, before: Job, now: Job | None = None) -> None:
        """Store what a follow learned, keeping what a user asked for in the meantime (lifecycle.merge)."""
        now = before if now is None else now
        await self.store.update(before.id, lambda cur: merge(cur, now))

    # --- early stopping and submitting ------------------------------------------------------------------------

    async def _early_stop(self, jobs: dict[int, Job]) -> None:
        await mark_pruned(self.store, self._sweeps, jobs)

    async def _submit_waiting(self, jobs: dict[int, Job]) -> None:
        waiting = [j for j in jobs.values() if j.state is JobState.QUEUED and j.slurm is None
                   and self._not_ready.due(j.id)]
        if not waiting:
            return
        ready: list[tuple[Job, tuple[str, ...]]] = []
        for job in waiting:
            after = await self._after(job, jobs)
            if after is not None:
                ready.append((job, after))
        groups: dict[str, list[Job]] = {}
        singles = []
        for job, after in ready:
            if job.spec.sweep_id and not after and job.attempt == 0:
                groups.setdefault(job.spec.sweep_id, []).append(job)
            else:
                singles.append((job, after))
        batches = [([j], a) for j, a in singles] + [(sorted(g, key=lambda j: j.id), ()) for g in groups.values()]
        for batch, after in sorted(batches, key=lambda b: job_order(b[0][0])):  # in ugro's order: Slurm's age too
            await self._guard(batch[0].id, self._submit(batch, after))

    async def _after(self, job: Job, jobs: dict[int, Job]) -> tuple[str, ...] | None:
        """The Slurm ids a job runs after, or None while one of them is not submitted yet; a job whose
        dependency failed fails here, as on the SSH backend."""
        deps = await dependencies(job, jobs, self.store)
        if deps.fail:
            await self.store.move(job.id, JobState.FAILED, reason=deps.fail)
            return None
        out = []
        for other in deps.pending:  # Slurm waits for them itself (afterok), once they are submitted
            if other.attempt <= other.spec.max_retries and other.spec.max_retries:
                # A failed attempt of it would be retried, but Slurm would call the chain broken: wait here.
                if job.reason != deps.reason:
                    await self.store.update(job.id, lambda j, s=deps.reason: dataclasses.replace(j, reason=s))
                return None
            if other.slurm is None or not other.slurm.job_id:
                said = f"waits for job {other.id} to be submitted"
                if job.reason != said:
                    await self.store.update(job.id, lambda j, s=said: dataclasses.replace(j, reason=s))
                return None
            out.append(other.slurm.job_id)
        return tuple(out)

    async def _prepare(self, batch: list[Job]) -> bool:
        """The login node has each job's datasets and code tree (the cluster's shared filesystem takes them to
        the compute nodes); else the jobs stay queued, saying why, and are tried again a little later."""
        from ugro_tui.core.sync import service

        login = self.cluster.node(self.cluster.slurm.login)
        problems: list[str] = []
        for job in batch:
            problems += await service.check_data(self.pool, [login], job.spec)
        for sync_hash in sorted({j.spec.sync_hash for j in batch if j.spec.sync_hash}):
            manifest = await asyncio.to_thread(service.CodeStore().manifest, sync_hash)
            result = (await service.push_to(self.pool, [login], manifest, keep={sync_hash}))[login.name]
            if isinstance(result, BaseException):
                problems.append(f"code copy failed on {login.name}: {result}")
        if not problems:
            return True
        for job in batch:
            why = f"{'; '.join(problems)} {self._not_ready.wait(job.id)}"
            await self.store.update(job.id, lambda j, w=why: dataclasses.replace(j, reason=w))
        return False

    async def _submit(self, batch: list[Job], after: tuple[str, ...]) -> None:
        """Mark each job as being submitted (attempt counted), then sbatch; Slurm's refusal fails the jobs with
        Slurm's own words."""
        if not await self._prepare(batch):
            return
        marked = []
        for job in batch:
            marked.append(await self.store.update(job.id, lambda j: dataclasses.replace(
                j, attempt=j.attempt + 1, slurm=SlurmRef(), reason="submitting to Slurm")))
        limit = batch[0].spec.max_concurrent if len(batch) > 1 else 0
        sub = submission(marked, self.cluster, after, limit, await self.store.identity())
        try:
            slurm_id = await self.client.submit(sub)
        except SlurmError as exc:
            for job in marked:
                await self.store.update(job.id, lambda j, e=exc: refused(j, f"Slurm refused it: {e}"))
            return
        # Any other error goes up: whether sbatch ran is not known, so the next tick looks in the run root.
        ids = [slurm_id] if len(marked) == 1 else [f"{slurm_id}_{i}" for i in range(1, len(marked) + 1)]
        for job, sid in zip(marked, ids, strict=True):
            await self.store.update(job.id, lambda j, s=sid: dataclasses.replace(
                j, slurm=SlurmRef(job_id=s, partition=self.cluster.slurm.partition or "", state="PENDING"),
                reason=f"submitted to Slurm as job {s}"))

