"""The metric follower reads the ranks' local copies from where it stopped, and never loses what it read."""

from __future__ import annotations

import json

from ugro_tui.core.jobs.logs import local_dir, rank_copy
from ugro_tui.core.jobs.metric import MetricFollower
from ugro_tui.core.jobs.model import Job, JobSpec, JobState, NodeRun


def job_with_copies(lines: dict[int, list[str]]) -> Job:
    job = Job(7, JobSpec("t", ("x.py",), nnodes=1, nproc_per_node=2), JobState.RUNNING, attempt=1,
              runs=(("a", NodeRun(1, "/r")),))
    (local_dir(job) / "a").mkdir(parents=True)
    (local_dir(job) / "a" / "ranks.json").write_text(json.dumps({"scanned": 0, "ranks": {"0": 0, "1": 1}}))
    for rank, text in lines.items():
        rank_copy(job, "a", rank, "stdout").write_text("".join(line + "\n" for line in text))
    return job


def test_ranks_are_averaged_read_incrementally_and_kept_between_calls() -> None:
    job = job_with_copies({0: ["step 0 loss 4.0", "step 1 loss 2.0", "noise"], 1: ["step 0 loss 2.0"]})
    follower = MetricFollower()
    first = follower.update(job, now=10.0)
    assert [(s, v) for s, v, _ in first] == [(0, 3.0), (1, 2.0)]  # step 1: only rank 0 so far
    with open(rank_copy(job, "a", 1, "stdout"), "a") as f:
        f.write("step 1 loss 4.0\nstep 2 lo")  # a line cut in the middle waits for its end
    # The caller did not store the first result: the follower still has it.
    second = follower.update(job, now=20.0)
    assert [(s, v, t) for s, v, t in second] == [(0, 3.0, 10.0), (1, 3.0, 10.0)]
    assert follower.update(job, now=30.0) == second  # nothing new
    with open(rank_copy(job, "a", 1, "stdout"), "a") as f:
        f.write("ss 9\n")
    assert follower.update(job, now=40.0)[-1] == (2, 9.0, 40.0)


def test_a_custom_pattern_and_a_goal_max_metric() -> None:
    import dataclasses

    job = job_with_copies({0: ["it=5 acc=0.5", "it=10 acc=0.75"], 1: []})
    job = dataclasses.replace(job, spec=dataclasses.replace(job.spec, metric="acc", goal="max",
                                                            metric_regex=r"it=(\d+) acc=([0-9.]+)"))
    assert [(s, v) for s, v, _ in MetricFollower().update(job, now=1.0)] == [(5, 0.5), (10, 0.75)]
