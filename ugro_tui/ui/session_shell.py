"""`d` in the Nodes view: a session on the selected GPU, and its shell in this terminal. The app suspends into the
shell as it would into an editor and comes back when the shell exits; the session keeps its GPU until it is ended
(ctrl+d in the Jobs view, `ugro session end`) or given back when idle."""

from __future__ import annotations

import asyncio
import getpass
import subprocess
import time
from typing import Any

from textual.app import SuspendNotSupported

from ugro_tui.core.jobs.model import Job, JobSpec, JobState
from ugro_tui.core.sessions.shell import attach_argv
from ugro_tui.core.sessions.watch import fresh
from ugro_tui.errors import UgroError

PLACE_WITHIN = 60.0  # seconds the app waits for the daemon to start the session


def free_gpu_problem(app: Any, node: str, index: int) -> str | None:
    """Why the GPU cannot take a session now, or None."""
    status = app.monitor_state.nodes.get(node)
    gpu = next((g for g in status.gpus if g.index == index), None) if status else None
    if gpu is None:
        return f"{node}:{index} is not reporting"
    if gpu.processes:
        return f"{node}:{index} is in use ({len(gpu.processes)} process{'es' if len(gpu.processes) != 1 else ''})"
    jobs = app.session.jobs_snapshot or []
    for job in jobs:
        if job.state.active and any(n == node and index in g for n, g in job.placement):
            return f"{node}:{index} is held by job {job.id} ({job.spec.name})"
    return None


async def start_session(app: Any, node: str, index: int) -> Job:
    """Submit a session for that GPU and wait until the daemon runs it; UgroError says why it did not."""
    spec = JobSpec(name=f"{getpass.getuser()}-session", command=("session",), kind="session", nodes=(node,),
                   gpu_indexes=(index,))
    [job] = await asyncio.to_thread(app.store.submit, [spec])
    app.kick_daemon()
    began = time.monotonic()
    while time.monotonic() - began < PLACE_WITHIN:
        job = await asyncio.to_thread(app.store.get, job.id)
        if job.state is JobState.RUNNING:
            return job
        if job.state.finished:
            raise UgroError(f"session {job.id} {job.state}: {job.reason}")
        await asyncio.sleep(0.2)
    raise UgroError(f"session {job.id} still waits: {job.reason or 'no daemon placed it'}; "
                    f"`ugro session attach {job.id}` opens it once it runs")


def open_shell(app: Any, job: Job) -> str:
    """Suspend the app into the session's shell; returns what to say when the app is back."""
    argv = attach_argv(app.cluster, job)
    try:
        with app.suspend():
            code = run_shell(argv)  # the terminal is the shell's until it exits
    except SuspendNotSupported:  # in a browser: no terminal to hand over
        return f"session {job.id} holds {_where(job)}: `ugro session attach {job.id}` opens its shell"
    until = time.strftime("%H:%M", time.localtime((job.session or fresh(job)).ends_at))
    return (f"back from session {job.id}'s shell (exit {code}); it keeps {_where(job)} until {until} or "
            "until idle — ctrl+d in the Jobs view ends it")


def run_shell(argv: list[str]) -> int:
    return subprocess.call(argv)


def _where(job: Job) -> str:
    return ", ".join(f"{n}:{','.join(map(str, g))}" for n, g in job.placement)
