"""Preemption as placement decides it: only preemptible jobs of lower priority, the fewest and youngest that make
the job fit, all or nothing, each victim once per round, and the cards it frees kept for the job that asked."""

from __future__ import annotations

import dataclasses

from ugro_tui.core.jobs.model import Job, JobSpec, JobState
from ugro_tui.core.jobs.placement import FreeGpu, NodeCapacity, place
from ugro_tui.core.lifecycle import merge, retry_or_fail


def node(name: str, free: tuple[int, ...], held: tuple[int, ...]) -> NodeCapacity:
    return NodeCapacity(name, (), tuple(FreeGpu(i, 8000) for i in free), len(free) + len(held), 8192,
                        held=tuple((i, 8192) for i in held))


def running(job_id: int, where: tuple, priority: int = 0, started: float = 0.0, preemptible: bool = True,
            preempt: str = "") -> Job:
    spec = JobSpec(f"r{job_id}", ("x.py",), nnodes=len(where), gpus_per_node=len(where[0][1]), priority=priority,
                   preemptible=preemptible)
    return Job(job_id, spec, state=JobState.RUNNING, started_at=started, placement=where, preempt=preempt)


def waiting(job_id: int, priority: int, **spec: object) -> Job:
    return Job(job_id, JobSpec(f"w{job_id}", ("x.py",), priority=priority, **spec), submitted_at=100.0)  # type: ignore


def test_the_youngest_lower_priority_preemptible_job_makes_room_and_its_cards_are_kept() -> None:
    nodes = [node("a", (), (0,)), node("b", (), (0,)), node("c", (), (0,))]
    old = running(1, (("a", (0,)),), started=10.0)
    young = running(2, (("b", (0,)),), started=20.0)
    keeper = running(3, (("c", (0,)),), started=30.0, preemptible=False)
    first, backfill = place([waiting(9, 5), waiting(10, 0)], nodes, now=200.0, running=[old, young, keeper])
    assert first.preempt == (2,) and first.placement is None
    assert "preempting job 2 (r2, priority 0): it starts once they have stopped" in first.reason
    assert backfill.preempt == () and backfill.placement is None  # priority 0 preempts nothing


def test_the_fewest_victims_all_or_nothing_and_never_a_higher_priority_one() -> None:
    nodes = [node("a", (1,), (0,)), node("b", (), (0, 1))]
    small = running(1, (("a", (0,)),), started=50.0)
    big = running(2, (("b", (0, 1)),), started=10.0)
    [d] = place([waiting(9, 5, gpus_per_node=2)], nodes, now=200.0, running=[small, big])
    assert d.preempt == (1,)  # a's free card and job 1's make two: the big, older job runs on
    [d] = place([waiting(9, 5, gpus_per_node=3)], nodes, now=200.0, running=[small, big])
    assert d.preempt == () and "can never fit" in d.reason  # nothing helps: nobody is stopped
    high = running(3, (("b", (0, 1)),), priority=7)
    [d] = place([waiting(9, 5, gpus_per_node=2, nodes=("b",))], [node("b", (), (0, 1))], now=200.0, running=[high])
    assert d.preempt == ()


def test_two_jobs_never_preempt_one_job_twice_and_one_being_stopped_is_counted_first() -> None:
    nodes = [node("a", (), (0,)), node("b", (), (0,))]
    stopping = running(1, (("a", (0,)),), started=10.0, preempt="preempted by job 9 (priority 5)")
    other = running(2, (("b", (0,)),), started=20.0)
    first, second = place([waiting(9, 5), waiting(10, 5)], nodes, now=200.0, running=[stopping, other])
    assert first.preempt == (1,) and second.preempt == (2,)
    [only] = place([waiting(11, 5)], [node("a", (), (0,))], now=200.0, running=[stopping])
    assert only.preempt == (1,)  # the same victim again: the dispatcher marks it once (its preempt is kept)


def test_a_preempted_attempt_spends_no_retry_and_the_mark_survives_a_follow() -> None:
    job = dataclasses.replace(running(1, (("a", (0,)),)), attempt=2, preemptions=1)  # attempt 1 was preempted
    assert retry_or_fail(job, "node a exited 1", None).state is JobState.FAILED  # its first real try: no retries
    retried = dataclasses.replace(job, spec=dataclasses.replace(job.spec, max_retries=1))
    assert retry_or_fail(retried, "x", None).state is JobState.QUEUED  # its one retry is still there
    assert retry_or_fail(dataclasses.replace(retried, preemptions=0), "x", None).state is JobState.FAILED
    marked = dataclasses.replace(job, preempt="preempted by job 9 (priority 5)")
    assert merge(marked, job).preempt == marked.preempt


def test_the_form_takes_preemptible_after_the_priority_and_shows_it_again() -> None:
    from ugro_tui.config import parse_cluster
    from ugro_tui.core.jobs.form import FormValues, check, from_spec

    cluster = parse_cluster({"nodes": [{"name": "a", "host": "127.0.0.1"}]})
    done = check(FormValues(script="train.py", priority="2 preemptible"), cluster)
    assert done.spec is not None and done.spec.preemptible and done.spec.priority == 2, done.errors
    assert from_spec(done.spec).priority == "2 preemptible"
    bad = check(FormValues(script="train.py", priority="2 maybe"), cluster)
    assert bad.spec is None and bad.errors["priority"].startswith("priority: a whole number")


def test_a_preempted_job_waiting_names_the_running_job_it_waits_for() -> None:
    busy = NodeCapacity("a", (), (), 1, 8192, held=((0, 8192),), running=((0, "job 12 (urgent)"),))
    back = dataclasses.replace(waiting(3, 0), preempt="preempted by job 12 (priority 5)")
    [d] = place([back], [busy], now=200.0)
    assert d.reason.endswith("; waits for job 12 (urgent) on a:0"), d.reason
    [d] = place([waiting(4, 0)], [busy], now=200.0)
    assert "waits for" not in d.reason  # a job never preempted says only what it needs
