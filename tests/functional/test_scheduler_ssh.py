"""`ugro scheduler` over the real loopback sshd cluster: jobs placed on free simulated GPUs, run, cancelled."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import LAB_SIM, run_ugro
from ..helpers import jobs, ugro


def test_scheduler_runs_jobs_on_free_gpus_until_idle(lab: LoopbackCluster, tmp_path: Path) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text(lab.cluster_toml(sim=LAB_SIM, poll_interval=0.5))
    out = tmp_path / "out"
    out.mkdir()
    script = f'echo "$UGRO_NODE $UGRO_NODE_RANK $CUDA_VISIBLE_DEVICES" > {out}/$UGRO_NODE; exit 0'
    assert ugro(config, "submit", "--kind", "command", "--nnodes", "2", "--", "sh", "-c", script).stdout == "1\n"
    assert ugro(config, "submit", "--kind", "command", "--after", "1", "--", "sh", "-c", "exit 3").stdout == "2\n"
    assert ugro(config, "submit", "--kind", "command", "--after", "2", "--", "true").stdout == "3\n"
    done = run_ugro("scheduler", "--config", str(config), "--until-idle", timeout=120)
    assert done.returncode == 0, done.stderr
    state = jobs(config)
    assert state[1]["state"] == "succeeded" and state[1]["placement"] == {"node0": [0], "node1": [0]}
    # node2 has no GPU driver: never placed there. Each node saw its own rank and GPU.
    assert (out / "node0").read_text() == "node0 0 0\n" and (out / "node1").read_text() == "node1 1 0\n"
    assert state[2]["state"] == "failed" and "exited 3" in state[2]["reason"]
    assert state[3]["state"] == "failed" and "job 2" in state[3]["reason"]


def test_cancel_stops_a_running_job_on_every_node(lab: LoopbackCluster, tmp_path: Path) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text(lab.cluster_toml(sim=LAB_SIM, poll_interval=0.5))
    marker = tmp_path / "pids"
    script = f"echo $$ >> {marker}; sleep 300"
    ugro(config, "submit", "--kind", "command", "--nnodes", "2", "--", "sh", "-c", script)
    sched = subprocess.Popen([sys.executable, "-m", "ugro_tui", "scheduler", "--config", str(config)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while jobs(config)[1]["state"] != "running" or not marker.exists() or len(marker.read_text().split()) < 2:
            assert time.monotonic() < deadline, "the job never ran"
            time.sleep(0.2)
        pids = [int(p) for p in marker.read_text().split()]
        second = ugro(config, "scheduler")
        assert second.returncode == 2 and "runs already" in second.stderr, second.stderr  # it is the daemon
        assert ugro(config, "cancel", "1").returncode == 0
        while jobs(config)[1]["state"] != "cancelled":
            assert time.monotonic() < deadline + 30, "never cancelled"
            time.sleep(0.2)
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    finally:
        sched.kill()
        sched.wait()
