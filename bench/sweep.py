"""Early stopping's cost in the dispatcher, and the metric follower's, each beside its floor in one run.

1. The rules on a large sweep: 1,000 trials with 2,000 points each, 3 of them running (the GPUs a lab has);
   one `judge` per tick, median and ASHA. Floor: reading every point once (a plain loop over the histories).
2. The metric follower on 8 ranks' copies, 20,000 `step N loss X` lines each: parsed in one read, against the
   floor of matching the same regex over the same bytes with nothing else.
Usage: python bench/sweep.py
"""

from __future__ import annotations

import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import dataclasses
import json
import random
import tempfile
import time
from pathlib import Path


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def rules() -> None:
    from ugro_tui.core.jobs.early_stop import judge
    from ugro_tui.core.jobs.model import Job, JobSpec, JobState

    rng = random.Random(1)
    for rule in ("median", "asha"):
        spec = JobSpec("t", ("x",), sweep_id="s", early_stop=rule, min_trials=5)
        jobs = []
        for i in range(1000):
            base = rng.uniform(0, 3)
            points = tuple((s, base + 2 / (s + 1), i * 10.0 + s) for s in range(2000))
            jobs.append(Job(i + 1, spec, JobState.RUNNING if i >= 997 else JobState.SUCCEEDED, metric=points))
        took = best_of(lambda jobs=jobs: judge(jobs))
        floor = best_of(lambda jobs=jobs: sum(len(j.metric) for j in jobs) and [p for j in jobs for p in j.metric])
        print(f"rules  {rule:6s}: judge over 1,000 trials x 2,000 points = {took * 1e3:7.2f} ms per tick "
              f"(floor, touching every point once: {floor * 1e3:7.2f} ms; ratio {took / floor:.2f}x)")


def follower() -> None:
    from ugro_tui import paths
    from ugro_tui.core.jobs.logs import rank_copy
    from ugro_tui.core.jobs.metric import MetricFollower, pattern
    from ugro_tui.core.jobs.model import Job, JobSpec, JobState, NodeRun

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_STATE_HOME"] = tmp
        spec = JobSpec("t", ("x",), nnodes=2, nproc_per_node=4)
        job = Job(1, spec, JobState.RUNNING, attempt=1,
                  runs=(("a", NodeRun(1, "/x")), ("b", NodeRun(2, "/y"))))
        total = 0
        for n, node in enumerate(("a", "b")):
            (paths.state_dir() / "logs" / "job-1-a1" / node).mkdir(parents=True, exist_ok=True)
            ranks = {local: n * 4 + local for local in range(4)}
            (paths.state_dir() / "logs" / "job-1-a1" / node / "ranks.json").write_text(
                json.dumps({"scanned": 0, "ranks": {str(k): v for k, v in ranks.items()}}))
            for local in range(4):
                data = "".join(f"step {s} loss {3 / (s + 1):.5f} lr 0.001 tokens/s 12345\n"
                               for s in range(20000)).encode()
                rank_copy(job, node, local, "stdout").write_bytes(data)
                rank_copy(job, node, local, "stderr").write_bytes(b"")
                total += len(data)

        def run() -> None:
            MetricFollower().update(dataclasses.replace(job), time.time())

        files = list((Path(tmp) / "ugro" / "logs" / "job-1-a1").rglob("*.stdout"))
        regex = pattern(spec)

        def floor() -> None:
            for f in files:
                for line in f.read_bytes().decode().splitlines():
                    regex.search(line)

        took, base = best_of(run, 3), best_of(floor, 3)
        print(f"follow: 8 ranks x 20,000 lines ({total / 1e6:.1f} MB) parsed in {took * 1e3:.0f} ms, "
              f"{total / took / 1e6:.0f} MB/s (floor, the regex alone: {base * 1e3:.0f} ms; ratio {took / base:.2f}x)")


if __name__ == "__main__":
    rules()
    follower()
