"""Snapshots of sessions: the Jobs view says a running session's shells, idle time and time left, and a job waiting
for its card names it; `d` on a free GPU of the Nodes view, before and after the app comes back from the shell."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

from ugro_tui.core.jobs.model import JobSpec, JobState, NodeRun
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.sessions.status import SessionStatus
from ugro_tui.ui import session_shell
from ugro_tui.ui.app import make_app

from ..ui_states import LAB, NOW, online, press_then, wait_for


def session_store(root) -> JobStore:
    """ollie's session holds gpu2:0 with one shell attached; a job that needs gpu2 waits, naming it."""
    store = JobStore(root)
    session, waiting = store.submit([
        JobSpec("ollie-session", ("session",), kind="session", nodes=("gpu2",), idle_stop_min=60),
        JobSpec("eval-gpu2", ("eval.py",), nodes=("gpu2",))], now=NOW - 900)
    store.move(session.id, JobState.STARTING, placement=(("gpu2", (0,)),), started_at=NOW - 800)
    store.move(session.id, JobState.RUNNING, reason="running",
               runs=(("gpu2", NodeRun(pid=4100, run_dir="~/ugro/runs/job-1-a1")),))
    store.update_active({
        session.id: lambda j: dataclasses.replace(j, session=SessionStatus(NOW + 11 * 3600, NOW - 420, shells=1)),
        waiting.id: lambda j: dataclasses.replace(j, reason="needs 1 node with 1 free GPU; 0 such nodes free now; "
                                                            "gpu2:0 is held by session 1 (ollie-session)")})
    return store


def test_a_session_and_the_job_waiting_for_its_card_in_the_jobs_view(snap_compare, tmp_path) -> None:
    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=online(), store=session_store(tmp_path))
    assert snap_compare(app, terminal_size=(120, 24), run_before=press_then(["2"]))


def test_d_on_a_free_gpu_before(snap_compare, tmp_path) -> None:
    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=online(), store=JobStore(tmp_path))
    assert snap_compare(app, terminal_size=(100, 30), run_before=press_then(["j", "j"]))


def test_d_on_a_free_gpu_after_the_shell_exits(snap_compare, tmp_path, monkeypatch) -> None:
    """The daemon's part is played here (the session is started in the store), and the shell is not run: the
    tmux test in tests/functional/test_sessions.py runs the real one on a real node."""
    store = JobStore(tmp_path)
    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=online(), store=store)
    shells: list[list[str]] = []
    monkeypatch.setattr(session_shell, "run_shell", lambda argv: shells.append(argv) or 0)
    monkeypatch.setattr(app, "suspend", contextlib.nullcontext)

    async def daemon() -> None:
        while not store.all():
            await asyncio.sleep(0.02)
        job = store.all()[0]
        store.move(job.id, JobState.STARTING, placement=(("gpu2", (0,)),), started_at=NOW)
        store.move(job.id, JobState.RUNNING, reason="running",
                   runs=(("gpu2", NodeRun(pid=4100, run_dir="~/ugro/runs/job-1-a1")),))

    async def back(pilot) -> None:
        placed = asyncio.create_task(daemon())
        await pilot.press("d")
        await wait_for(pilot, lambda: bool(shells), what="the shell run")
        await placed
        await wait_for(pilot, lambda: any("back from session" in str(n.message) for n in pilot.app._notifications),
                       what="the app back")

    assert snap_compare(app, terminal_size=(100, 30), run_before=press_then(["j", "j"], back))
    [argv] = shells
    assert argv[:2] == ["ssh", "-t"] and argv[-2] == "ollie@127.0.0.4" and "session.sh" in argv[-1]
    [job] = store.all()
    assert job.spec.kind == "session" and job.spec.gpu_indexes == (0,) and job.spec.nodes == ("gpu2",)
