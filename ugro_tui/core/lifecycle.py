"""The rules of a job's life that do not depend on where it runs, used by both backends (SSH and Slurm).

- dependencies: a job runs after its parents succeed; a parent that failed, was cancelled or pruned, or is gone
  fails it, naming the parent;
- retry or fail: an attempt that failed is queued again while retries are left;
- the store merge: what a follow learned is stored without losing what a user asked meanwhile (cancel, hold,
  prune); a cancel asked before the attempt ended wins over whatever else ended it;
- the per-job error guard: one job's error is its own, shown as its reason, never the dispatcher's;
- the not-ready backoff: a job whose nodes lacked its data or code waits a while before it is placed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ugro_tui.core.jobs.async_store import AsyncJobStore
from ugro_tui.core.jobs.model import IllegalTransition, Job, JobState, reroute, transition
from ugro_tui.errors import UgroError

log = logging.getLogger("ugro.lifecycle")
NOT_READY_WAIT = 30.0  # seconds before a job whose nodes lacked its data or code is placed again
ENDED_BY_PARENT = (JobState.FAILED, JobState.CANCELLED, JobState.PRUNED)
RETRYING_RE = re.compile(r"^retrying[^:]*: ")  # retry_or_fail's words before the cause


# --- dependencies -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dependencies:
    """Where a queued job stands with the jobs it runs after."""

    fail: str | None = None            # why the job fails now (a parent that can never succeed)
    pending: tuple[Job, ...] = ()      # parents that have not succeeded yet (Slurm chains them with afterok)

    @property
    def ready(self) -> bool:
        return self.fail is None and not self.pending

    @property
    def reason(self) -> str:
        """The waiting reason, in the Jobs view's words."""
        return f"waits for job {self.pending[0].id} to succeed" if self.pending else ""


async def dependencies(job: Job, jobs: dict[int, Job], store: AsyncJobStore) -> Dependencies:
    """Settle `job`'s `after` list against the active jobs of this round, then the store for finished ones."""
    pending = []
    for dep in job.spec.after:
        try:
            parent = jobs.get(dep) or await store.get(dep)
        except UgroError:  # a hand-edited store: the job it runs after is gone
            return Dependencies(fail=f"job {dep} it runs after does not exist")
        if parent.state in ENDED_BY_PARENT:
            return Dependencies(fail=f"job {dep} it runs after was {parent.state}")
        if parent.state is not JobState.SUCCEEDED:
            pending.append(parent)
    return Dependencies(pending=tuple(pending))


# --- retry or fail ------------------------------------------------------------------------------------------------

def retry_or_fail(job: Job, why: str, diagnosis: str | None) -> Job:
    """A running job's attempt failed: queued again while retries are left, else failed (both backends). A cancel
    asked before wins: the job ends cancelled, and its reason keeps what ended the attempt."""
    if job.cancel_requested:
        return transition(job, JobState.CANCELLED, reason=f"cancelled by the user; {why}", diagnosis=diagnosis)
    if job.attempt - job.preemptions <= job.spec.max_retries:  # a preempted attempt spent no retry
        resume = " from its checkpoint dir" if job.spec.checkpoint_dir else ""
        return transition(job, JobState.QUEUED, reason=f"retrying{resume}: {why}", diagnosis=diagnosis)
    return transition(job, JobState.FAILED, reason=why, diagnosis=diagnosis)


# --- the store merge ----------------------------------------------------------------------------------------------

def merge(cur: Job, now: Job) -> Job:
    """What to store when a follow learned `now` and the store holds `cur` (a user may have acted meanwhile).

    A finished job stays as it is. A hold made while the backend looked is kept. A cancel or prune asked meanwhile is
    kept for the next round; a cancel asked before the attempt ended (a failure, a lost node, a prune, a retry) ends
    the job cancelled, naming what else happened. A success stands: the work is done."""
    if cur.state.finished:
        return cur
    if cur.state is JobState.HELD and now.state is JobState.QUEUED:  # held while we looked
        return dataclasses.replace(now, state=JobState.HELD, reason="held by the user", trail=())
    asked = cur.cancel_requested or now.cancel_requested
    ended = now.state in (JobState.FAILED, JobState.PRUNED) or (now.state is JobState.QUEUED and cur.state.active)
    if asked and ended:
        what = RETRYING_RE.sub("", now.reason) or str(now.state)  # no retry follows a cancel
        with contextlib.suppress(IllegalTransition):  # a job built without its transitions keeps its own outcome
            return reroute(now, JobState.CANCELLED, reason=f"cancelled by the user; {what}")
    if now.state.finished:
        return now
    keep_prune = now.state is not JobState.QUEUED  # a retry starts over: its predecessor's prune is done
    return dataclasses.replace(now, cancel_requested=asked, prune=(cur.prune or now.prune) if keep_prune else "",
                               stop=(cur.stop or now.stop) if keep_prune else "",
                               preempt=(cur.preempt or now.preempt) if keep_prune else now.preempt,
                               warning=(cur.warning or now.warning) if keep_prune else "",
                               session=cur.session if keep_prune else None)  # the session watch's and extend's


# --- the per-job error guard --------------------------------------------------------------------------------------

class JobGuard:
    """Runs one job's work; an exception is that job's, shown once as its reason, never the dispatcher's."""

    def __init__(self, store: AsyncJobStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self.errors: dict[int, str] = {}  # job id -> the last error met while handling it

    async def run(self, job_id: int, work: Awaitable[None]) -> None:
        try:
            await work
            self.errors.pop(job_id, None)
        except Exception as exc:  # this job's problem, never the dispatcher's: the others go on
            if not isinstance(exc, UgroError | OSError | TimeoutError):  # a bug: its traceback goes to the log too
                log.error("%s: job %s", self.prefix, job_id, exc_info=exc)
            said = f"{self.prefix}: {exc}" if isinstance(exc, UgroError) else \
                f"{self.prefix}: {type(exc).__name__}: {exc}"
            if self.errors.get(job_id) == said:  # shown as the job's reason, written once per new error
                return
            self.errors[job_id] = said
            try:
                await self.store.update(job_id, lambda j: j if j.state.finished
                                        else dataclasses.replace(j, reason=said))
            except (UgroError, OSError) as again:  # the store itself failed: the error stays in `errors`
                self.errors[job_id] = f"{said} (and it could not be stored: {again})"


# --- the not-ready backoff ----------------------------------------------------------------------------------------

class NotReadyBackoff:
    """Jobs whose nodes lacked their data or code: placed again only after NOT_READY_WAIT."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._not_before: dict[int, float] = {}

    def wait(self, job_id: int) -> str:
        """Start the wait; returns the words to add to the job's reason."""
        self._not_before[job_id] = self.clock() + NOT_READY_WAIT
        return f"(checked again in {NOT_READY_WAIT:.0f}s)"

    def due(self, job_id: int) -> bool:
        return self._not_before.get(job_id, 0.0) <= self.clock()
