"""Checkpoints in the app, read from a real loopback node: the job detail lists them, r offers them."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from textual.widgets import OptionList

from ugro_tui.config import load_cluster
from ugro_tui.core.daemon.client import Client
from ugro_tui.core.jobs.model import JobSpec, JobState, NodeRun
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.sim.loopback import LoopbackCluster
from ugro_tui.ui.app import UgroApp, make_app
from ugro_tui.ui.screens.checkpoints import CheckpointList, ResumePicker

from ..conftest import daemon_on
from ..ui_states import NOW, showing, wait_for


def failed_job_with_checkpoints(lab: LoopbackCluster, tmp_path: Path) -> tuple[Path, JobStore]:
    """The config (the daemon's too) and the store (the daemon's) with one failed job."""
    text = lab.cluster_toml(sim=[(["RTX 4070"], "nvml")] * 3).replace(str(lab.root / "work"), str(tmp_path / "w"))
    folder = tmp_path / "w" / "node0" / "ckpt"
    for step, complete in ((10, True), (20, True), (30, False)):
        where = folder / f"step-{step:06d}"
        where.mkdir(parents=True)
        (where / "state.pt").write_bytes(b"x" * 2048)
        if complete:
            (where / ".complete").touch()
        for path in (where, *where.iterdir()):
            os.utime(path, (NOW - 600 + step, NOW - 600 + step))
    store = JobStore()
    spec = JobSpec("tiny", ("train.py",), checkpoint_dir="ckpt")
    [job] = store.submit([spec], now=NOW - 900)
    store.move(job.id, JobState.STARTING, placement=(("node0", (0,)),), started_at=NOW - 800)
    store.update(job.id, lambda j: dataclasses.replace(j, runs=(("node0", NodeRun(1, "/x", 1)),), ran_on=("node0",),
                                                      metric=((10, 2.5, NOW - 700), (20, 1.25, NOW - 650))))
    store.move(job.id, JobState.RUNNING)
    store.move(job.id, JobState.FAILED, reason="node0 exited 1", finished_at=NOW - 500)
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path, store


def still_app(path: Path, store: JobStore) -> UgroApp:
    """An app that follows nothing live (a steady frame) and asks the daemon for checkpoints."""
    app = make_app(load_cluster(path), monitor=False, clock=lambda: NOW, store=store)
    app.daemon = Client()
    return app


async def test_the_detail_lists_checkpoints_and_r_retries_from_one(lab: LoopbackCluster, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path, store = failed_job_with_checkpoints(lab, tmp_path)
    with daemon_on(path, monkeypatch):
        await retry_from_a_checkpoint(still_app(path, store), store)


async def retry_from_a_checkpoint(app: UgroApp, store: JobStore) -> None:
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: app.session.jobs_snapshot is not None, what="the jobs")
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(app.screen.query(CheckpointList)), what="the detail")
        listing = app.screen.query_one(CheckpointList)
        await wait_for(pilot, lambda: "step-000010" in str(listing.render()), timeout=20, what="the checkpoints")
        shown = str(listing.render())
        assert "step-000020" in shown and "loss 1.25" in shown and "(incomplete)" in shown
        await pilot.press("escape", "r")
        await wait_for(pilot, lambda: showing(app, ResumePicker), timeout=20, what="the picker")
        options = app.screen.query_one(OptionList)
        prompts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert prompts[0].startswith("step-000020 (step 20, loss 1.25)") and "newest" in prompts[0]
        assert prompts[1].startswith("step-000010") and prompts[-1].startswith("from the start")
        assert not any("000030" in p for p in prompts)  # incomplete: never offered
        await pilot.press("down", "enter")
        # Queued to resume from step 10, or (the daemon dispatched it at once) launched from its folder.
        await wait_for(pilot, lambda: store.get(1).resume_step == 10 or (store.get(1).resume_from or "").endswith(
            "ckpt/step-000010"), what="the retry")


def test_snapshot_of_the_resume_picker(snap_compare, lab: LoopbackCluster, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path, store = failed_job_with_checkpoints(lab, tmp_path)

    async def open_picker(pilot) -> None:
        await pilot.press("2")
        await wait_for(pilot, lambda: pilot.app.session.jobs_snapshot is not None, what="the jobs")
        await pilot.press("r")
        await wait_for(pilot, lambda: showing(pilot.app, ResumePicker), timeout=20, what="the picker")
        await pilot.pause()

    with daemon_on(path, monkeypatch):
        assert snap_compare(still_app(path, store), terminal_size=(80, 24), run_before=open_picker)


def test_snapshot_of_a_detail_with_checkpoints(snap_compare, lab: LoopbackCluster, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path, store = failed_job_with_checkpoints(lab, tmp_path)

    async def open_detail(pilot) -> None:
        await pilot.press("2")
        await wait_for(pilot, lambda: pilot.app.session.jobs_snapshot is not None, what="the jobs")
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(pilot.app.screen.query(CheckpointList)), what="the detail")
        listing = pilot.app.screen.query_one(CheckpointList)
        await wait_for(pilot, lambda: "step-000010" in str(listing.render()), timeout=20, what="the checkpoints")
        await pilot.pause()

    with daemon_on(path, monkeypatch):
        assert snap_compare(still_app(path, store), terminal_size=(100, 30), run_before=open_detail)
