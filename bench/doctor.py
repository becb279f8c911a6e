"""The doctor's fan-out, side by side in one run: every check on 8 nodes against 1 node, and against a plain
connect check (`ugro nodes --check`) of the same 8 nodes.

Real sshd nodes on 127.0.3.x. Every "node" here shares this machine's cores, and each probe imports torch
(about a CPU-second), so 8 nodes cannot take the time of one; checked one after another they would take 8x.
The floor is measured alongside: 8 bare `python -c "import torch"` at once against one.
Goal: the doctor's 8-to-1 ratio <= 1.25x that floor's (ugro adds little beyond what the nodes must do).
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
from ugro_tui.core.pool import Pool
from ugro_tui.sim.loopback import LoopbackCluster


def cluster_of(lab: LoopbackCluster, count: int) -> Cluster:
    text = lab.cluster_toml(sim=[(["RTX 4070"], "nvml")] * len(lab.nodes))
    data = tomllib.loads(text)
    data["nodes"] = data["nodes"][:count]
    return parse_cluster(data, "bench")


async def timed(make) -> float:
    started = time.perf_counter()
    await make()
    return time.perf_counter() - started


async def doctor(cluster) -> None:
    """The doctor over connections opened for it (as a cold daemon has them)."""
    async with Pool(cluster) as pool:
        await run_doctor(cluster, pool=pool)


async def imports(count: int) -> None:
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", "import torch") for _ in range(count)]
    await asyncio.gather(*(p.wait() for p in procs))


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as root:
        lab = LoopbackCluster(Path(root), hosts=[f"127.0.3.{i}" for i in range(2, 10)]).start()
        try:
            one, eight = cluster_of(lab, 1), cluster_of(lab, 8)
            await doctor(eight)  # warm: the probe copied, the page cache hot
            times: dict[str, list[float]] = {"doctor, 1 node": [], "doctor, 8 nodes": [], "connect check, 8": [],
                                             "import torch, 1": [], "import torch, 8 at once": []}
            for _ in range(rounds):  # interleaved, so noise hits all alike
                times["doctor, 1 node"].append(await timed(lambda: doctor(one)))
                times["doctor, 8 nodes"].append(await timed(lambda: doctor(eight)))
                times["connect check, 8"].append(await timed(lambda: check_cluster(eight)))
                times["import torch, 1"].append(await timed(lambda: imports(1)))
                times["import torch, 8 at once"].append(await timed(lambda: imports(8)))
        finally:
            lab.stop()
    base = statistics.median(times["doctor, 1 node"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<24} {median * 1000:8.0f} ms   {median / base:5.2f}x doctor on 1 node")
    ratio = statistics.median(times["doctor, 8 nodes"]) / base
    floor = statistics.median(times["import torch, 8 at once"]) / statistics.median(times["import torch, 1"])
    print(f"on {os.cpu_count()} cores: doctor 8/1 = {ratio:.2f}x, bare torch imports 8/1 = {floor:.2f}x "
          f"(one after another: 8x); goal <= {1.25 * floor:.2f}x: {'met' if ratio <= 1.25 * floor else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))
