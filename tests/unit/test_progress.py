"""A job's progress and ETA from its own lines, a waiting job's start estimate, a sweep's ETA."""

from __future__ import annotations

import dataclasses
import time

from ugro_tui.core.jobs.describe import progress_text
from ugro_tui.core.jobs.estimate import start_estimates
from ugro_tui.core.jobs.leaderboard import Sweep
from ugro_tui.core.jobs.logs import rank_copy
from ugro_tui.core.jobs.metric import MetricFollower
from ugro_tui.core.jobs.model import Job, JobSpec, JobState, NodeRun
from ugro_tui.core.jobs.placement import FreeGpu, NodeCapacity
from ugro_tui.core.jobs.progress import Progress, ProgressScan, total_from_spec


def test_the_step_and_its_total_from_step_lines_tqdm_bars_and_ugro_total_steps() -> None:
    scan = ProgressScan()
    scan.feed(0, "step 12 loss 0.5", now=1.0)
    assert scan.progress() == Progress(12, None, None, 1.0)
    scan.feed(0, "epoch 1 step 40/200 lr 3e-4", now=2.0)
    assert scan.progress() == Progress(40, 200, 28.0, 2.0)
    bar = " 20%|██        | 20/100 [00:02<00:08, 9.8it/s]\r 30%|███       | 30/100 [00:03<00:07, 9.9it/s]"
    tqdm = ProgressScan()
    tqdm.feed(0, bar, now=5.0)
    assert (tqdm.progress().step, tqdm.progress().total) == (30, 100)  # the newest drawing of the bar
    told = ProgressScan(total=50)
    told.feed(0, "UGRO_TOTAL_STEPS=1000")
    told.feed(0, "step 10 loss 1", now=3.0)
    assert told.progress().total == 1000  # the script's word beats --steps
    assert ProgressScan(total=50).progress() is None


def test_the_total_from_the_jobs_environment_or_its_steps_argument() -> None:
    assert total_from_spec(("train.py", "--steps", "300"), ()) == 300
    assert total_from_spec(("train.py", "--steps=300"), ()) == 300
    assert total_from_spec(("train.py", "--steps", "300"), (("UGRO_TOTAL_STEPS", "900"),)) == 900
    assert total_from_spec(("train.py", "--steps", "x"), ()) is None
    assert total_from_spec(("train.py", "--steps"), ()) is None
    assert total_from_spec(("train.py", "--steps", "0"), (("UGRO_TOTAL_STEPS", "-3"),)) is None


def test_the_eta_follows_the_recent_rate_and_the_lowest_rank_counts() -> None:
    scan = ProgressScan(total=1000)
    for t in range(11):
        scan.feed(1, f"step {t * 20} loss 1", now=100.0 + t)  # rank 1 alone first
    scan.feed(0, "step 190 loss 1", now=111.0)                 # rank 0 reports: it is the one that counts
    for t in range(12, 22):
        scan.feed(0, f"step {190 + (t - 11) * 10} loss 1", now=100.0 + t)
    p = scan.progress()
    assert p.step == 290 and p.at == 121.0
    assert 9.0 < p.rate < 20.0  # rank 0's pace over the window: 100 steps in 10 s, after rank 1's 20/s
    assert p.eta() == 121.0 + (1000 - 290) / p.rate
    backlog = ProgressScan(total=1000)
    for step in range(100):
        backlog.feed(0, f"step {step}", now=50.0)  # read in one go: no rate from it
    assert backlog.progress().rate is None and backlog.progress().eta() is None


def test_progress_survives_the_store_and_bad_values_are_dropped() -> None:
    p = Progress(37, 100, 2.5, 1000.0)
    assert Progress.from_json(p.to_json()) == p
    assert p.to_json()["fraction"] == 0.37 and p.to_json()["eta"] == 1000.0 + 63 / 2.5
    assert Progress.from_json({"step": "7"}) is None and Progress.from_json(None) is None
    assert Progress.from_json({"step": 7, "total": -1, "rate": "fast", "at": None}) == Progress(7, None, None, 0.0)
    job = Job(1, JobSpec("j", ("x.py",)), state=JobState.RUNNING, progress=p)
    assert Job.from_json(job.to_json()).progress == p


