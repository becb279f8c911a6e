"""A loopback lab of its own for each fault test (its nodes get killed, frozen and removed)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ugro_tui.sim.loopback import LoopbackCluster

from ..helpers import SERVICE_PORTS, host, job_processes

NODE_LOST_AFTER = 3.0
INTERVAL = 0.5


@pytest.fixture
def lab3(tmp_path: Path) -> Iterator[LoopbackCluster]:
    lab = LoopbackCluster(tmp_path / "lab3", hosts=[host(6), host(7), host(8)], service_ports=SERVICE_PORTS).start()
    yield lab
    for i in range(len(lab.nodes)):
        thaw(lab, i)
    lab.stop()
    kill_job_processes()


def write_config(lab: LoopbackCluster, path: Path, *, drop: str | None = None) -> Path:
    """The lab's cluster.toml with short fault timings; `drop` leaves one node out (removed from the file)."""
    text = lab.cluster_toml(sim=[(["RTX 4070"], "nvml")] * 3, poll_interval=INTERVAL)
    text = text.replace("connect_timeout = 5.0", f"connect_timeout = 2.0\nnode_lost_after = {NODE_LOST_AFTER}")
    head, *blocks = text.split("[[nodes]]")
    kept = [b for b in blocks if f'name = "{drop}"' not in b]
    work = path.parent / "lab-work"
    path.write_text((head + "".join("[[nodes]]" + b for b in kept)).replace(str(lab.root / "work"), str(work)))
    return path


def scheduler(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ugro_tui", "scheduler", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_job_processes(job_id: int | None = None, node: str | None = None) -> None:
    for pid in job_processes(job_id, node):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def freeze(lab: LoopbackCluster, index: int) -> None:
    lab.freeze_node(index)


def thaw(lab: LoopbackCluster, index: int) -> None:
    lab.thaw_node(index)
