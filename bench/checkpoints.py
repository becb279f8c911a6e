"""Failure recovery from checkpoints: steps done again per failure, over injected failures, beside the interval.

A 2-node torchrun job (tests/fixtures/jobs/ckpt_job.py: checkpoints every --save-every steps, per node) is killed
on node rank 1 at a random step, once; with max_retries = 1 ugro runs it again from the newest checkpoint complete on
both nodes. Steps redone = the failure's step + 1 - where attempt 2 starts; the floor is 0, the bound one interval.
Also: what resuming costs at start (listing both nodes' checkpoints), against a start without a checkpoint dir.
Real sshd nodes on 127.0.4.2-3. Usage: python bench/checkpoints.py [--failures N]
"""

from __future__ import annotations

import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import asyncio
import json
import random
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ugro_tui.sim.loopback import LoopbackCluster, free_port

SCRIPT = str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "jobs" / "ckpt_job.py")


def ugro(config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ugro_tui", args[0], "--config", str(config), *args[1:]],
                          capture_output=True, text=True, timeout=timeout)


async def resume_cost(config: Path, job_id: int) -> tuple[float, float]:
    from ugro_tui.config import load_cluster
    from ugro_tui.core.jobs.keeper import CheckpointKeeper
    from ugro_tui.core.jobs.store import JobStore
    from ugro_tui.core.pool import Pool

    cluster = load_cluster(config)
    job = JobStore().get(job_id)
    async with Pool(cluster) as pool:
        keeper = CheckpointKeeper(cluster, pool)
        await keeper.index(job)  # connect
        listing, floor = [], []
        for _ in range(20):
            t = time.perf_counter()
            await keeper.index(job)
            listing.append(time.perf_counter() - t)
            t = time.perf_counter()
            await asyncio.gather(*(pool.get(n.name).run("true") for n in cluster.nodes))
            floor.append(time.perf_counter() - t)
    return statistics.median(listing), statistics.median(floor)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--failures", type=int, default=10)
    parser.add_argument("--save-every", type=int, default=10)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="ugro-bench-ckpt-") as tmp:
        root = Path(tmp)
        os.environ["XDG_STATE_HOME"] = str(root / "state")
        os.environ["XDG_CONFIG_HOME"] = str(root / "config")
        lab = LoopbackCluster(root / "lab", hosts=["127.0.4.2", "127.0.4.3"]).start()
        try:
            port = free_port("127.0.4.2")
            config = root / "cluster.toml"
            config.write_text(lab.cluster_toml(sim=[(["RTX 4070"], "nvml")] * 2, poll_interval=0.5).replace(
                "rendezvous_ports = [29500, 29599]", f"rendezvous_ports = [{port}, {port}]"))
            redone, starts = [], []
            for i in range(args.failures):
                at = rng.randrange(12, 55)
                submitted = ugro(config, "submit", "--nnodes", "2", "--checkpoint-dir", f"ck/run{i}", "--max-retries",
                                 "1", "--", SCRIPT, "--steps", "60", "--save-every", str(args.save_every),
                                 "--sleep", "0.03", "--fail-once-at", str(at))
                job_id = submitted.stdout.strip()
                try:
                    ugro(config, "scheduler", "--until-idle", timeout=120)
                except subprocess.TimeoutExpired:
                    print(ugro(config, "queue").stdout)
                    raise
                doc = json.loads(ugro(config, "show", job_id, "--json").stdout)
                second = ugro(config, "logs", job_id, "--attempt", "2", "--rank", "0").stdout
                found = re.search(r"at step (\d+)", second)
                if doc["state"] != "succeeded" or found is None:
                    print(f"failure {i + 1}: job {job_id} {doc['state']}: {doc['reason']}")
                    continue
                redone.append(at + 1 - int(found.group(1)))
                starts.append(doc)
            if redone:
                print(f"{len(redone)} injected failures, a checkpoint every {args.save_every} steps: steps redone "
                      f"per failure mean {statistics.mean(redone):.1f}, max {max(redone)} "
                      f"(floor 0, bound {args.save_every}); each: {redone}")
            # What resuming adds to a retry's start: one listing per node, in parallel, over warm connections.
            listing, floor = asyncio.run(resume_cost(config, starts[0]["id"] if starts else 1))
            print(f"resume lookup at a retry's start (2 nodes, warm): median {listing * 1e3:.1f} ms; floor, `true` "
                  f"on both nodes over the same connections: {floor * 1e3:.1f} ms; ratio {listing / floor:.2f}x")
        finally:
            lab.stop()


if __name__ == "__main__":
    main()
