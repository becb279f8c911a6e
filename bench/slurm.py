"""The Slurm backend beside the SSH backend, in one run: submit-to-running, and the cost of following 8 ranks' logs.

A real Slurm 22.05 on this machine (two `slurmd -N` nodes, two fake GPUs each) reached through a login node over
loopback SSH (127.0.12.1), and two SSH-backend nodes (127.0.12.2-3, simulated GPUs), each driven by its own
dispatcher ticking every 0.1 s in this process. Rounds alternate between the backends, so machine noise hits both.
Needs root and Slurm (see README, Slurm). Usage: python bench/slurm.py [--rounds N] [--seconds S]
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

import asyncssh

from ugro_tui.config import Cluster, parse_cluster
from ugro_tui.core.backends.slurm.dispatcher import SlurmDispatcher
from ugro_tui.core.jobs.dispatcher import Dispatcher
from ugro_tui.core.jobs.launcher import SshLauncher
from ugro_tui.core.jobs.model import JobSpec, JobState
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.pool import Pool
from ugro_tui.core.telemetry.monitor import Monitor
from ugro_tui.sim.loopback import LoopbackCluster
from ugro_tui.sim.slurm import SlurmLab, missing

TICK = 0.1
FLOOD = """import os, sys, time
r = os.environ["RANK"]
end = time.time() + float(sys.argv[1])
i = 0
while time.time() < end:
    print(f"step {i} loss {1.0 / (i + 1):.5f} rank {r} " + "x" * 60, flush=True)
    i += 1
    time.sleep(0.001)
"""


def configs(lab: LoopbackCluster, slurm: SlurmLab, root: Path) -> tuple[Cluster, Cluster]:
    text = lab.cluster_toml(sim=[([], "none"), (["RTX 4070"] * 4, "nvml"), (["RTX 4070"] * 4, "nvml")],
                            poll_interval=0.5)
    head, login, a, b = text.split("[[nodes]]")
    ssh = parse_cluster(tomllib.loads(head + "[[nodes]]" + a + "[[nodes]]" + b), "ssh-bench")
    slurm_text = (head.replace('name = "loopback"', 'name = "loopback"\nbackend = "slurm"') + "[[nodes]]" + login
                  + f'\n[slurm]\nlogin = "{lab.nodes[0].name}"\nconf = "{slurm.conf}"\n')
    return ssh, parse_cluster(tomllib.loads(slurm_text), "slurm-bench")


async def until(store: JobStore, job_id: int, tick, states: set[JobState], timeout: float = 120) -> float:
    began = time.perf_counter()
    while store.get(job_id).state not in states:
        if time.perf_counter() - began > timeout:
            raise RuntimeError(f"job {job_id} stuck: {store.get(job_id)}")
        await tick()
        await asyncio.sleep(TICK)
    return time.perf_counter() - began


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=8.0, help="how long the 8 ranks write")
    args = parser.parse_args()
    why = missing()
    if why:
        raise SystemExit(f"bench/slurm.py: {why}")
    asyncssh.set_log_level("WARNING")
    with tempfile.TemporaryDirectory(prefix="ugro-bench-slurm-") as tmp:
        root = Path(tmp)
        os.environ["XDG_STATE_HOME"] = str(root / "state")
        lab = LoopbackCluster(root / "lab", hosts=["127.0.12.1", "127.0.12.2", "127.0.12.3"]).start()
        slurm = SlurmLab(root / "slurm", gpus=4).start()
        try:
            ssh_cluster, slurm_cluster = configs(lab, slurm, root)
            (root / "flood.py").write_text(FLOOD)
            async with Pool(ssh_cluster) as ssh_pool, Pool(slurm_cluster) as slurm_pool, \
                    Monitor(ssh_cluster, pool=ssh_pool) as monitor:
                await monitor.wait_settled(10)
                ssh_store, slurm_store = JobStore(root / "ssh-jobs"), JobStore(root / "slurm-jobs")
                launcher = SshLauncher(ssh_cluster, ssh_store, ssh_pool)
                ssh_backend = Dispatcher(ssh_cluster, ssh_store, monitor.state, launcher, wait=TICK)
                slurm_backend = SlurmDispatcher(slurm_cluster, slurm_store, slurm_pool)
                sides = {"ssh": (ssh_store, ssh_backend), "slurm": (slurm_store, slurm_backend)}
                spec = JobSpec("hop", ("sleep", "0.5"), kind="command", nnodes=2, gpus_per_node=1)
                timings: dict[str, list[float]] = {"ssh": [], "slurm": []}
                for i in range(args.rounds + 1):  # the first round warms both
                    for name, (store, backend) in sides.items():
                        [job] = store.submit([spec])
                        took = await until(store, job.id, backend.tick, {JobState.RUNNING, JobState.SUCCEEDED})
                        await until(store, job.id, backend.tick, {JobState.SUCCEEDED, JobState.FAILED})
                        if i:
                            timings[name].append(took)
                # 8 ranks each: 2 nodes x 4 processes writing as fast as they flush, followed side by side
                flood = JobSpec("flood", (str(root / "flood.py"), str(args.seconds)), nnodes=2, nproc_per_node=4,
                                gpus_per_node=4)
                jobs = {name: store.submit([flood])[0].id for name, (store, _) in sides.items()}
                for name, (store, backend) in sides.items():
                    await until(store, jobs[name], backend.tick, {JobState.RUNNING})
                cost: dict[str, list[tuple[float, float]]] = {"ssh": [], "slurm": []}
                follow = {"ssh": launcher.sync_logs, "slurm": slurm_backend.sync_logs}
                deadline = time.monotonic() + args.seconds - 1
                while time.monotonic() < deadline:
                    for name, (store, _) in sides.items():
                        job = store.get(jobs[name])
                        wall, cpu = time.perf_counter(), time.process_time()
                        await follow[name](job)
                        cost[name].append((time.perf_counter() - wall, time.process_time() - cpu))
                    await asyncio.sleep(0.2)
                sizes = {}
                for name, (store, backend) in sides.items():
                    await until(store, jobs[name], backend.tick, {JobState.SUCCEEDED, JobState.FAILED})
                    from ugro_tui.core.jobs.logs import local_dir

                    sizes[name] = sum(p.stat().st_size for p in local_dir(store.get(jobs[name])).rglob("*.std*"))
        finally:
            slurm.stop()
            lab.stop()
    ssh_t, slurm_t = statistics.median(timings["ssh"]), statistics.median(timings["slurm"])
    print(f"submit to running, a 2-node job (median of {args.rounds}, dispatchers ticking every {TICK}s)")
    print(f"  ssh backend  : {ssh_t * 1000:7.0f} ms")
    print(f"  slurm backend: {slurm_t * 1000:7.0f} ms   ({slurm_t / ssh_t:.2f}x the ssh backend)")
    print(f"following 8 ranks' logs (2 nodes x 4 ranks writing ~{args.seconds:.0f}s), per sync of both nodes, median")
    for name in ("ssh", "slurm"):
        wall = statistics.median(w for w, _ in cost[name])
        cpu = statistics.median(c for _, c in cost[name])
        print(f"  {name:5s}: {wall * 1000:6.1f} ms wall, {cpu * 1000:5.1f} ms CPU here; "
              f"{sizes[name] / 1e6:.1f} MB of rank output copied")
    ratio = statistics.median(w for w, _ in cost["slurm"]) / statistics.median(w for w, _ in cost["ssh"])
    print(f"  slurm / ssh wall per sync: {ratio:.2f}x (both nodes' files come through the one login connection)")


if __name__ == "__main__":
    asyncio.run(main())
