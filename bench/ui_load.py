"""UI load benchmark: the app's CPU share with 64 nodes x 8 GPUs updating at 1 Hz, run headless.

Samples are fed in-process through the same path the monitor uses (NodeStatus.apply_sample, then the app's
on_change hook), so this measures the UI alone. The feeder's own cost is measured side by side without the app
and subtracted. Goal: <= 10% of one core. Usage: python bench/ui_load.py [--seconds S] [--nodes N] [--gpus G]
"""

from __future__ import annotations

import os
import sys

# bench/queue.py is named like the stdlib module; keep this folder off the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import asyncio
import resource
import time

from ugro_tui.config import Cluster, Node
from ugro_tui.core.telemetry.model import ClusterState
from ugro_tui.ui.app import make_app


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sample(node: int, gpus: int, tick: int, host: bool = False) -> dict:
    out = {"t": time.time(), "source": "nvml", "gpus": [
        {"index": i, "uuid": f"GPU-{node}-{i}", "name": "NVIDIA GeForce RTX 4090",
         "utilization_pct": (tick * 7 + i * 13 + node) % 100, "memory_used_mib": 1000 + (tick * 97 + i) % 20000,
         "memory_total_mib": 24564, "temperature_c": 40 + (tick + i) % 45, "power_w": 100.0 + i,
         "power_limit_w": 450.0, "fan_pct": 40, "processes": []} for i in range(gpus)]}
    if host:  # what an agent with host metrics adds to each line
        out["host"] = {"cpu_pct": (tick * 11 + node) % 100, "cores": 32, "load1": 4.2, "load5": 3.9, "load15": 3.1,
                       "mem_used_mib": 40000 + tick % 9000, "mem_total_mib": 128000, "swap_used_mib": 0,
                       "disk_free_gib": 812.5, "net_rx_bps": 1e6 * (tick % 50), "net_tx_bps": 2e5, "uptime_s": 86400,
                       "net_loopback_only": False, "net_interfaces": {"eth0": [1e6 * (tick % 50), 2e5]}}
    return out


async def feed(state: ClusterState, gpus: int, seconds: float, notify, host: bool = False) -> None:
    tick = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for n, status in enumerate(state.nodes.values()):
            status.apply_sample(sample(n, gpus, tick, host), time.time())
            notify(status)
        tick += 1
        await asyncio.sleep(1.0)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--nodes", type=int, default=64)
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args()
    cluster = Cluster(name="bench", nodes=tuple(Node(name=f"n{i:02d}", host=f"127.0.2.{i + 1}")
                                                for i in range(args.nodes)))

    def fresh() -> ClusterState:
        return ClusterState([(n.name, n.address) for n in cluster.nodes])

    async def measure(host: bool) -> tuple[float, float]:
        """(feeder alone, app + feeder) as shares of one core."""
        c0, w0 = cpu(), time.monotonic()
        await feed(fresh(), args.gpus, args.seconds, lambda s: None, host)
        feeder = (cpu() - c0) / (time.monotonic() - w0)
        state = fresh()
        app = make_app(cluster, monitor=False, state=state)
        async with app.run_test(headless=True, size=(250, 70)) as pilot:
            await feed(state, args.gpus, 2, app._node_changed, host)  # warm up: first layout of every card
            await pilot.pause()
            c0, w0 = cpu(), time.monotonic()
            await feed(state, args.gpus, args.seconds, app._node_changed, host)
            total = (cpu() - c0) / (time.monotonic() - w0)
        return feeder, total

    print(f"ui load, {args.nodes} nodes x {args.gpus} GPUs at 1 Hz, headless 250x70, {args.seconds:g}s each")
    for host in (False, True):
        feeder, total = await measure(host)
        label = "with host lines   " if host else "GPU lines only    "
        print(f"  {label} feeder alone {feeder * 100:5.1f} %, app + feeder {total * 100:5.1f} %, "
              f"app {(total - feeder) * 100:5.1f} % of one core   (goal <= 10%)")


if __name__ == "__main__":
    asyncio.run(main())
