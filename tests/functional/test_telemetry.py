"""Telemetry end to end over the real loopback sshd cluster: both data paths, no driver, node loss, cleanup."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from ugro_tui.config import Cluster
from ugro_tui.core.telemetry.model import NodeState, NodeStatus
from ugro_tui.core.telemetry.monitor import AGENT_PATH, Monitor
from ugro_tui.core.transport import make_transport
from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import cluster_from, run_ugro

AGENT_NAME = Path(AGENT_PATH).name


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_both_data_paths_and_no_driver(lab_config: tuple[Cluster, Path]) -> None:
    cluster, _ = lab_config
    async with Monitor(cluster) as monitor:
        nodes = monitor.state.nodes
        await until(lambda: all(n.state is NodeState.ONLINE for n in nodes.values()), 15, "all online")
        nvml, smi, none = nodes["node0"], nodes["node1"], nodes["node2"]
        assert nvml.source == "nvml" and [g.name for g in nvml.gpus] == ["NVIDIA GeForce RTX 5070 Ti"]
        assert nvml.gpus[0].memory_total_mib == 12227 and nvml.gpus[0].power_limit_w == 300.0
        assert smi.source == "nvidia-smi" and [g.index for g in smi.gpus] == [0, 1]
        assert smi.gpus[0].name == "NVIDIA GeForce RTX 4070" and smi.gpus[1].memory_total_mib == 8188
        assert none.gpus == () and none.error and none.error.startswith("no GPU driver")
        assert not none.healthy
        h = monitor.state.health()
        assert (h.nodes_total, h.nodes_healthy, h.gpus_total) == (3, 2, 3)
        # Host metrics come from every node, the one without a GPU driver too; these "nodes" are this machine.
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        mem_total_mib = int(meminfo["MemTotal"].split()[0]) // 1024
        await until(lambda: all(n.host is not None and n.host.cpu_pct is not None for n in nodes.values()), 10,
                    "host metrics with a CPU rate")
        for node in nodes.values():
            host = node.host
            assert host is not None and abs(host.mem_total_mib - mem_total_mib) <= mem_total_mib * 0.01
            assert host.cores == os.cpu_count() and 0 <= host.cpu_pct <= 100
            assert host.disk_free_gib > 0 and host.uptime_s > 0 and host.load1 is not None
            assert host.net_rx_bps is not None and host.net_tx_bps is not None
        doc = monitor.state.to_json()["nodes"][0]["host"]
        assert set(doc) >= {"cpu_pct", "cores", "load1", "load5", "load15", "mem_used_mib", "mem_total_mib",
                            "swap_used_mib", "disk_free_gib", "net_rx_bps", "net_tx_bps", "uptime_s"}


@pytest.mark.usefixtures("autostart")  # `ugro status` reads the daemon it starts
async def test_processes_on_a_gpu_raise_its_load(lab_config: tuple[Cluster, Path]) -> None:
    """A process whose CUDA_VISIBLE_DEVICES names a GPU shows on it, through NVML and through nvidia-smi."""
    cluster, config = lab_config
    transports = [make_transport(cluster.node(n), cluster) for n in ("node0", "node1")]
    pids = []
    for t, (node, gpu) in zip(transports, (("node0", 0), ("node1", 1)), strict=True):
        env = f"UGRO_NODE={node} CUDA_VISIBLE_DEVICES={gpu} UGRO_SIM_MEM_MIB=3000"
        pids.append(await t.spawn_detached(f"exec env {env} sleep 30"))
    try:
        async with Monitor(cluster) as monitor:
            n0, n1 = monitor.state.nodes["node0"], monitor.state.nodes["node1"]

            def shows(status: NodeStatus, index: int, pid: int) -> bool:
                return any(g.index == index and any(p.pid == pid for p in g.processes) for g in status.gpus)

            await until(lambda: shows(n0, 0, pids[0]) and shows(n1, 1, pids[1]), 15, "the processes")
            busy, idle = n1.gpus[1], n1.gpus[0]
            assert busy.utilization_pct >= 80 and idle.utilization_pct < 10
            assert busy.memory_used_mib >= 3000 > idle.memory_used_mib
            proc = n0.gpus[0].processes[0]
            assert proc.used_mib == 3000 and proc.command and "sleep" in proc.command and proc.user
            assert monitor.state.health().gpus_busy == 2
        # Who uses what: both processes belong to the nodes' SSH user, 3000 MiB each, on two nodes.
        done = await asyncio.to_thread(run_ugro, "status", "--by-user", "--json", "--config", str(config))
        [me] = json.loads(done.stdout)["users"]
        assert (me["user"], me["gpus"], me["gpu_memory_mib"], me["processes"]) == (proc.user, 2, 6000, 2)
        assert me["nodes"] == ["node0", "node1"] and me["gpu_list"] == ["node0:0", "node1:1"]
        table = await asyncio.to_thread(run_ugro, "status", "--by-user", "--config", str(config))
        assert table.stdout.splitlines()[0].split() == ["USER", "GPUS", "GPU", "MEMORY", "PROCESSES", "UGRO", "JOBS",
                                                         "NODES"]
        assert table.stdout.splitlines()[1].split()[:4] == [proc.user, "2", "5.9", "GB"]
    finally:
        for t, pid in zip(transports, pids, strict=True):
            await t.signal_group(pid)
            await t.close()


async def test_driver_library_mismatch_is_a_node_error(lab: LoopbackCluster) -> None:
    text = lab.cluster_toml(sim=[(["RTX 4070"], "mismatch"), (["RTX 4070"], "nvml"), (["RTX 4070"], "nvml")],
                            poll_interval=0.5)
    async with Monitor(cluster_from(text)) as monitor:
        node = monitor.state.nodes["node0"]
        await until(lambda: node.state is NodeState.ONLINE, 15, "node0 online")
        assert node.gpus == () and "mismatch" in (node.error or "")


async def test_node_loss_goes_offline_then_back_online(solo_lab: LoopbackCluster) -> None:
    interval = 0.5
    cluster = cluster_from(solo_lab.cluster_toml(sim=[(["RTX 4070"], "nvml")], poll_interval=interval))
    changes: list[tuple[float, NodeState]] = []
    async with Monitor(cluster, on_change=lambda s: changes.append((time.monotonic(), s.state))) as monitor:
        node = monitor.state.nodes["node0"]
        await until(lambda: node.state is NodeState.ONLINE, 15, "online")
        killed = time.monotonic()
        solo_lab.kill_node(0)
        await until(lambda: node.state is NodeState.OFFLINE, 3 * interval, "offline within 3 intervals")
        assert node.next_retry_at is not None and node.error
        offline_at = next(t for t, s in changes if t >= killed and s is NodeState.OFFLINE)
        assert offline_at - killed <= 3 * interval
        solo_lab.restart_node(0)
        await until(lambda: node.state is NodeState.ONLINE, 20, "online again after restart")
        assert node.gpus and node.error is None


async def test_an_agent_that_cannot_run_is_said_not_retried_silently(solo_lab: LoopbackCluster) -> None:
    """The connection works but the agent never starts (a `python` the node lacks): the node says why, in its
    error, instead of "connecting" for ever, and keeps retrying with backoff."""
    text = solo_lab.cluster_toml(sim=[(["RTX 4070"], "nvml")], poll_interval=0.3)
    cluster = cluster_from(text.replace(f'python = "{sys.executable}"', 'python = "/nonexistent/python3"'))
    async with Monitor(cluster) as monitor:
        node = monitor.state.nodes["node0"]
        await until(lambda: "the telemetry agent does not run" in (node.error or ""), 30, "the agent's failure said")
        assert node.state is not NodeState.ONLINE and not node.gpus


async def test_changed_host_key_stops_retrying(solo_lab: LoopbackCluster) -> None:
    cluster = cluster_from(solo_lab.cluster_toml(sim=[(["RTX 4070"], "nvml")], poll_interval=0.5))
    solo_lab.change_host_key(0)
    async with Monitor(cluster) as monitor:
        node = monitor.state.nodes["node0"]
        await until(lambda: node.state is NodeState.HOST_KEY_MISMATCH, 10, "host-key-mismatch")
        await asyncio.sleep(1.0)
        assert node.state is NodeState.HOST_KEY_MISMATCH and node.next_retry_at is None
        assert solo_lab.nodes[0].host_key.get_fingerprint("sha256") in (node.error or "")


async def test_no_agent_left_after_the_monitor_stops(lab_config: tuple[Cluster, Path]) -> None:
    cluster, _ = lab_config
    async with Monitor(cluster) as monitor:
        await until(lambda: all(n.state is NodeState.ONLINE for n in monitor.state.nodes.values()), 15, "online")
        assert await count_agents(cluster) >= 3
    await until_async(lambda: count_agents(cluster), 0, 5)


def agent_pids(cluster: Cluster) -> list[int]:
    """This lab's agents: every node is this machine, and an agent's SSH_CONNECTION names the node's sshd it came
    through (other xdist workers' labs listen on addresses of their own)."""
    sshds = {f" {node.host} {node.port}".encode() for node in cluster.nodes}
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if AGENT_NAME.encode() not in (entry / "cmdline").read_bytes():
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # not a process, or one that ended meanwhile
            continue
        if any(e.startswith(b"SSH_CONNECTION=") and e.endswith(s) for e in env for s in sshds):
            pids.append(int(entry.name))
    return pids


async def count_agents(cluster: Cluster) -> int:
    return len(await asyncio.to_thread(agent_pids, cluster))


async def until_async(probe, want: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (got := await probe()) != want:
        assert time.monotonic() < deadline, f"still {got} agents running"
        await asyncio.sleep(0.1)


@pytest.mark.usefixtures("autostart")  # `ugro status` reads the daemon it starts
def test_status_json_over_ssh(lab_config: tuple[Cluster, Path]) -> None:
    _, config = lab_config
    done = run_ugro("status", "--json", "--config", str(config))
    assert done.returncode == 1  # node2 has no driver: not every node is healthy
    out = json.loads(done.stdout)
    assert out["health"]["nodes_total"] == 3 and out["health"]["gpus_total"] == 3
    by_name = {n["name"]: n for n in out["nodes"]}
    assert by_name["node0"]["gpus"][0]["name"] == "NVIDIA GeForce RTX 5070 Ti"
    assert by_name["node2"]["error"].startswith("no GPU driver")
    table = run_ugro("status", "--config", str(config))
    assert "RTX 5070 Ti" in table.stdout and "2/3 nodes healthy" in table.stdout
    # The host table under the GPUs: every node that answered, the one without a GPU driver too.
    host_rows = table.stdout.split("LOAD 1/5/15", 1)[1].splitlines()[1:]
    assert [r.split()[0] for r in host_rows] == ["node0", "node1", "node2"]
    assert all(by_name[n]["host"]["mem_total_mib"] > 0 for n in by_name)


@pytest.mark.usefixtures("autostart")  # `ugro status` reads the daemon it starts
def test_status_watch_refreshes(lab_config: tuple[Cluster, Path]) -> None:
    _, config = lab_config
    done = run_ugro("status", "--watch", "--count", "3", "--json", "--config", str(config))
    frames = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and len(frames) == 3
    assert {n["state"] for n in frames[-1]["nodes"]} == {"online"}


async def test_silent_agent_goes_stale_then_recovers(solo_lab: LoopbackCluster) -> None:
    """The connection stays up but no sample comes (a hung node): stale after 3 intervals, online when it resumes."""
    interval = 0.4
    cluster = cluster_from(solo_lab.cluster_toml(sim=[(["RTX 4070"], "nvml")], poll_interval=interval))
    async with Monitor(cluster) as monitor:
        node = monitor.state.nodes["node0"]
        await until(lambda: node.state is NodeState.ONLINE, 15, "online")
        frozen = agent_pids(cluster)  # this lab's agent alone (the node is this machine)
        assert frozen
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            await until(lambda: node.state is NodeState.STALE, 3 * interval + 1.0, "stale")
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        await until(lambda: node.state is NodeState.ONLINE, 5, "online again")


async def test_retry_after_trusting_a_changed_key(solo_lab: LoopbackCluster) -> None:
    """No retry by itself after a host key change; once the user fixed known_hosts, retry brings it online."""
    cluster = cluster_from(solo_lab.cluster_toml(sim=[(["RTX 4070"], "nvml")], poll_interval=0.5))
    solo_lab.change_host_key(0)
    async with Monitor(cluster) as monitor:
        node = monitor.state.nodes["node0"]
        await until(lambda: node.state is NodeState.HOST_KEY_MISMATCH, 10, "host-key-mismatch")
        node_info = solo_lab.nodes[0]
        public = node_info.host_key.export_public_key().decode().split()
        solo_lab.known_hosts_path.write_text(f"[{node_info.host}]:{node_info.port} {public[0]} {public[1]}\n")
        monitor.retry_now("node0")
        await until(lambda: node.state is NodeState.ONLINE, 15, "online after the fix")


async def test_trusting_an_unknown_key_from_the_app(solo_lab: LoopbackCluster, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The app shows the fingerprint (as the daemon's telemetry met it), asks, writes known_hosts only on yes, and
    the daemon's connection comes online."""
    from ugro_tui.config import load_cluster

    from ..conftest import daemon_on

    solo_lab.known_hosts_path.write_text("")
    path = tmp_path / "cluster.toml"
    path.write_text(solo_lab.cluster_toml(sim=[(["RTX 4070"], "nvml")], poll_interval=0.5))
    with daemon_on(path, monkeypatch):
        await trust_from_the_app(solo_lab, load_cluster(path))


async def trust_from_the_app(solo_lab: LoopbackCluster, cluster: Cluster) -> None:
    from ugro_tui.ui.app import make_app
    from ugro_tui.ui.screens.jobs import ConfirmScreen

    app = make_app(cluster)
    async with app.run_test(size=(100, 30)) as pilot:
        node = app.monitor_state.nodes["node0"]
        await until(lambda: node.state is NodeState.UNKNOWN_HOST_KEY, 15, "unknown-host-key")
        fingerprint = solo_lab.nodes[0].host_key.get_fingerprint("sha256")
        await pilot.press("a")
        assert isinstance(app.screen, ConfirmScreen) and fingerprint in app.screen.question
        await pilot.press("n")
        assert solo_lab.known_hosts_path.read_text() == ""
        await pilot.press("a", "y")
        deadline = time.monotonic() + 20
        while node.state is not NodeState.ONLINE:
            assert time.monotonic() < deadline, "never came online"
            await pilot.pause(0.2)
        saved = solo_lab.known_hosts_path.read_text()
        assert solo_lab.nodes[0].host_key.export_public_key().decode().split()[1] in saved  # exactly that key
