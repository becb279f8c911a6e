"""The Slurm backend's dispatcher killed around a submit: never a job lost, never one submitted twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ugro_tui.config import load_cluster
from ugro_tui.core.backends.slurm.client import SlurmClient
from ugro_tui.core.backends.slurm.dispatcher import SlurmDispatcher
from ugro_tui.core.jobs.model import JobSpec
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.pool import Pool
from ugro_tui.sim.slurm import SlurmLab

from ..helpers import ugro

pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("slurm")]  # one Slurm lab, on one worker


def slurm_jobs_named(slurm: SlurmLab, name: str, work: Path) -> list[str]:
    """This test's Slurm jobs of that name (the lab's Slurm remembers other tests' jobs, named alike)."""
    done = slurm.run("squeue", "-h", "-t", "all", "-n", name, "-o", "%i %Z")
    return [line.split()[0] for line in done.stdout.splitlines() if str(work) in line]


class Died(BaseException):
    """The dispatcher's process ends here (BaseException: no handler of the dispatcher's catches it)."""


@pytest.mark.parametrize("dies", ["before sbatch", "after sbatch"])
def test_a_dispatcher_that_dies_around_sbatch_submits_the_job_exactly_once(
        config: Path, slurm: SlurmLab, monkeypatch: pytest.MonkeyPatch, dies: str) -> None:
    cluster = load_cluster(config)
    store = JobStore()
    store.submit([JobSpec(name="once", command=("sh", "-c", "sleep 1"), kind="command")])
    real = SlurmClient.submit

    async def dying(self, sub, **kw):
        if dies == "after sbatch":
            await real(self, sub, **kw)
        raise Died(dies)

    async def first_life() -> None:
        async with Pool(cluster) as pool:
            with pytest.raises(Died):
                await SlurmDispatcher(cluster, store, pool).tick()

    monkeypatch.setattr(SlurmClient, "submit", dying)
    asyncio.run(first_life())
    monkeypatch.setattr(SlurmClient, "submit", real)
    assert store.get(1).slurm is not None and store.get(1).slurm.job_id == ""  # in flight when it died

    done = ugro(config, "scheduler", "--until-idle", timeout=120)  # the next dispatcher
    assert done.returncode == 0, done.stderr
    job = store.get(1)
    assert job.state.value == "succeeded" and job.attempt == 1, job
    assert slurm_jobs_named(slurm, "ugro-1-a1", config.parent / "work") == [job.slurm.job_id]


def test_a_scheduler_sigkilled_while_submitting_loses_nothing(config: Path, slurm: SlurmLab) -> None:
    for i in range(4):
        ugro(config, "submit", "--kind", "command", "--name", f"j{i}", "--", "sh", "-c", "sleep 0.5")
    scheduler = subprocess.Popen([sys.executable, "-m", "ugro_tui", "scheduler", "--config", str(config)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = JobStore()
    deadline = time.monotonic() + 60
    while not any(j.slurm is not None for j in store.active()) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(scheduler.pid, signal.SIGKILL)
    scheduler.wait()
    done = ugro(config, "scheduler", "--until-idle", timeout=120)
    assert done.returncode == 0, done.stderr
    for job in store.all():
        assert job.state.value == "succeeded", job
        assert slurm_jobs_named(slurm, f"ugro-{job.id}-a{job.attempt}", config.parent / "work") == [job.slurm.job_id]


def test_a_frozen_login_node_holds_nothing_up_and_loses_nothing(solo_lab, slurm: SlurmLab, tmp_path: Path) -> None:
    from .conftest import slurm_toml

    path = tmp_path / "solo.toml"
    path.write_text(slurm_toml(solo_lab, slurm, tmp_path / "work").replace("connect_timeout = 5.0",
                                                                            "connect_timeout = 1.0"))
    cluster = load_cluster(path)
    store = JobStore()
    store.submit([JobSpec(name="through", command=("sh", "-c", "sleep 4; echo done"), kind="command")])

    async def scenario() -> tuple[float, str | None]:
        async with Pool(cluster) as pool:
            backend = SlurmDispatcher(cluster, store, pool)
            deadline = time.monotonic() + 60
            while store.get(1).state.value != "running":
                assert time.monotonic() < deadline, store.get(1)
                await backend.tick()
                await asyncio.sleep(0.3)
            solo_lab.freeze_node(0)
            try:
                began = time.monotonic()
                await backend.tick()  # every Slurm command has a deadline: the round ends, saying why
                took, problem = time.monotonic() - began, backend.problem
                assert store.get(1).state.value == "running"  # nothing decided while Slurm cannot be asked
            finally:
                solo_lab.thaw_node(0)
            while store.get(1).state.value == "running":
                assert time.monotonic() < deadline + 60, store.get(1)
                await backend.tick()
                await asyncio.sleep(0.3)
            return took, problem

    took, problem = asyncio.run(scenario())
    assert took < backend_deadline(cluster) + 5, took
    assert problem is not None and "could not be read" in problem, problem
    job = store.get(1)
    assert job.state.value == "succeeded", job  # it ran on in Slurm meanwhile, and is followed to its end
    assert "done" in (tmp_path / "work" / "runs" / "job-1-a1" / "n1" / "console.log").read_text()


def backend_deadline(cluster) -> float:
    from ugro_tui.core.backends.slurm.client import SlurmClient

    return SlurmClient(cluster, lambda _name: None).timeout
