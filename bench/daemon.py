"""The daemon against today's paths, side by side in one run on the same lab:

- submit to `running` for a job that fits on an idle node: `ugro submit` (it kicks the daemon's round) against a
  job stored without the kick (it waits for the next poll round, as with a scheduler before the daemon); the floor
  is the launch's own round trip, one `true` on a warm connection;
- first frame with live gauges: the app on a warm daemon (its state comes before the first frame) against a cold
  start (no daemon: `ugro` starts one, which connects and samples);
- the daemon's CPU with 0, 1 and 5 stream clients attached, at 3 nodes and at `--scale` nodes x 8 GPUs (64 by
  default: 64 sshd and 64 agents on 127.0.7.x; the per-client cost is the difference);
- `ugro sync` warm (nothing changed) through the daemon's connection (no verb opens one of its own any more)
  against `rsync -a` over OpenSSH (one per node, all at once, as a user scripts it) when rsync is installed.

Real sshd nodes on 127.0.5.2-4. Usage: python bench/daemon.py [--runs N] [--scale NODES]
"""

from __future__ import annotations

import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ugro_tui.sim.loopback import LoopbackCluster

TICKS = os.sysconf("SC_CLK_TCK")


def ugro(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ugro_tui", args[0], "--config", str(config), *args[1:]],
                          capture_output=True, text=True, timeout=timeout)


def wait_state(job_id: int, state: str, timeout: float = 60) -> float:
    from ugro_tui.core.jobs.store import JobStore

    store = JobStore()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if str(store.get(job_id).state) == state:
            return time.perf_counter()
        time.sleep(0.005)
    raise SystemExit(f"job {job_id} never reached {state}")


def submit_to_running(config: Path, runs: int) -> tuple[list[float], list[float], list[float]]:
    """Seconds from submit to `running` (a `sleep 1` job): by `ugro submit` (its own start included), stored and
    kicked (the daemon's reaction alone), stored without the kick (the next round)."""
    from ugro_tui.core.daemon.client import kick
    from ugro_tui.core.jobs.model import JobSpec
    from ugro_tui.core.jobs.store import JobStore

    cli, kicked, polled = [], [], []
    for _ in range(runs):
        t = time.perf_counter()
        out = ugro(config, "submit", "--kind", "command", "--", "sleep", "1")
        cli.append(wait_state(int(out.stdout), "running") - t)
        for into, nudge in ((kicked, True), (polled, False)):
            wait_idle()
            t = time.perf_counter()
            [job] = JobStore().submit([JobSpec("b", ("sleep", "1"), kind="command")])
            if nudge:
                kick()
            into.append(wait_state(job.id, "running") - t)
        wait_idle()
    return cli, kicked, polled


def wait_idle() -> None:
    from ugro_tui.core.jobs.store import JobStore

    while JobStore().active():
        time.sleep(0.02)


async def round_trip(config: Path) -> float:
    from ugro_tui.config import load_cluster
    from ugro_tui.core.pool import Pool

    cluster = load_cluster(config)
    async with Pool(cluster) as pool:
        node = pool.get(cluster.nodes[0].name)
        await node.run("true")
        times = []
        for _ in range(20):
            t = time.perf_counter()
            await node.run("true")
            times.append(time.perf_counter() - t)
    return statistics.median(times)


async def first_live_frame(config: Path, warm: bool) -> float:
    from ugro_tui.config import load_cluster
    from ugro_tui.core.telemetry.model import NodeState
    from ugro_tui.ui.app import make_app

    os.environ["UGRO_AUTOSTART"] = "1"  # cold: no daemon answers, so `ugro` starts one and waits for its samples
    t = time.perf_counter()
    cluster = load_cluster(config)
    app = make_app(cluster)
    async with app.run_test(size=(120, 40)) as pilot:
        while not all(s.state is NodeState.ONLINE and s.gpus for s in app.monitor_state.nodes.values()):
            await pilot.pause(0.01)
        took = time.perf_counter() - t
    if not warm:
        ugro(config, "daemon", "stop")
    return took


