"""Checkpoints in the app, read from a real loopback node: the job detail lists them, r offers them."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from textual.widgets import OptionList

from ugro_tui.core.jobs.model import JobSpec, JobState, NodeRun
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.sim.loopback import LoopbackCluster
from ugro_tui.ui.app import make_app
from ugro_tui.ui.screens.checkpoints import CheckpointList, ResumePicker

from ..conftest import cluster_from
from ..ui_states import NOW, wait_for


def failed_job_with_checkpoints(lab: LoopbackCluster, tmp_path: Path) -> tuple[str, JobStore]:
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
    store = JobStore(tmp_path / "store")
    spec = JobSpec("tiny", ("train.py",), checkpoint_dir="ckpt")
    [job] = store.submit([spec], now=NOW - 900)
    store.move(job.id, JobState.STARTING, placement=(("node0", (0,)),), started_at=NOW - 800)
    store.update(job.id, lambda j: dataclasses.replace(j, runs=(("node0", NodeRun(1, "/x", 1)),), ran_on=("node0",),
                                                      metric=((10, 2.5, NOW - 700), (20, 1.25, NOW - 650))))
    store.move(job.id, JobState.RUNNING)
    store.move(job.id, JobState.FAILED, reason="node0 exited 1", finished_at=NOW - 500)
    return text, store


async def test_the_detail_lists_checkpoints_and_r_retries_from_one(lab: LoopbackCluster, tmp_path: Path) -> None:
    text, store = failed_job_with_checkpoints(lab, tmp_path)
    app = make_app(cluster_from(text), monitor=False, clock=lambda: NOW, store=store)
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
        await wait_for(pilot, lambda: isinstance(app.screen, ResumePicker), timeout=20, what="the picker")
        options = app.screen.query_one(OptionList)
        prompts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert prompts[0].startswith("step-000020 (step 20, loss 1.25)") and "newest" in prompts[0]
        assert prompts[1].startswith("step-000010") and prompts[-1].startswith("from the start")
        assert not any("000030" in p for p in prompts)  # incomplete: never offered
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: store.get(1).state is JobState.QUEUED, what="the retry")
        assert store.get(1).resume_step == 10 and "from step 10" in store.get(1).reason


def test_snapshot_of_the_resume_picker(snap_compare, lab: LoopbackCluster, tmp_path: Path) -> None:
    text, store = failed_job_with_checkpoints(lab, tmp_path)

    async def open_picker(pilot) -> None:
        await pilot.press("2")
        await wait_for(pilot, lambda: pilot.app.session.jobs_snapshot is not None, what="the jobs")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResumePicker), timeout=20, what="the picker")
        await pilot.pause()

    app = make_app(cluster_from(text), monitor=False, clock=lambda: NOW, store=store)
    assert snap_compare(app, terminal_size=(80, 24), run_before=open_picker)


def test_snapshot_of_a_detail_with_checkpoints(snap_compare, lab: LoopbackCluster, tmp_path: Path) -> None:
    text, store = failed_job_with_checkpoints(lab, tmp_path)

    async def open_detail(pilot) -> None:
        await pilot.press("2")
        await wait_for(pilot, lambda: pilot.app.session.jobs_snapshot is not None, what="the jobs")
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(pilot.app.screen.query(CheckpointList)), what="the detail")
        listing = pilot.app.screen.query_one(CheckpointList)
        await wait_for(pilot, lambda: "step-000010" in str(listing.render()), timeout=20, what="the checkpoints")
        await pilot.pause()

    app = make_app(cluster_from(text), monitor=False, clock=lambda: NOW, store=store)
    assert snap_compare(app, terminal_size=(100, 30), run_before=open_detail)
