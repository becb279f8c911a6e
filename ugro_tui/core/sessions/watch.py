"""The daemon's watch on sessions (one round per dispatcher tick): who is attached, whether anything of the
session uses its GPUs, and the end that follows, warned ten minutes before, by an idle stop or at `--hours`.

Idle means no shell attached and no process of the session on its GPUs (telemetry's processes, matched by pid
with the session's processes on the node). A session's end goes through the dispatcher like a cancel: its
processes get TERM, then KILL after `[cluster] session_grace` (10 s), and its GPUs go back to the queue."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from ugro_tui.core.jobs import events
from ugro_tui.core.jobs.async_store import AsyncJobStore
from ugro_tui.core.jobs.model import Job, JobState
from ugro_tui.core.sessions import shell
from ugro_tui.core.sessions.probe import PROBE_ERRORS, Seen
from ugro_tui.core.sessions.status import SessionStatus, warn_lead
from ugro_tui.core.telemetry.model import ClusterState

PROBE_EVERY = 2.0  # seconds between looks at one session's node


def fresh(job: Job) -> SessionStatus:
    began = job.started_at or time.time()
    return SessionStatus(ends_at=began + job.spec.hours * 3600, active_at=began)


def idle_for(job: Job, now: float) -> float:
    status = job.session or fresh(job)
    return max(0.0, now - status.active_at)


def minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def ending(job: Job, now: float) -> tuple[str, float, str]:
    """(which end comes first: "idle" or "time", seconds until it, the reason it will give)."""
    status = job.session or fresh(job)
    idle_limit = job.spec.idle_stop_min * 60
    to_idle = idle_limit - (now - status.active_at)
    to_time = status.ends_at - now
    if to_time <= to_idle:
        at = time.strftime("%H:%M", time.localtime(status.ends_at))
        return "time", to_time, (f"given back: it reached its end at {at} (--hours {job.spec.hours:g}; "
                                 f"`ugro session extend {job.id} --hours N` keeps it longer)")
    return "idle", to_idle, f"given back: idle for {minutes(idle_limit)} (no shell attached, nothing of it on its GPUs)"


class SessionWatch:
    def __init__(self, store: AsyncJobStore, state: ClusterState, launcher: Any,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.state = state
        self.launcher = launcher
        self.clock = clock
        self._looked: dict[int, float] = {}
        self._active: dict[int, float] = {}   # the latest activity seen, before it is stored
        self._sessions: set[int] = set()

    async def observe(self, jobs: dict[int, Job]) -> None:
        sessions = {j.id: j for j in jobs.values() if j.spec.kind == "session"}
        if set(sessions) != self._sessions:
            self._sessions = set(sessions)
            await asyncio.to_thread(shell.remove_entries, set(sessions))  # ended sessions' SSH config entries
        now = self.clock()
        due = [j for j in sessions.values() if j.state is JobState.RUNNING and not j.stop and not j.cancel_requested
               and now - self._looked.get(j.id, 0.0) >= PROBE_EVERY and j.runs]
        for job in due:
            self._looked[job.id] = now
        await asyncio.gather(*(self._look(job) for job in due), return_exceptions=True)
        for gone in set(self._looked) - set(sessions):
            self._looked.pop(gone, None)
            self._active.pop(gone, None)

    def _busy(self, job: Job, seen: Seen) -> bool:
        if seen.shells:
            return True
        for node, gpus in job.placement:
            status = self.state.nodes.get(node)
            for gpu in status.gpus if status else ():
                if gpu.index in gpus and any(p.pid in seen.pids for p in gpu.processes):
                    return True
        return False

    async def _look(self, job: Job) -> None:
        try:
            seen = await self.launcher.session_probe(job, "")
        except (NotImplementedError, *PROBE_ERRORS):  # no such launcher, or the node does not answer now
            return
        now = self.clock()
        status = job.session or fresh(job)
        busy = self._busy(job, seen)
        if busy:
            self._active[job.id] = now
        active = max(status.active_at, self._active.get(job.id, 0.0))
        status = dataclasses.replace(status, active_at=active, shells=len(seen.shells),
                                     warned="" if busy and status.warned == "idle" else status.warned)
        if seen.jupyter and not status.jupyter_port:
            status = dataclasses.replace(status, jupyter_port=seen.jupyter[0], jupyter_token=seen.jupyter[1])
        which, left, why = ending(dataclasses.replace(job, session=status), now)
        stop = ""
        if left <= 0:
            stop = why
            await asyncio.to_thread(events.tell, job, f"session ended: {why}", "session-ended")
        elif left <= warn_lead(job.spec.idle_stop_min * 60 if which == "idle" else job.spec.hours * 3600) \
                and status.warned != which:
            text = (f"ugro: session {job.id} ({job.spec.name}) ends in {minutes(left)}: "
                    + ("it has been idle" if which == "idle" else "it reaches its --hours")
                    + f"; `ugro session extend {job.id} --hours N` keeps it")
            status = dataclasses.replace(status, warned=which)
            await asyncio.to_thread(events.tell, job, text, "session-ending")
            with contextlib.suppress(*PROBE_ERRORS):
                await self.launcher.session_probe(job, text)  # a wall message in its attached shells
        old = job.session
        if stop or old is None or (status.shells, status.warned, status.jupyter_port) != (
                old.shells, old.warned, old.jupyter_port) \
                or status.active_at - old.active_at >= min(30.0, job.spec.idle_stop_min * 20):  # a third of it
            await self.store.update_active({job.id: lambda j: _stored(j, status, stop)})


def _stored(job: Job, seen: SessionStatus, stop: str) -> Job:
    """The watch's view on top of what the store holds now: an extension made meanwhile stands."""
    if job.state is not JobState.RUNNING:
        return job
    cur = job.session or seen
    extended = cur.ends_at != seen.ends_at
    status = dataclasses.replace(cur, active_at=max(cur.active_at, seen.active_at), shells=seen.shells,
                                 warned=cur.warned if extended else seen.warned, jupyter_port=seen.jupyter_port,
                                 jupyter_token=seen.jupyter_token)
    if extended and stop.startswith("given back: it reached"):
        stop = ""
    return dataclasses.replace(job, session=status, stop=job.stop or stop)


def session_columns(job: Job, now: float) -> tuple[str, str, str]:
    """Attached shells, idle time, and time left before it is given back (by whichever end comes first)."""
    if job.state is not JobState.RUNNING:
        return "–", "–", "–"
    shells = job.session.shells if job.session else 0
    _, left, _ = ending(job, now)
    return str(shells), minutes(idle_for(job, now)), minutes(max(0.0, left))


def session_line(job: Job, now: float) -> str:
    """A running session in a few words for the Jobs view and `ugro queue`: shells, idle time, time left."""
    shells, idle, left = session_columns(job, now)
    which, _, _ = ending(job, now)
    attached = f"{shells} shell{'s' if shells != '1' else ''} attached"
    return f"session: {attached} · idle {idle} · given back in {left}" + (" (idle stop)" if which == "idle" else "")


def reason_of(job: Job, now: float) -> str:
    """What the reason column says: a running session's line, else the job's reason."""
    if job.spec.kind == "session" and job.state is JobState.RUNNING and not job.stop:
        return session_line(job, now)
    return job.reason
