"""Two ugro installations whose jobs share nodes, a login user, job ids and node names never touch each other's
processes: every sweep matches the store's own identity (UGRO_STORE)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ugro_tui.core.jobs.store import JobStore
from ugro_tui.sim.loopback import LoopbackCluster

from ..helpers import job, job_processes, ugro, wait
from .conftest import scheduler, write_config

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]


def test_cancelling_one_stores_job_1_leaves_the_others_job_1_running(lab3: LoopbackCluster, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    stores = {name: tmp_path / name for name in ("a", "b")}
    configs = {name: write_config(lab3, folder / "cluster.toml") for name, folder in stores.items()
               if folder.mkdir() is None}
    schedulers, ids = {}, {}

    def use(name: str) -> None:  # each installation has its own state dir; the lab and its login users are shared
        monkeypatch.setenv("XDG_STATE_HOME", str(stores[name] / "state"))

    try:
        for name in stores:
            use(name)
            schedulers[name] = scheduler(configs[name])
            done = ugro(configs[name], "submit", "--kind", "command", "--gpus-per-node", "0", "--nodes", "node0",
                        "--", "sleep", "600")
            ids[name] = int(done.stdout.split()[-1])
            identity = JobStore().identity()
        assert ids == {"a": 1, "b": 1}
        identities = {name: JobStore(stores[name] / "state" / "ugro" / "jobs").identity() for name in stores}
        assert identities["b"] == identity and identities["a"] != identities["b"]
        for name in stores:
            use(name)
            config, identity = configs[name], identities[name]
            wait(lambda c=config: job(c, 1)["state"] == "running", 60, f"store {name}'s job 1 to run")
            wait(lambda i=identity: job_processes(1, "node0", i), 30, f"store {name}'s job 1's processes")
        theirs = set(job_processes(1, "node0", identities["b"]))

        use("a")
        assert ugro(configs["a"], "cancel", "1").returncode == 0
        wait(lambda: job(configs["a"], 1)["state"] == "cancelled", 60, "store a's job 1 to be cancelled")
        wait(lambda: not job_processes(1, "node0", identities["a"]), 30, "store a's job 1 to leave nothing")

        use("b")
        assert job(configs["b"], 1)["state"] == "running"
        assert theirs and theirs == set(job_processes(1, "node0", identities["b"]))  # none of b's was touched
    finally:
        for proc in schedulers.values():
            proc.terminate()
            proc.wait(10)
