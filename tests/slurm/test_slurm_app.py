"""The app on the real Slurm lab: the Nodes view grows a card per Slurm node, and a job submitted from the CLI runs
through the daemon's dispatcher, shown live in the app."""

from __future__ import annotations

from pathlib import Path

import pytest

from ugro_tui.config import load_cluster
from ugro_tui.core.jobs.model import JobSpec, JobState
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.ui.app import make_app
from ugro_tui.ui.screens.nodes import NodesScreen

from ..conftest import daemon_on
from ..ui_states import wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("slurm")]  # one Slurm lab, on one worker


async def test_the_nodes_view_shows_slurms_nodes_and_the_daemon_dispatches_to_slurm(
        config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with daemon_on(config, monkeypatch):
        await follow_a_slurm_job(config)


async def follow_a_slurm_job(config: Path) -> None:
    store = JobStore()
    [job] = store.submit([JobSpec("hello", ("sh", "-c", "echo hello from $UGRO_NODE; sleep 15"), kind="command",
                                  nnodes=2, gpus_per_node=2)])
    app = make_app(load_cluster(config), store=store)
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, NodesScreen)
        await wait_for(pilot, lambda: {"n1", "n2"} <= set(screen.cards), timeout=30, what="the Slurm nodes' cards")
        await wait_for(pilot, lambda: store.get(job.id).state is JobState.RUNNING, timeout=30, what="the job")
        await wait_for(pilot, lambda: all(screen.cards[n].status.slurm.gpus_used == 2 for n in ("n1", "n2")),
                       timeout=30, what="sinfo to show the job's GPUs allocated")
        text = "".join(str(line) for line in screen.cards["n1"].render().renderables)
        assert "GPUs 2/2 allocated" in text and "(allocation only)" in text, text
        await wait_for(pilot, lambda: store.get(job.id).state is JobState.SUCCEEDED, timeout=60, what="the end")
    job = store.get(job.id)
    assert job.slurm is not None and job.slurm.state == "COMPLETED"
