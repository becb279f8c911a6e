"""Sharing a card by memory against whole-card placement, on a day's trace, side by side in one run.

- The trace: 500 jobs arriving over 24 hours (Poisson, a seed) on the reference lab's three cards (an RTX 5070 Ti
  of 12 GB, an RTX 4070 and an RTX 3070 Ti of 8 GB). 70% are small (0.75-4 GB per rank, 5-25 minutes alone on a
  card, a GPU load of 20-50%: fine-tuning, sweep trials, a notebook's experiment) and 30% take a whole card (at
  least 6 GB, 10-40 minutes, a GPU load of 90-100%): about 1.7 days of one card's time each day on three cards,
  so a queue builds up, as it does in a busy lab.
- Both runs go through the production path: `capacity()` reads a ClusterState whose GPU samples show each running
  job's processes with the memory it declared, and `place()` decides each minute. "whole": no job declares its
  memory, so each takes whole cards (today's rule). "sharing": the small jobs give `gpu_mem_gb`.
- Jobs on one card slow each other down only when their loads add up to more than the card: each then runs at
  1/(sum of loads) of its speed (utilization is not a limit to placement, but it is to progress).
- Reported: the makespan (first arrival to last end) and the mean wait (arrival to start), for both; goal: the
  makespan at least 1.5x shorter with sharing. And the time of one placement round at 1,000 waiting jobs (half
  of them sharing) on the lab's three cards and on 64 nodes x 8 GPUs; goal: <= 10 ms on the lab.

Usage: python bench/placement.py [--jobs N] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ugro_tui.config import Cluster, Node  # noqa: E402
from ugro_tui.core.jobs.model import Job, JobSpec, JobState  # noqa: E402
from ugro_tui.core.jobs.placement import capacity, place  # noqa: E402
from ugro_tui.core.telemetry.model import ClusterState, GpuProcess, GpuSample  # noqa: E402

LAB = (("gpu-master", "NVIDIA GeForce RTX 5070 Ti", 12227), ("gpu1", "NVIDIA GeForce RTX 4070", 8188),
       ("gpu2", "NVIDIA GeForce RTX 3070 Ti", 8192))
BASE_MIB = 310  # what an idle card shows as used (the display, the driver)
STEP = 60.0     # seconds between two placement rounds in the simulation


@dataclass
class Work:
    job: Job
    arrive: float
    alone: float     # seconds it takes alone on a card
    load: float      # its share of the card's compute when alone
    mem_gb: float
    start: float | None = None
    done: float = 0.0  # seconds of progress (at full speed)
    end: float | None = None


def trace(n: int, seed: int) -> list[Work]:
    rng = random.Random(seed)
    t, out = 0.0, []
    for i in range(1, n + 1):
        t += rng.expovariate(n / 86400.0)
        if rng.random() < 0.7:
            mem, alone, load = rng.uniform(0.75, 4.0), rng.uniform(5, 25) * 60, rng.uniform(0.2, 0.5)
        else:
            mem, alone, load = rng.uniform(6.0, 7.0), rng.uniform(10, 40) * 60, rng.uniform(0.9, 1.0)
        spec = JobSpec(f"j{i}", ("train.py",), gpu_mem_gb=round(mem, 2))
        out.append(Work(Job(i, spec, submitted_at=t), t, alone, load, mem))
    return out


def lab_state(cluster: Cluster, running: list[Work]) -> ClusterState:
    """What telemetry would show: each running job's rank on its card, with the memory it declared."""
    state = ClusterState([(n.name, n.host) for n in cluster.nodes])
    on: dict[tuple[str, int], list[Work]] = {}
    for w in running:
        for node, gpus in w.job.placement:
            for g in gpus:
                on.setdefault((node, g), []).append(w)
    for node, gpus in NODES_OF[id(cluster)]:
        samples = []
        for index, (name, total) in enumerate(gpus):
            procs = tuple(GpuProcess(10_000 + w.job.id, "lab", "python train.py", round(w.mem_gb * 1024), w.job.id)
                          for w in on.get((node, index), []))
            used = BASE_MIB + sum(p.used_mib or 0 for p in procs)
            samples.append(GpuSample(index, None, name, 50.0 if procs else 0.0, used, total, 50.0, 100.0, 300.0, 30.0,
                                     procs))
        status = state.nodes[node]
        status.apply_sample({"gpus": []}, 1.0)
        status.gpus = tuple(samples)
    return state


