"""One SSH connection and one telemetry agent per node, whoever watches: the daemon's, shared by telemetry, the
dispatcher, the launcher and the log copies, while the app, `ugro logs -f` and `ugro status --watch` follow it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.model import JobSpec, JobState
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.ui.app import make_app
from ugro_tui.ui.screens.logs import LogsScreen

from ..conftest import daemon_on
from ..helpers import job_processes, ugro, wait
from ..ui_states import wait_for
from .test_daemon import agents_of


def connections(cluster: Cluster, pid: int | None = None) -> dict[str, int]:
    """Established TCP connections to each node's sshd from any process on this machine (or from `pid`), as the
    kernel counts them (loopback shows both ends: the client's is the one whose peer is the sshd)."""
    out = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True, text=True).stdout
    lines = [line for line in out.splitlines() if pid is None or f"pid={pid}," in line]
    peers = [line.split()[3] for line in lines if len(line.split()) > 3]  # recv-q send-q local peer ...
    return {node.name: peers.count(f"{node.host}:{node.port}") for node in cluster.nodes}


async def test_exactly_one_connection_and_agent_per_node_with_the_app_logs_f_and_status_watch(
        lab_config, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, config = lab_config
    with daemon_on(config, monkeypatch):
        store = JobStore()
        ticks = "for i in $(seq 1 40); do echo tick $i; sleep 0.5; done"
        store.submit([JobSpec("ticks", ("sh", "-c", ticks), kind="command", nnodes=2, gpus_per_node=0,
                              nodes=("node0", "node1"))])
        base = [sys.executable, "-m", "ugro_tui"]
        verbs = (("logs", "-f", "1"), ("status", "--watch"))
        watchers: list[subprocess.Popen] = []
        try:
            app = make_app(cluster, store=store)
            async with app.run_test(size=(120, 40)) as pilot:
                await wait_for(pilot, lambda: store.get(1).state is JobState.RUNNING, 30, "the job to run")
                watchers += [subprocess.Popen([*base, *verb, "--config", str(config)], stdout=subprocess.DEVNULL,
                                              stderr=(tmp_path / f"{verb[0]}.err").open("w")) for verb in verbs]
                await pilot.press("2")
                await wait_for(pilot, lambda: app.screen.query_one("DataTable").row_count == 1, 10, "the jobs table")
                await pilot.press("l")
                await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen)
                               and len(app.screen.demux.nodes) == 2, 20, "both nodes' logs")
                assert all(s.state.value == "online" for s in app.monitor_state.nodes.values())
                assert store.get(1).state is JobState.RUNNING  # telemetry, the job, its logs: all at once
                assert all(w.poll() is None for w in watchers), [  # both still following
                    (tmp_path / f"{verb[0]}.err").read_text() for verb in verbs]
                deadline = time.monotonic() + 5
                while (counts := connections(cluster)) != {"node0": 1, "node1": 1, "node2": 1}:
                    assert time.monotonic() < deadline, counts
                    await pilot.pause(0.2)
                agents = {n.name: len(agents_of(Path(n.workdir))) for n in cluster.nodes}
                assert agents == {"node0": 1, "node1": 1, "node2": 1}
        finally:
            for w in watchers:
                w.terminate()
                w.wait(10)
            # The lab is shared: its job 1 must not tick on into the next test's job 1.
            ugro(config, "cancel", "1", strict=False)
            wait(lambda: not job_processes(1, under=Path(cluster.nodes[0].workdir).parent), 30, "the job to stop")
