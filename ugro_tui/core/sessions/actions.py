"""What a user does to a session, the same from the CLI, the app and the API: end it, extend it."""

from __future__ import annotations

import dataclasses
import time

from ugro_tui.core.jobs.model import Job, JobState
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.sessions.watch import fresh
from ugro_tui.errors import UgroError, UsageError


def end_session(store: JobStore, job_id: int) -> str:
    """What `ugro session end` and ctrl+d in the Jobs view do: the daemon gives its GPUs back."""
    job = store.get(job_id)
    if job.spec.kind != "session":
        raise UsageError(f"job {job_id} ({job.spec.name}) is a {job.spec.kind} job, not a session: cancel it instead")
    if not job.state.active:  # it never held its GPUs: cancelled
        store.move(job_id, JobState.CANCELLED, reason="cancelled by the user")
        return f"{job_id}: cancelled"

    def ask(j: Job) -> Job:
        if not j.state.active:
            raise UgroError(f"session {job_id} is {j.state}")
        return dataclasses.replace(j, stop=j.stop or "ended by the user", reason="ending")

    store.update(job_id, ask)
    return (f"{job_id}: ending; its processes get TERM, then KILL after its grace ([cluster] session_grace), "
            "and its GPUs go back to the queue")


def extend_session(store: JobStore, job_id: int, hours: float) -> Job:
    """Its latest end moves `hours` later, and its idle time counts from now."""
    now = time.time()

    def longer(j: Job) -> Job:
        if not j.state.active:
            raise UgroError(f"session {job_id} is {j.state}; only a running session is extended")
        cur = j.session or fresh(j)
        return dataclasses.replace(j, session=dataclasses.replace(
            cur, ends_at=max(cur.ends_at, now) + hours * 3600, active_at=now, warned=""))

    return store.update(job_id, longer)
