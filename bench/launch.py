"""Launch fan-out: from the start of a launch to every node's rank running, 16 nodes against 1, side by side.

Real sshd nodes on 127.0.2.x; connections are warm, as in a running dispatcher. Goal: 16 nodes <= 1.3x one node.
Usage: python bench/launch.py [--rounds N]
"""

from __future__ import annotations

import os
import sys

# bench/queue.py is named like the stdlib module; keep this folder off the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
import tomllib
from pathlib import Path

import asyncssh

from ugro_tui.config import Cluster, parse_cluster
from ugro_tui.core.jobs.launcher import SshLauncher
from ugro_tui.core.jobs.model import JobSpec, JobState, transition
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.pool import Pool
from ugro_tui.sim.loopback import LoopbackCluster


async def launch_once(launcher: SshLauncher, cluster: Cluster, store: JobStore, n: int) -> float:
    nodes = [node.name for node in cluster.nodes[:n]]
    [job] = store.submit([JobSpec("fanout", ("sleep", "30"), kind="command", nnodes=n, gpus_per_node=0)])
    job = transition(job, JobState.STARTING, placement=tuple((name, ()) for name in nodes))
    started = time.perf_counter()
    running = await launcher.start(job)
    pid_files = [Path(run.run_dir) / "pid" for _, run in running.runs]
    while not all(p.exists() and p.read_text().strip() for p in pid_files):
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    await launcher._stop(running, __import__("signal").SIGKILL)
    return elapsed


async def bare_once(pool: Pool, cluster: Cluster, n: int) -> float:
    """The floor: `true` on n nodes at once over the same warm connections, with nothing of ugro around it."""
    started = time.perf_counter()
    await asyncio.gather(*(pool.get(node.name).run("true") for node in cluster.nodes[:n]))
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncssh.set_log_level("WARNING")
    with tempfile.TemporaryDirectory(prefix="ugro-bench-launch-") as tmp:
        os.environ["XDG_STATE_HOME"] = str(Path(tmp) / "state")
        lab = LoopbackCluster(Path(tmp) / "lab", hosts=[f"127.0.2.{i}" for i in range(1, 17)]).start()
        try:
            cluster = parse_cluster(tomllib.loads(lab.cluster_toml()), "bench")
            cluster = dataclasses.replace(cluster, nodes=tuple(dataclasses.replace(n, labels=())
                                                               for n in cluster.nodes))
            store = JobStore(Path(tmp) / "jobs")
            pool = Pool(cluster)
            launcher = SshLauncher(cluster, store, pool)
            await launch_once(launcher, cluster, store, 16)  # warm every connection
            one, sixteen, bare1, bare16 = [], [], [], []
            for _ in range(args.rounds):  # interleaved, so machine noise hits all alike
                one.append(await launch_once(launcher, cluster, store, 1))
                sixteen.append(await launch_once(launcher, cluster, store, 16))
                bare1.append(await bare_once(pool, cluster, 1))
                bare16.append(await bare_once(pool, cluster, 16))
            await pool.close()
        finally:
            lab.stop()
    a, b = statistics.median(one), statistics.median(sixteen)
    print(f"launch fan-out (median of {args.rounds}, warm SSH connections, real sshd)")
    print(f"   1 node : {a * 1000:7.1f} ms to every rank running")
    print(f"  16 nodes: {b * 1000:7.1f} ms")
    print(f"  ratio   : {b / a:7.2f}x   (goal <= 1.3x)")
    f1, f16 = statistics.median(bare1), statistics.median(bare16)
    print(f"floor: bare `true` over the same connections, 1 node {f1 * 1000:.1f} ms, 16 nodes {f16 * 1000:.1f} ms")
    print(f"  floor ratio: {f16 / f1:7.2f}x;  ugro's ratio / floor's: {(b / a) / (f16 / f1):.2f}  (goal <= 1.25)")


if __name__ == "__main__":
    asyncio.run(main())