def test_the_text_shown_in_the_queue_and_the_jobs_view() -> None:
    now = time.mktime((2026, 12, 4, 13, 0, 0, 0, 0, -1))
    running = Job(1, JobSpec("j", ("x.py",)), state=JobState.RUNNING,
                  progress=Progress(370, 1000, 630 / (80 * 60), now))
    assert progress_text(running, now) == "37% · ETA 14:20"
    assert progress_text(dataclasses.replace(running, progress=Progress(5, None, 1.0, now)), now) == "step 5"
    assert progress_text(dataclasses.replace(running, progress=Progress(5, 10, None, now)), now) == "50%"
    assert progress_text(dataclasses.replace(running, state=JobState.SUCCEEDED), now) == "–"


def test_the_metric_follower_reads_progress_from_the_rank_copies(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    spec = JobSpec("j", ("train.py", "--steps", "100"), nproc_per_node=1)
    job = Job(3, spec, state=JobState.RUNNING, attempt=1, runs=(("n0", NodeRun(pid=1, run_dir="/x")),))
    out = rank_copy(job, "n0", 0, "stdout")
    out.parent.mkdir(parents=True)
    (out.parent / "ranks.json").write_text('{"scanned": 0, "ranks": {"0": 0}}')
    out.write_text("step 0 loss 2\nstep 1 loss 1.9\n")
    follower = MetricFollower()
    follower.update(job, 10.0)
    with out.open("a") as f:
        f.write("step 2 loss 1.8\nstep 3 loss 1.7\n 4%|▍  | 4/100 [")  # a bar being drawn: no newline yet
    follower.update(job, 12.0)
    p = follower.progress(job)
    assert (p.step, p.total, p.at) == (4, 100, 12.0) and p.rate == 1.5


def caps(*nodes: tuple[str, tuple[int, ...], int]) -> list[NodeCapacity]:
    return [NodeCapacity(name, (), tuple(FreeGpu(i, 8000) for i in free), count, 8192) for name, free, count in nodes]


def running(job_id: int, node: str, eta_in: float | None, now: float) -> Job:
    progress = Progress(100, 1000, 900 / eta_in, now) if eta_in else None
    return Job(job_id, JobSpec(f"r{job_id}", ("x.py",)), state=JobState.RUNNING, placement=((node, (0,)),),
               progress=progress)


def test_a_waiting_jobs_start_is_the_eta_of_the_running_jobs_it_needs_in_queue_order() -> None:
    now = time.mktime((2026, 12, 4, 13, 0, 0, 0, 0, -1))
    busy = caps(("n0", (), 1), ("n1", (), 1))
    run = [running(1, "n0", 600, now), running(2, "n1", None, now)]
    assert start_estimates([Job(9, JobSpec("x", ("x.py",)))], [running(1, "n0", 601, now)], busy, now) == {
        9: "starts ≈ 13:11 (estimate)"}  # rounded up to the minute
    one = Job(3, JobSpec("one", ("x.py",)), submitted_at=now)
    two = Job(4, JobSpec("two", ("x.py",), nnodes=2), submitted_at=now)
    later = Job(5, JobSpec("later", ("x.py",)), submitted_at=now + 1)
    said = start_estimates([one, two, later], run, busy, now)
    assert said[3] == "starts ≈ 13:10 (estimate)"  # job 1 ends at 13:10
    assert said[4] == "start unknown (jobs 2, 3 have no ETA)"  # job 3 takes n0 first
    assert said[5] == "start unknown (job 2 has no ETA)"  # n1, the first to free
    assert start_estimates([one], [], busy, now) == {}  # nothing running frees a card: no estimate


def test_a_sweeps_eta_is_its_last_trials() -> None:
    now = 1000.0

    def trial(job_id: int, state: JobState, progress: Progress | None = None) -> Job:
        return Job(job_id, JobSpec(f"lr[{job_id}]", ("x.py",), sweep_id="s1"), state=state, progress=progress)

    two_running = [trial(1, JobState.RUNNING, Progress(0, 100, 1.0, now)),
                   trial(2, JobState.RUNNING, Progress(50, 100, 1.0, now))]
    assert Sweep("s1", tuple(two_running)).eta() == now + 100
    # Two more wait: each takes the slot freed first and runs ~100 s (the running trials' pace).
    queued = Sweep("s1", (*two_running, trial(3, JobState.QUEUED), trial(4, JobState.QUEUED)))
    assert queued.eta() == now + 200
    assert queued.eta_text(now).startswith("ETA ")
    assert Sweep("s1", (*two_running, trial(5, JobState.RUNNING))).eta_text(now) == "ETA unknown"
    assert Sweep("s1", (trial(6, JobState.SUCCEEDED),)).eta_text(now) == ""