NODES_OF: dict[int, list[tuple[str, list[tuple[str, int]]]]] = {}


def make_cluster(nodes: list[tuple[str, list[tuple[str, int]]]]) -> Cluster:
    cluster = Cluster(nodes=tuple(Node(name, f"127.0.1.{i + 1}") for i, (name, _) in enumerate(nodes)))
    NODES_OF[id(cluster)] = nodes
    return cluster


def simulate(works: list[Work], sharing: bool) -> tuple[float, float]:
    cluster = make_cluster([(node, [(name, mib)]) for node, name, mib in LAB])
    works = [replace(w, job=w.job if sharing and w.mem_gb < 6 else
                     replace(w.job, spec=replace(w.job.spec, gpu_mem_gb=None))) for w in works]
    pending = sorted(works, key=lambda w: w.arrive)
    running: list[Work] = []
    t = 0.0
    while pending or running:
        for w in running:  # progress over the last step; a card over-loaded slows everyone on it
            load = sum(o.load for o in running if o.job.placement == w.job.placement)
            w.done += STEP / max(1.0, load)
            if w.done >= w.alone:
                w.end = t
        running = [w for w in running if w.end is None]
        waiting = [w for w in pending if w.arrive <= t and w.start is None]
        if waiting:
            jobs = [replace(w.job, state=JobState.RUNNING) for w in running]
            decided = place([w.job for w in waiting], capacity(cluster, lab_state(cluster, running), jobs), now=t)
            by_id = {w.job.id: w for w in waiting}
            for d in decided:
                if d.placement is not None:
                    w = by_id[d.job_id]
                    w.start, w.job = t, replace(w.job, placement=d.placement, state=JobState.RUNNING)
                    running.append(w)
            pending = [w for w in pending if w.start is None]
        t += STEP
    ends = [w.end or 0.0 for w in works]
    return max(ends) - min(w.arrive for w in works), statistics.mean((w.start or 0.0) - w.arrive for w in works)


def round_time(nodes: list[tuple[str, list[tuple[str, int]]]], waiting: int, repeat: int = 20) -> float:
    """One placement round (capacity + place) with `waiting` jobs queued, half of them sharing; ms, the median."""
    cluster = make_cluster(nodes)
    rng = random.Random(1)
    jobs = [Job(i, JobSpec(f"w{i}", ("x.py",), gpu_mem_gb=rng.choice([1.0, 2.5, 4.0]) if i % 2 else None,
                           nnodes=rng.choice([1, 1, 1, 2])), submitted_at=float(i)) for i in range(1, waiting + 1)]
    state = lab_state(cluster, [])
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        place(jobs, capacity(cluster, state, []), now=1e9 / 2, starve_after=1e12)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    works = trace(args.jobs, args.seed)
    whole = simulate(works, sharing=False)
    shared = simulate(works, sharing=True)
    small = sum(1 for w in works if w.mem_gb < 6)
    print(f"trace: {len(works)} jobs over 24 h on {len(LAB)} cards ({small} small, {len(works) - small} whole-card), "
          f"seed {args.seed}")
    print(f"{'':12s}{'makespan':>12s}{'mean wait':>12s}")
    for label, (span, wait) in (("whole-card", whole), ("sharing", shared)):
        print(f"{label:12s}{span / 3600:>10.1f} h{wait / 60:>9.0f} min")
    print(f"makespan ratio (whole / sharing): {whole[0] / shared[0]:.2f}x   (goal >= 1.5x)")
    print(f"mean wait ratio (whole / sharing): {whole[1] / max(1.0, shared[1]):.1f}x")
    lab = [(node, [(name, mib)]) for node, name, mib in LAB]
    big = [(f"n{i}", [("NVIDIA H100 80GB HBM3", 81559)] * 8) for i in range(64)]
    print(f"one placement round, 1,000 waiting (half sharing): lab {round_time(lab, 1000):.2f} ms (goal <= 10 ms); "
          f"64 nodes x 8 GPUs {round_time(big, 1000):.2f} ms")


if __name__ == "__main__":
    main()
