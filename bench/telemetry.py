"""Telemetry benchmark: ratios measured side by side in one run, against real sshd servers on loopback.

The SSH servers (one OpenSSH sshd per 127.0.0.x) and the node agents run in other processes than the monitor.
Prints:
  1. sweep latency (tick -> every node's sample in) at 64 nodes x 8 GPUs against 1 node x 8 GPUs (goal <= 1.5x);
  2. ugro's steady-state sweep against the original design (a new SSH connection plus one nvidia-smi call per
     node, one node after another) at 16 nodes (goal: ugro >= 20x faster);
  3. the monitor's CPU share at 64 x 8 and 1 Hz (goal <= 10% of one core);
  4. the floor: the same 64 agents over the same kind of connection, read by a trivial reader (no ugro), so the
     rig's own cost is stated beside ugro's (goal: ugro's 64 x 8 sweep <= 1.25x the floor's).

Usage: python bench/telemetry.py [--ticks N]. Only 127.0.0.0/8 is used.
"""

from __future__ import annotations

import os
import sys

# bench/queue.py is named like the stdlib module; keep this folder off the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import time
import tomllib
from collections import defaultdict
from pathlib import Path

import asyncssh

from ugro_tui.config import Cluster, parse_cluster
from ugro_tui.core.telemetry.model import NodeState, NodeStatus
from ugro_tui.core.telemetry.monitor import Monitor, agent_command
from ugro_tui.core.transport import ssh_connect
from ugro_tui.sim.loopback import LoopbackCluster

GPUS = ["RTX 4090"] * 8
QUERY = ("nvidia-smi --query-gpu=index,uuid,name,utilization.gpu,memory.used,memory.total,temperature.gpu,"
         "power.draw,power.limit,fan.speed --format=csv,noheader,nounits")


