"""Telemetry, job changes and log lines that reach a screen before it is mounted, while it mounts, or after it is
gone never crash the app: every handler that draws has nothing to draw on then, and says nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

from ugro_tui.core.jobs.logs import Source, local_copy
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.ui.app import make_app
from ugro_tui.ui.screens.jobs import JobsScreen
from ugro_tui.ui.screens.launch import LaunchScreen
from ugro_tui.ui.screens.logs import LogsScreen
from ugro_tui.ui.screens.nodes import NodesScreen
from ugro_tui.ui.widgets.node_card import NodeCard

from ..ui_states import LAB, job_store, job_with_logs, online


def feed_everything(app, store: JobStore, log: Path, tick: int) -> None:
    """One round of what the daemon and the nodes send: a sample per node, a job change, a log line."""
    for status in app.monitor_state.nodes.values():
        app.node_changed(status)
    store.update_active({2: lambda j: dataclasses.replace(j, reason=f"running (tick {tick})")})
    app.session.jobs_snapshot = store.all()
    with log.open("a") as f:
        f.write(f"[rank0.0]:step {tick} loss 1.0\n")


async def test_updates_while_views_mount_and_unmount_leave_the_app_running(tmp_path: Path) -> None:
    store = job_store(tmp_path / "jobs")
    logs_store, logs_job = job_with_logs(tmp_path / "logs-jobs")
    log = local_copy(logs_store.get(logs_job), "gpu-master")
    app = make_app(LAB, monitor=False, state=online(), store=store)
    async with app.run_test(headless=True, size=(100, 30)) as pilot:
        app.session.logs_job = logs_job
        tick = 0
        began = time.monotonic()
        # Every view in turn, each switch with updates sent at once and between the steps of its mount.
        for keys in ["2", "3", "1", "n", "escape", "5", "2", "question_mark", "escape", "4", "3", "1"]:
            await pilot.press(keys)
            for _ in range(3):
                feed_everything(app, store, log, tick)
                tick += 1
                await asyncio.sleep(0)
        await pilot.pause()
        assert app.is_running and app.return_code is None
        assert not app.failures, app.failures  # no worker failed either
        assert time.monotonic() - began < 60


async def test_each_views_handlers_do_nothing_before_mount_and_after_removal(tmp_path: Path) -> None:
    """Called straight, as a message queued before mount or delivered after removal would call them."""
    store = job_store(tmp_path / "jobs")
    app = make_app(LAB, monitor=False, state=online(), store=store)
    status = next(iter(app.monitor_state.nodes.values()))
    jobs = store.all()
    source = Source("gpu-master", 0, "stdout")

    def poke(nodes: NodesScreen, jobs_view: JobsScreen, logs: LogsScreen, launch: LaunchScreen,
             card: NodeCard) -> None:
        nodes.node_updated(status)
        nodes.action_move(1)
        jobs_view.show_jobs(jobs)
        logs._take(source, b"step 1 loss 2.0\n")
        logs._flush()
        logs._draw_loss()
        launch.node_updated()
        card.refresh_status()

    async with app.run_test(headless=True, size=(100, 30)) as pilot:
        made = (NodesScreen(), JobsScreen(), LogsScreen(), LaunchScreen(), NodeCard(status))
        poke(*made)  # before mount
        card = made[4]
        for screen in made[:4]:
            await app.push_screen(screen)
            await pilot.pause()
            if isinstance(screen, NodesScreen):
                card = screen.query(NodeCard).first()
            await app.pop_screen()
            await pilot.pause()
        poke(*made[:4], card)  # after removal
        await pilot.pause()
        assert app.is_running and app.return_code is None
        assert not app.failures, app.failures
