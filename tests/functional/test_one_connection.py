"""One SSH connection per node, shared by telemetry, the dispatcher, the launcher and the log followers."""

from __future__ import annotations

import os
import re
import subprocess
import time

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.model import JobSpec, JobState
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.ui.app import make_app
from ugro_tui.ui.screens.logs import LogsScreen

from ..ui_states import wait_for


def connections(cluster: Cluster) -> dict[str, int]:
    """Established TCP connections from this process to each node's sshd, as the kernel counts them."""
    out = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True, text=True).stdout
    mine = [line for line in out.splitlines() if f"pid={os.getpid()}," in line]
    counts = {}
    for node in cluster.nodes:
        peer = re.compile(rf"\s{re.escape(node.host)}:{node.port}\s")
        counts[node.name] = sum(1 for line in mine if peer.search(line + " "))
    return counts


async def test_exactly_one_connection_per_node_while_a_job_runs_with_its_logs(lab_config, tmp_path) -> None:
    cluster, _ = lab_config
    store = JobStore(tmp_path / "jobs")
    ticks = "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do echo tick $i; sleep 0.5; done"
    store.submit([JobSpec("ticks", ("sh", "-c", ticks), kind="command", nnodes=2, gpus_per_node=0,
                          nodes=("node0", "node1"))])
    app = make_app(cluster, store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: store.get(1).state is JobState.RUNNING, 30, "the job to run")
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.query_one("DataTable").row_count == 1, 10, "the jobs table")
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen)
                       and len(app.screen.demux.nodes) == 2, 20, "both nodes' logs")
        assert all(s.state.value == "online" for s in app.monitor_state.nodes.values())
        assert store.get(1).state is JobState.RUNNING  # telemetry, the job, its logs: all at once
        deadline = time.monotonic() + 5
        while (counts := connections(cluster)) != {"node0": 1, "node1": 1, "node2": 1}:
            assert time.monotonic() < deadline, counts
            await pilot.pause(0.2)
