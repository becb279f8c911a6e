"""What a user can do to a job, the same from the CLI and the app. Each returns one line saying what happened."""

from __future__ import annotations

import dataclasses

from ugro_tui.core.jobs.model import IllegalTransition, JobState
from ugro_tui.core.jobs.store import JobStore


def cancel(store: JobStore, job_id: int) -> str:
    job = store.get(job_id)
    if job.state.active or job.slurm is not None:  # the dispatcher stops it (or scancels it), then marks it cancelled
        def request(j):
            if j.state.finished:
                raise IllegalTransition(f"job {job_id} is {j.state}; it cannot become cancelled")
            return dataclasses.replace(j, cancel_requested=True, reason="cancel requested")

        store.update(job_id, request)
        return f"{job_id}: cancel requested; the dispatcher stops it on every node"
    store.move(job_id, JobState.CANCELLED, reason="cancelled by the user")
    return f"{job_id}: cancelled"


def hold(store: JobStore, job_id: int) -> str:
    store.move(job_id, JobState.HELD, reason="held by the user")
    return f"{job_id}: held"


def release(store: JobStore, job_id: int) -> str:
    store.move(job_id, JobState.QUEUED, reason="")
    return f"{job_id}: queued"


def retry(store: JobStore, job_id: int) -> str:
    job = store.get(job_id)
    if not job.state.finished:
        raise IllegalTransition(f"job {job_id} is {job.state}; only a finished job can be retried")
    store.move(job_id, JobState.QUEUED, reason="retried by the user")
    return f"{job_id}: queued again"


def end(store: JobStore, job_id: int) -> str:
    """A session's end (sessions/actions.py): its GPUs go back to the queue."""
    from ugro_tui.core.sessions.actions import end_session

    return end_session(store, job_id)


ACTIONS = {"cancel": cancel, "hold": hold, "release": release, "retry": retry, "end": end}