def timed_syncs(config: Path, folder: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        done = ugro(config, "sync", str(folder), "--nodes", "node0,node1,node2")
        assert done.returncode == 0, done.stderr
        times.append(time.perf_counter() - t)
    return times


def rsync_warm(lab: LoopbackCluster, folder: Path, runs: int) -> list[float] | None:
    """`rsync -a` of the folder to every node at once over OpenSSH (a new ssh per node), as warm as ours."""
    import shutil

    if shutil.which("rsync") is None:
        return None
    times = []
    for _ in range(runs + 1):  # the first is cold: it fills the targets
        t = time.perf_counter()
        procs = []
        for node in lab.nodes:
            ssh = (f"ssh -p {node.port} -i {lab.client_key_path} -o UserKnownHostsFile={lab.known_hosts_path} "
                   "-o StrictHostKeyChecking=yes -o BatchMode=yes")
            target = f"{node.host}:{node.folder / 'rsync-target'}/"
            procs.append(subprocess.Popen(["rsync", "-a", "-e", ssh, f"{folder}/", target]))
        assert all(p.wait(120) == 0 for p in procs)
        times.append(time.perf_counter() - t)
    return times[1:]


def cpu_at_scale(root: Path, nodes: int, seconds: float) -> dict[int, float]:
    """The daemon's CPU at `nodes` nodes x 8 GPUs (1 s samples), with 0, 1 and 5 clients; its own state dir."""
    hosts = [f"127.0.7.{i}" for i in range(2, 2 + nodes)]
    lab = LoopbackCluster(root / "scale-lab", hosts=hosts).start()
    saved = {k: os.environ.get(k) for k in ("XDG_STATE_HOME", "XDG_RUNTIME_DIR")}
    os.environ["XDG_STATE_HOME"] = str(root / "scale-state")
    os.environ["XDG_RUNTIME_DIR"] = str(root / "scale-rt")
    (root / "scale-rt").mkdir(mode=0o700)
    config = root / "scale.toml"
    try:
        config.write_text(lab.cluster_toml(sim=[(["RTX 4070"] * 8, "nvml")] * nodes, poll_interval=1.0))
        assert ugro(config, "daemon", "start").returncode == 0
        from ugro_tui.core.daemon.client import Client

        client = Client()
        deadline = time.monotonic() + 120
        while sum(client.status()["connections"].values()) < nodes:  # every node connected and sampling
            assert time.monotonic() < deadline, client.status()["connections"]
            time.sleep(1.0)
        time.sleep(5.0)
        pid = client.status()["pid"]
        return {n: asyncio.run(daemon_cpu(pid, n, seconds)) for n in (0, 1, 5)}
    finally:
        ugro(config, "daemon", "stop")
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        lab.stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def daemon_cpu(pid: int, clients: int, seconds: float) -> float:
    from ugro_tui.core.daemon.client import subscribe

    async def reader() -> None:
        async for _ in subscribe():
            pass

    tasks = [asyncio.create_task(reader()) for _ in range(clients)]
    await asyncio.sleep(1.0)
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    used = cpu_seconds(pid) - before
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return used / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--cpu-seconds", type=float, default=10.0)
    parser.add_argument("--scale", type=int, default=64, help="nodes for the CPU figure at scale (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ugro-bench-daemon-", dir="/tmp") as tmp:
        root = Path(tmp)
        os.environ["XDG_STATE_HOME"] = str(root / "state")
        os.environ["XDG_CONFIG_HOME"] = str(root / "config")
        os.environ["XDG_RUNTIME_DIR"] = str(root)
        lab = LoopbackCluster(root / "lab", hosts=["127.0.5.2", "127.0.5.3", "127.0.5.4"]).start()
        try:
            config = root / "cluster.toml"
            config.write_text(lab.cluster_toml(sim=[(["RTX 4070"], "nvml")] * 3, poll_interval=1.0))
            cold = [asyncio.run(first_live_frame(config, warm=False)) for _ in range(3)]
            code = root / "code"
            for i in range(500):
                (code / f"pkg{i % 20}").mkdir(parents=True, exist_ok=True)
                (code / f"pkg{i % 20}" / f"m{i}.py").write_bytes(os.urandom(20_000))
            os.environ["UGRO_AUTOSTART"] = "0"  # the daemon started here, measured below
            assert ugro(config, "daemon", "start").returncode == 0
            timed_syncs(config, code, 1)  # cold: every node gets the tree once
            from ugro_tui.core.daemon.client import Client

            pid = Client().status()["pid"]
            time.sleep(3)  # the daemon's first samples
            warm = [asyncio.run(first_live_frame(config, warm=True)) for _ in range(3)]
            print(f"first frame with live gauges: warm daemon median {statistics.median(warm) * 1e3:.0f} ms "
                  f"(goal <= 300 ms); cold, telemetry of its own, median {statistics.median(cold) * 1e3:.0f} ms; "
                  f"ratio {statistics.median(cold) / statistics.median(warm):.1f}x")
            floor = asyncio.run(round_trip(config))
            cli, kicked, polled = submit_to_running(config, args.runs)
            print(f"submit to running, a job that fits on an idle node ({args.runs} runs, poll interval 1.0 s): "
                  f"stored and kicked median {statistics.median(kicked) * 1e3:.0f} ms (goal <= 500 ms + the launch); "
                  f"stored without the kick (today: the next round) median {statistics.median(polled) * 1e3:.0f} ms;"
                  f" `ugro submit` end to end median {statistics.median(cli) * 1e3:.0f} ms (its Python start "
                  f"included); floor, one launch round trip {floor * 1e3:.1f} ms")
            through = timed_syncs(config, code, 5)
            rsync = rsync_warm(lab, code, 5)
            print(f"ugro sync warm, 500 files / 10 MB to 3 nodes, nothing changed: through the daemon median "
                  f"{statistics.median(through) * 1e3:.0f} ms (no SSH handshake)"
                  + ("; rsync -a over OpenSSH: not installed" if rsync is None else
                     f"; rsync -a over OpenSSH median {statistics.median(rsync) * 1e3:.0f} ms, ratio "
                     f"{statistics.median(through) / statistics.median(rsync):.2f}x (goal <= 0.5x)"))
            loads = {n: asyncio.run(daemon_cpu(pid, n, args.cpu_seconds)) for n in (0, 1, 5)}
            per_client = (loads[5] - loads[0]) / 5
            print("daemon CPU, 3 nodes at 1 s: " + ", ".join(f"{n} clients {v * 100:.2f}% of a core"
                                                            for n, v in loads.items())
                  + f"; per client {per_client * 100:.2f}% (goal <= 1%)")
            if args.scale:
                big = cpu_at_scale(root, args.scale, args.cpu_seconds)
                print(f"daemon CPU, {args.scale} nodes x 8 GPUs at 1 s: " + ", ".join(
                    f"{n} clients {v * 100:.2f}% of a core" for n, v in big.items())
                      + f"; per client {(big[5] - big[0]) / 5 * 100:.2f}% (goal <= 1%)")
        finally:
            ugro(config, "daemon", "stop")
            lab.stop()


if __name__ == "__main__":
    main()
