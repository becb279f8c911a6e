"""The doctor's fan-out, side by side in one run: every check on 8 nodes against 1 node, and against a plain
connect check (`ugro nodes --check`) of the same 8 nodes.

Real sshd nodes on 127.0.3.x. Every "node" here shares this machine's cores, and each probe imports torch
(about a CPU-second), so 8 nodes cannot take the time of one; checked one after another they would take 8x.
Goal: 8 nodes <= max(1.5, 8 / cores)x one node.
Usage: python bench/doctor.py [--rounds N]
"""

from __future__ import annotations

import os
import sys

# bench/queue.py is named like the stdlib module; keep this folder off the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import asyncio
import statistics
import tempfile
import time
import tomllib
from pathlib import Path

from ugro_tui.config import Cluster, parse_cluster
from ugro_tui.core.check import check_cluster
from ugro_tui.core.doctor.run import run_doctor
from ugro_tui.core.sim.loopback import LoopbackCluster


def cluster_of(lab: LoopbackCluster, count: int) -> Cluster:
    text = lab.cluster_toml(sim=[(["RTX 4070"], "nvml")] * len(lab.nodes))
    data = tomllib.loads(text)
    data["nodes"] = data["nodes"][:count]
    return parse_cluster(data, "bench")


async def timed(make) -> float:
    started = time.perf_counter()
    await make()
    return time.perf_counter() - started


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as root:
        lab = LoopbackCluster(Path(root), hosts=[f"127.0.3.{i}" for i in range(2, 10)]).start()
        try:
            one, eight = cluster_of(lab, 1), cluster_of(lab, 8)
            await run_doctor(eight)  # warm: the probe copied, the page cache hot
            times: dict[str, list[float]] = {"doctor, 1 node": [], "doctor, 8 nodes": [], "connect check, 8": []}
            for _ in range(rounds):  # interleaved, so noise hits all three alike
                times["doctor, 1 node"].append(await timed(lambda: run_doctor(one)))
                times["doctor, 8 nodes"].append(await timed(lambda: run_doctor(eight)))
                times["connect check, 8"].append(await timed(lambda: check_cluster(eight)))
        finally:
            lab.stop()
    base = statistics.median(times["doctor, 1 node"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<20} {median * 1000:8.0f} ms   {median / base:5.2f}x doctor on 1 node")
    ratio = statistics.median(times["doctor, 8 nodes"]) / base
    goal = max(1.5, 8 / (os.cpu_count() or 1))
    print(f"goal on {os.cpu_count()} cores: 8 nodes <= {goal:.2f}x one node: {'met' if ratio <= goal else 'NOT met'} "
          f"({ratio:.2f}x; one after another: 8x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))
