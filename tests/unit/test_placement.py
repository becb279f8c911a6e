"""Placement properties (hypothesis): no double-booking, all-or-nothing, priority order, no starvation."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ugro_tui.core.jobs.model import Job, JobSpec
from ugro_tui.core.jobs.placement import FreeGpu, NodeCapacity, job_order, place

NODES = ["gpu-master", "gpu1", "gpu2", "gpu3"]


def cluster(free: list[list[int]], gpus: int = 4, mib: int = 8192) -> list[NodeCapacity]:
    return [NodeCapacity(name, ("master",) if i == 0 else ("worker",),
                         tuple(FreeGpu(g, mib) for g in free_i), gpus, mib)
            for i, (name, free_i) in enumerate(zip(NODES, free, strict=False))]


jobs_st = st.lists(st.builds(
    lambda i, prio, nn, g, mem, t: Job(i, JobSpec(f"j{i}", ("x.py",), nnodes=nn, gpus_per_node=g, priority=prio,
                                                  min_gpu_mem_gb=mem), submitted_at=t),
    st.integers(1, 10_000), st.integers(-2, 2), st.integers(1, 4), st.integers(1, 4),
    st.sampled_from([0.0, 4.0, 10.0]), st.floats(0, 100)), max_size=12, unique_by=lambda j: j.id)
free_st = st.lists(st.lists(st.integers(0, 3), unique=True), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(jobs_st, free_st)
def test_no_double_booking_and_all_or_nothing(jobs: list[Job], free: list[list[int]]) -> None:
    nodes = cluster(free)
    pool = {(n.name, g.index) for n in nodes for g in n.free}
    used: set[tuple[str, int]] = set()
    by_id = {j.id: j for j in jobs}
    for d in place(jobs, nodes, now=100.0):
        if d.placement is None:
            assert d.reason
            continue
        job = by_id[d.job_id]
        assert len(d.placement) == job.spec.nnodes
        assert len({n for n, _ in d.placement}) == job.spec.nnodes
        for node, gpus in d.placement:
            assert len(gpus) == job.spec.gpus_per_node
            for g in gpus:
                assert (node, g) in pool and (node, g) not in used
                used.add((node, g))


@settings(max_examples=300, deadline=None)
@given(jobs_st, free_st)
def test_priority_order(jobs: list[Job], free: list[list[int]]) -> None:
    """A job placed behind one that waits never took what the waiting job needed: the waiting job does not fit
    even in what was left when its turn came."""
    nodes = cluster(free)
    decisions = {d.job_id: d for d in place(jobs, nodes, now=0.0, starve_after=1e9)}
    ordered = sorted(jobs, key=job_order)
    for i, job in enumerate(ordered):
        if decisions[job.id].placement is not None:
            continue
        taken = {(n, g) for earlier in ordered[:i] if decisions[earlier.id].placement
                 for n, gs in decisions[earlier.id].placement for g in gs}
        left = [NodeCapacity(n.name, n.labels, tuple(g for g in n.free if (n.name, g.index) not in taken),
                             n.gpu_count, n.gpu_total_mib) for n in nodes]
        assert place([job], left, now=0.0)[0].placement is None


def test_higher_priority_first_then_fifo() -> None:
    nodes = cluster([[0]])
    low_old = Job(1, JobSpec("a", ("x",), priority=0), submitted_at=1.0)
    high_new = Job(2, JobSpec("b", ("x",), priority=5), submitted_at=9.0)
    same_later = Job(3, JobSpec("c", ("x",), priority=5), submitted_at=10.0)
    placed = [d.job_id for d in place([low_old, same_later, high_new], nodes, now=10.0) if d.placement]
    assert placed == [2]


def test_reason_is_human() -> None:
    nodes = cluster([[0], [], [0, 1]])
    job = Job(1, JobSpec("big", ("x",), nnodes=3, gpus_per_node=1, min_gpu_mem_gb=8), submitted_at=0)
    [d] = place([job], nodes, now=1.0)
    assert d.reason == "needs 3 nodes with 1 free GPU ≥ 8 GB; 2 such nodes free now"
    never = Job(2, JobSpec("huge", ("x",), nnodes=9), submitted_at=0)
    assert place([never], nodes, now=1.0)[0].reason.startswith("can never fit")


@settings(max_examples=20, deadline=None)  # each example is 400 rounds of placement over up to 1,000 jobs
@given(st.integers(3, 4), st.integers(3, 4), st.integers(0, 10_000))
def test_no_starvation(nnodes: int, gpus: int, seed: int) -> None:
    """A stream of small jobs keeps arriving; a big one still starts once it has waited `starve_after`."""
    import random

    rng = random.Random(seed)
    nodes_n, per_node, starve_after = 4, 4, 20.0
    running: dict[int, tuple[float, tuple]] = {}  # job id -> (end time, placement)
    arrives = 50  # once small jobs fill the cluster
    big = Job(1, JobSpec("big", ("x",), nnodes=nnodes, gpus_per_node=gpus), submitted_at=float(arrives))
    waiting: list[Job] = []
    cleared: int | None = None
    next_id = 2
    for now in range(0, 400):
        if now == arrives:
            waiting.append(big)
        waiting += [Job(next_id + k, JobSpec("small", ("x",)), submitted_at=float(now)) for k in range(3)]
        next_id += 3  # ~3x more demand than GPUs: without reservations the big job would wait forever
        for jid in [j for j, (end, _) in running.items() if end <= now]:
            del running[jid]
        busy = {(n, g) for _, pl in running.values() for n, gs in pl for g in gs}
        nodes = [NodeCapacity(f"n{i}", (), tuple(FreeGpu(g, 8192) for g in range(per_node) if (f"n{i}", g) not in busy),
                              per_node, 8192) for i in range(nodes_n)]
        for d in place(waiting, nodes, now=float(now), starve_after=starve_after):
            if d.placement:
                running[d.job_id] = (now + rng.randint(5, 30), d.placement)
                waiting = [j for j in waiting if j.id != d.job_id]
        ahead = [j for j in waiting if j.submitted_at < arrives]
        if now >= arrives and not ahead and cleared is None:
            cleared = now  # FIFO: every job submitted before the big one has started
        if now >= arrives and big not in waiting:
            # From its turn on: the reservation's wait, then the longest small job draining.
            assert now - max(arrives, cleared or now) <= starve_after + 31
            return
    raise AssertionError("the big job never started")


def test_a_retry_goes_back_to_the_nodes_that_hold_its_checkpoints_when_they_are_free() -> None:
    nodes = cluster([[0], [0, 1], [0], [0]])
    spec = JobSpec("r", ("x.py",), nnodes=2, checkpoint_dir="ck")
    retry = Job(1, spec, ran_on=("gpu1", "gpu3"))
    [d] = place([retry], nodes, now=0.0)
    assert [n for n, _ in d.placement] == ["gpu1", "gpu3"]  # not the tighter gpu-master and gpu2
    [d] = place([Job(1, spec)], nodes, now=0.0)  # a first run: the tightest fit, as always
    assert [n for n, _ in d.placement] == ["gpu-master", "gpu2"]
    busy = cluster([[0], [], [0], [0]])  # gpu1 taken: one of its nodes and the tightest other one
    [d] = place([retry], busy, now=0.0)
    assert [n for n, _ in d.placement] == ["gpu-master", "gpu3"]