def config_for(lab: LoopbackCluster, count: int, interval: float) -> Cluster:
    text = lab.cluster_toml(sim=[(GPUS, "nvml")] * len(lab.nodes), poll_interval=interval)
    cluster = parse_cluster(tomllib.loads(text), "bench")
    return Cluster(**{**cluster.__dict__, "nodes": cluster.nodes[:count]})


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure_monitor(cluster: Cluster, ticks: int) -> tuple[float, float, float]:
    """(median sweep latency s, p90 sweep latency s, CPU share of one core) over `ticks` steady ticks."""
    interval = cluster.poll_interval
    arrivals: dict[int, list[float]] = defaultdict(list)
    recording = False

    def on_change(status: NodeStatus) -> None:
        if recording and status.state is NodeState.ONLINE and status.sampled_at is not None:
            tick = int(status.sampled_at // interval)
            arrivals[tick].append(status.received_at - tick * interval)

    async with Monitor(cluster, on_change=on_change) as monitor:
        deadline = time.monotonic() + 60
        while not all(n.state is NodeState.ONLINE for n in monitor.state.nodes.values()):
            if time.monotonic() > deadline:
                raise SystemExit("bench: nodes did not come online")
            await asyncio.sleep(0.1)
        await asyncio.sleep(2 * interval)  # past the connect burst
        recording = True
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        await asyncio.sleep(ticks * interval)
        cpu = (cpu_seconds() - cpu0) / (time.monotonic() - wall0)
        recording = False
    n = len(cluster.nodes)
    sweeps = [max(v) for v in arrivals.values() if len(v) == n]
    if len(sweeps) < ticks // 2:
        raise SystemExit(f"bench: only {len(sweeps)} complete sweeps of {n} nodes in {ticks} ticks")
    sweeps.sort()
    return statistics.median(sweeps), sweeps[int(0.9 * (len(sweeps) - 1))], cpu


async def floor_sweep(cluster: Cluster, ticks: int) -> tuple[float, float]:
    """The same agents on the same nodes, each over one asyncssh connection, read by a loop that only notes when
    each tick's line arrives: (median sweep latency s, CPU share of one core)."""
    interval = cluster.poll_interval
    arrivals: dict[int, list[float]] = defaultdict(list)
    recording = False
    conns, procs = [], []

    async def read(proc) -> None:
        async for line in proc.stdout:
            if recording:
                tick = int(json.loads(line)["t"] // interval)
                arrivals[tick].append(time.time() - tick * interval)

    for node in cluster.nodes:  # the agent file is on every node already: the monitor copied it there
        conn = await ssh_connect(node, cluster)
        conns.append(conn)
        procs.append(await conn.create_process("sh -c " + _quote(agent_command(node, interval))))
    readers = [asyncio.create_task(read(p)) for p in procs]
    await asyncio.sleep(3 * interval)
    recording = True
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    await asyncio.sleep(ticks * interval)
    cpu = (cpu_seconds() - cpu0) / (time.monotonic() - wall0)
    recording = False
    for task in readers:
        task.cancel()
    for conn in conns:
        conn.close()
    n = len(cluster.nodes)
    sweeps = sorted(max(v) for v in arrivals.values() if len(v) == n)
    if len(sweeps) < ticks // 2:
        raise SystemExit(f"bench: only {len(sweeps)} complete floor sweeps of {n} nodes in {ticks} ticks")
    return statistics.median(sweeps), cpu


async def original_sweep(cluster: Cluster, rounds: int) -> float:
    """The original design: per poll, per node in turn, a new SSH connection and one nvidia-smi call."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for node in cluster.nodes:
            conn = await ssh_connect(node, cluster)
            done = await conn.run("sh -c " + _quote(node.prelude + QUERY), check=True)
            assert done.stdout.count("\n") == len(GPUS)
            conn.close()
            await conn.wait_closed()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=10, help="steady ticks to measure at each size")
    args = parser.parse_args()
    asyncssh.set_log_level("WARNING")
    with tempfile.TemporaryDirectory(prefix="ugro-bench-") as tmp:
        hosts = [f"127.0.1.{i}" for i in range(1, 65)]
        print(f"starting {len(hosts)} sshd nodes on 127.0.1.1-64 ...", file=sys.stderr, flush=True)
        lab = LoopbackCluster(Path(tmp), hosts=hosts).start()
        try:
            one = await measure_monitor(config_for(lab, 1, 1.0), args.ticks)
            many = await measure_monitor(config_for(lab, 64, 1.0), args.ticks)
            floor = await floor_sweep(config_for(lab, 64, 1.0), args.ticks)
            sixteen = config_for(lab, 16, 1.0)
            ugro16 = await measure_monitor(sixteen, args.ticks)
            orig16 = await original_sweep(sixteen, 3)
        finally:
            lab.stop()
    print("telemetry benchmark (median of steady ticks; SSH servers and agents in other processes)")
    print(f"  sweep latency  1 node  x 8 GPUs : {one[0] * 1000:7.1f} ms   (p90 {one[1] * 1000:.1f} ms)")
    print(f"  sweep latency 64 nodes x 8 GPUs : {many[0] * 1000:7.1f} ms   (p90 {many[1] * 1000:.1f} ms)")
    print(f"  ratio 64x8 / 1x8                : {many[0] / one[0]:7.2f}x   (goal <= 1.5x)")
    print(f"  floor, 64 bare agents (no ugro) : {floor[0] * 1000:7.1f} ms   (reader CPU {floor[1] * 100:.1f}%)")
    print(f"  ugro 64x8 / floor               : {many[0] / floor[0]:7.2f}x   (goal <= 1.25x)")
    print(f"  16 nodes, ugro steady sweep     : {ugro16[0] * 1000:7.1f} ms")
    print(f"  16 nodes, original (connect+smi): {orig16 * 1000:7.1f} ms")
    print(f"  ugro speed-up over original     : {orig16 / ugro16[0]:7.1f}x   (goal >= 20x)")
    print(f"  monitor CPU at 64x8, 1 Hz       : {many[2] * 100:7.1f} % of one core   (goal <= 10%)")


if __name__ == "__main__":
    asyncio.run(main())
