"""Sharing a card by memory: placement properties (hypothesis), what a card has free, reasons in numbers, over-use."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ugro_tui.config import Cluster, Node
from ugro_tui.core.jobs import sharing
from ugro_tui.core.jobs.form import FormValues, check
from ugro_tui.core.jobs.memory_watch import MemoryWatch, diagnose_shared
from ugro_tui.core.jobs.model import Job, JobSpec, JobState
from ugro_tui.core.jobs.placement import CardRoom, FreeGpu, NodeCapacity, capacity, place
from ugro_tui.core.telemetry.model import ClusterState, GpuProcess, GpuSample

GB = 1024
NODES = ["gpu-master", "gpu1", "gpu2"]


def job(i: int, mem: float | None = None, nnodes: int = 1, gpus: int = 1, t: float = 0.0, prio: int = 0) -> Job:
    return Job(i, JobSpec(f"j{i}", ("x.py",), nnodes=nnodes, gpus_per_node=gpus, nproc_per_node=gpus,
                          gpu_mem_gb=mem, priority=prio), submitted_at=t)


def card(index: int, room: int, whole: bool) -> FreeGpu:
    return FreeGpu(index, room, whole, CardRoom(room))


# A node: up to 3 cards, each whole (nothing on it) or partly used (some room left for sharing jobs).
cards_st = st.lists(st.tuples(st.integers(0, 12 * GB), st.booleans()), min_size=0, max_size=3)
jobs_st = st.lists(st.builds(
    lambda i, mem, nn, g, t, prio: job(i, mem, nn, g, t, prio),
    st.integers(1, 10_000), st.sampled_from([None, None, 1.0, 2.5, 3.0, 4.0, 7.5]), st.integers(1, 2),
    st.integers(1, 2), st.floats(0, 100), st.integers(-1, 1)), max_size=14, unique_by=lambda j: j.id)


def cluster_of(nodes: list[list[tuple[int, bool]]]) -> list[NodeCapacity]:
    return [NodeCapacity(NODES[i], (), tuple(card(g, room if not whole else 12 * GB, whole)
                                             for g, (room, whole) in enumerate(cards)), 3, 12 * GB)
            for i, cards in enumerate(nodes)]


@settings(max_examples=400, deadline=None)
@given(st.lists(cards_st, min_size=1, max_size=3), jobs_st)
def test_placement_never_over_commits_never_splits_and_whole_card_jobs_never_share(nodes_raw, jobs) -> None:
    nodes = cluster_of(nodes_raw)
    room = {(n.name, g.index): g.room.room_mib for n in nodes for g in n.free}
    whole = {(n.name, g.index) for n in nodes for g in n.free if g.whole}
    by_id = {j.id: j for j in jobs}
    declared: dict[tuple[str, int], int] = {}
    holders: dict[tuple[str, int], list[int]] = {}
    for d in place(jobs, nodes, now=0.0, starve_after=1e9):
        if d.placement is None:
            assert d.reason
            continue
        j = by_id[d.job_id]
        assert len(d.placement) == j.spec.nnodes and len({n for n, _ in d.placement}) == j.spec.nnodes
        for node, gpus in d.placement:
            assert len(set(gpus)) == len(gpus) == j.spec.gpus_per_node  # all or nothing, on distinct cards
            for g in gpus:
                holders.setdefault((node, g), []).append(j.id)
                if sharing.declared_mib(j.spec):
                    declared[(node, g)] = declared.get((node, g), 0) + sharing.declared_mib(j.spec)
                else:
                    assert (node, g) in whole
    for key, mib in declared.items():
        assert mib <= room[key], f"{key} over-committed: {mib} > {room[key]}"
    for key, ids in holders.items():  # a whole-card job is alone on its card
        if any(not sharing.declared_mib(by_id[i].spec) for i in ids):
            assert len(ids) == 1, (key, ids)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 12 * GB), min_size=1, max_size=4), st.sampled_from([1.0, 2.0, 3.0, 5.5]))
def test_tightest_fit_first_so_whole_cards_stay_whole(rooms: list[int], mem: float) -> None:
    free = tuple(card(i, r, False) for i, r in enumerate(rooms)) + (card(len(rooms), 12 * GB, True),)
    node = NodeCapacity("gpu-master", (), free, len(free), 12 * GB)
    [d] = place([job(1, mem)], [node], now=0.0)
    need = sharing.declared_mib(job(1, mem).spec)
    fitting = sorted(r for r in rooms if r >= need)
    [(_, (chosen,))] = d.placement
    if fitting:  # a partly used card that holds it wins over the whole one, and the tightest of them
        assert rooms[chosen] == fitting[0]
    else:
        assert chosen == len(rooms)


def sample(index: int, used: int, total: int = 8 * GB, procs: tuple[GpuProcess, ...] = ()) -> GpuSample:
    return GpuSample(index, None, "NVIDIA GeForce RTX 3070 Ti", 5.0, used, total, 40.0, 20.0, 290.0, 30.0, procs)


def lab(gpus: dict[str, tuple[GpuSample, ...]], *, share: bool = True) -> tuple[Cluster, ClusterState]:
    cluster = Cluster(nodes=tuple(Node(n, f"127.0.0.{i + 2}", share_gpus=share) for i, n in enumerate(gpus)))
    state = ClusterState([(n.name, n.host) for n in cluster.nodes])
    for name, samples in gpus.items():
        state.nodes[name].apply_sample({"gpus": []}, 1.0)
        state.nodes[name].gpus = samples
    return cluster, state


def running(j: Job, placement: tuple) -> Job:
    return dataclasses.replace(j, state=JobState.RUNNING, placement=placement)


def test_what_a_card_has_free_counts_every_process_and_what_jobs_declared_but_do_not_use_yet() -> None:
    ollie = GpuProcess(4242, "ollie", "/usr/bin/python notebook.py", 5 * GB)
    mine = GpuProcess(5000, "me", "python train.py", 1 * GB, ugro_job=12)
    cluster, state = lab({"gpu2": (sample(0, 300 + 5 * GB + 1 * GB, procs=(ollie, mine)), sample(1, 300))})
    twelve = running(job(12, 1.5), (("gpu2", (0,)),))
    [node] = capacity(cluster, state, [twelve])
    first, second = node.free
    # 8192 - (300 + 5120 + 1024) used - (1536 - 1024) declared but unused - 512 headroom
    assert (first.whole, first.room.room_mib) == (False, 8192 - 6444 - 512 - 512)
    assert str(first.room.holders[0]) == "ollie's python 5.0 GB"
    assert str(first.room.holders[1]) == "job 12 holds 1.5 GB, uses 1.0 GB"
    assert second.whole and second.room.room_mib == 8192 - 300 - 512
    # A 3 GB job: the foreign 5 GB keeps it off the first card; it goes on the second.
    [d] = place([job(13, 3.0)], [node], now=0.0)
    assert d.placement == (("gpu2", (1,)),)
    # A whole-card job never takes the card with ollie's notebook on it.
    [d] = place([job(14)], [node], now=0.0)
    assert d.placement == (("gpu2", (1,)),)


def test_a_card_held_whole_and_a_node_that_does_not_share_offer_nothing_to_sharing_jobs() -> None:
    cluster, state = lab({"gpu1": (sample(0, 300), sample(1, 300))})
    whole = running(job(3), (("gpu1", (0,)),))
    [node] = capacity(cluster, state, [whole])
    assert [g.index for g in node.free] == [1]
    cluster, state = lab({"gpu1": (sample(0, 300),)}, share=False)
    [node] = capacity(cluster, state, [])
    assert node.free[0].whole and node.free[0].room is None
    [d] = place([job(4, 1.0)], [node], now=0.0)
    assert d.placement is None and "no card may be shared now" in d.reason


def test_a_waiting_jobs_reason_is_in_numbers() -> None:
    ollie = GpuProcess(4242, "ollie", "python", round(4.2 * GB))
    cluster, state = lab({"gpu2": (sample(0, 300 + round(4.2 * GB), procs=(ollie,)),)})
    twelve = running(job(12, 0.5), (("gpu2", (0,)),))
    [node] = capacity(cluster, state, [twelve])
    [d] = place([job(13, 4.0)], [node], now=0.0)
    assert d.reason == ("needs 4.0 GB on 1 GPU; best: gpu2:0 has 2.5 GB free (ollie's python 4.2 GB, "
                        "job 12 holds 0.5 GB)")
    [d] = place([job(14, 9.0)], [node], now=0.0)
    assert d.reason == ("can never fit on this cluster: needs 9.0 GB on 1 GPU; the largest card is gpu2's, 8.0 GB "
                        "(0.5 GB of it kept free)")


def test_two_jobs_placed_in_one_round_share_by_what_is_left_and_a_third_waits() -> None:
    cluster, state = lab({"gpu2": (sample(0, 310),)})
    [node] = capacity(cluster, state, [])
    decisions = place([job(1, 3.0, t=1), job(2, 3.0, t=2), job(3, 3.0, t=3)], [node], now=9.0)
    assert [d.placement for d in decisions] == [(("gpu2", (0,)),), (("gpu2", (0,)),), None]
    assert "best: gpu2:0 has 1.2 GB free (job 1 holds 3.0 GB, job 2 holds 3.0 GB)" in decisions[2].reason


def test_too_big_names_the_largest_card() -> None:
    spec = job(1, 12.0).spec
    cards = [("gpu-master", 0, 12227), ("gpu1", 0, 8188)]
    assert sharing.too_big(spec, cards, 512) == ("--gpu-mem 12: 12.0 GB is more than any card holds; the largest is "
                                                 "gpu-master:0 with 11.9 GB, 0.5 GB of it kept free")
    assert sharing.too_big(job(1, 11.0).spec, cards, 512) is None
    assert sharing.too_big(spec, [], 512) is None  # no card known yet: the dispatcher says it


def test_over_use_is_told_after_three_samples_in_a_row_once() -> None:
    watch = sharing.OverUseWatch()
    jobs = {7: running(job(7, 1.0), (("gpu1", (0,)),))}
    over = (sample(0, 2000, procs=(GpuProcess(99, "me", "python", 1200, ugro_job=7),)),)
    under = (sample(0, 1000, procs=(GpuProcess(99, "me", "python", 1100, ugro_job=7),)),)
    assert watch.observe("gpu1", 1.0, over, jobs) == []
    assert watch.observe("gpu1", 1.0, over, jobs) == []  # the same sample again counts once
    assert watch.observe("gpu1", 2.0, over, jobs) == []
    [told] = watch.observe("gpu1", 3.0, over, jobs)
    assert str(told) == ("a rank on gpu1:0 (pid 99) uses 1.2 GB, over its declared 1.0 GB by more than 10% "
                         "for 3 samples")
    assert watch.observe("gpu1", 4.0, over, jobs) == []  # told once
    assert watch.observe("gpu1", 5.0, under, jobs) == []  # within 10%: the count starts over
    assert [watch.observe("gpu1", t, over, jobs) for t in (6.0, 7.0)] == [[], []]


def test_an_out_of_memory_diagnosis_names_the_cards_sharers() -> None:
    ollie = GpuProcess(4242, "ollie", "python", 2 * GB)
    other = GpuProcess(77, "me", "python", 3 * GB, ugro_job=8)
    cluster, state = lab({"gpu2": (sample(0, 7 * GB, procs=(ollie, other)),)})
    seven = running(job(7, 2.0), (("gpu2", (0,)),))
    eight = running(job(8, 3.0), (("gpu2", (0,)),))
    failed = dataclasses.replace(seven, state=JobState.FAILED,
                                 diagnosis="CUDA out of memory; rank 0 failed with exit code 1 — lower the batch")

    class Store:
        pass

    watch = MemoryWatch(Store(), state)  # type: ignore[arg-type]
    told = diagnose_shared(failed, seven, {7: seven, 8: eight}, watch)
    assert told.diagnosis == ("CUDA out of memory; rank 0 failed with exit code 1; the card was shared with job 8 "
                              "holds 3.0 GB, uses 3.0 GB on gpu2:0, ollie's python 2.0 GB on gpu2:0 — lower the batch")
    assert diagnose_shared(failed, failed, {}, watch) is failed  # said once


def test_status_json_gives_each_gpu_its_sharers() -> None:
    doc = {"nodes": [{"name": "gpu2", "gpus": [{"index": 0}, {"index": 1}]}]}
    jobs = [running(job(3, 2.0), (("gpu2", (0,)),)), running(job(4, 1.5), (("gpu2", (0,)),)),
            running(job(5), (("gpu2", (1,)),))]
    gpus = sharing.annotate(doc, jobs)["nodes"][0]["gpus"]
    assert gpus == [{"index": 0, "shared_by": [3, 4], "declared_mib": 3584},
                    {"index": 1, "shared_by": [], "declared_mib": 0}]


@pytest.mark.parametrize(("text", "want"), [("", (None, False)), ("3", (3.0, False)), ("2.5 enforce", (2.5, True))])
def test_the_form_takes_gb_per_rank(text: str, want: tuple) -> None:
    result = check(FormValues(script="train.py", gpu_mem=text), Cluster(nodes=(Node("a", "127.0.0.2"),)))
    assert result.spec is not None and (result.spec.gpu_mem_gb, result.spec.gpu_mem_enforce) == want


@pytest.mark.parametrize("text", ["0", "-1", "abc", "3 always"])
def test_the_form_refuses_a_bad_gpu_mem(text: str) -> None:
    result = check(FormValues(script="train.py", gpu_mem=text), Cluster(nodes=(Node("a", "127.0.0.2"),)))
    assert result.spec is None and "GPU mem per rank" in result.errors["gpu_mem"]


def test_a_sharing_jobs_env_carries_its_share() -> None:
    from ugro_tui.core.jobs.planner import plan

    cluster = Cluster(nodes=(Node("a", "127.0.0.2"),))
    placed = running(job(1, 2.5), (("a", (0,)),))
    [p] = plan(placed, cluster, 29500)
    assert "export UGRO_GPU_MEM_GB=2.5;" in p.script or "UGRO_GPU_MEM_GB=2.5" in p.script


def test_memory_watch_stops_an_enforced_job_and_warns_otherwise(tmp_path, monkeypatch) -> None:
    from ugro_tui.core.jobs.async_store import AsyncJobStore
    from ugro_tui.core.jobs.store import JobStore

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    store = JobStore()
    [a, b] = store.submit([dataclasses.replace(job(0, 1.0).spec, name="warned"),
                           dataclasses.replace(job(0, 1.0).spec, name="stopped", gpu_mem_enforce=True)])
    for j, gpu in ((a, 0), (b, 1)):
        store.move(j.id, JobState.STARTING, placement=(("gpu1", (gpu,)),))
        store.move(j.id, JobState.RUNNING)
    cluster, state = lab({"gpu1": (sample(0, 2000), sample(1, 2000))})
    watch = MemoryWatch(AsyncJobStore(store), state)

    async def rounds() -> None:
        for t in (1.0, 2.0, 3.0):
            state.nodes["gpu1"].gpus = tuple(
                sample(i, 2000, procs=(GpuProcess(100 + i, "me", "python", 1500, ugro_job=j.id),))
                for i, j in enumerate((a, b)))
            state.nodes["gpu1"].received_at = t
            await watch.observe({j.id: j for j in store.active()})

    asyncio.run(rounds())
    warned, stopped = store.get(a.id), store.get(b.id)
    assert warned.warning.startswith("a rank on gpu1:0 (pid 100) uses 1.5 GB") and not warned.stop
    assert stopped.stop.startswith("stopped by --gpu-mem-enforce: a rank on gpu1:1") and not stopped.warning
    from ugro_tui.core.jobs import events

    assert any("warning: a rank on gpu1:0" in text for _, text in events.read(a.id))


def test_a_starving_job_holds_only_what_it_needs() -> None:
    """A whole-card job that waited too long holds as many nodes as it needs, the nearest to fitting it; a sharing
    one keeps its memory on the roomiest card, and the rest of that card stays open to later jobs."""
    nodes = [NodeCapacity("gpu-master", (), (card(0, 2 * GB, False),), 1, 12 * GB),
             NodeCapacity("gpu1", (), (card(0, 5 * GB, False),), 1, 8 * GB),
             NodeCapacity("gpu2", (), (card(0, 1 * GB, False),), 1, 8 * GB)]
    whole, small = job(1, t=0.0), job(2, 1.0, t=5.0)
    [held, placed] = place([whole, small], nodes, now=1000.0)
    assert held.placement is None and held.reserved == ("gpu-master",)  # ties: config order, one node is enough
    assert placed.placement == (("gpu2", (0,)),)  # the tightest card of the two still open
    big, later = job(3, 4.0, t=0.0), job(4, 1.0, t=5.0)
    nodes[1] = NodeCapacity("gpu1", (), (card(0, 3 * GB, False),), 1, 8 * GB)
    [kept, fits] = place([big, later], nodes, now=1000.0)
    assert kept.placement is None and "so gpu1:0 keeps 4.0 GB for it" in kept.reason
    assert fits.placement == (("gpu2", (0,)),)


def test_a_foreign_process_that_grows_on_a_shared_card_is_named_never_stopped(tmp_path, monkeypatch) -> None:
    from ugro_tui.core.jobs.async_store import AsyncJobStore
    from ugro_tui.core.jobs.store import JobStore

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    store = JobStore()
    [a] = store.submit([job(0, 3.0).spec])
    store.move(a.id, JobState.STARTING, placement=(("gpu2", (0,)),))
    store.move(a.id, JobState.RUNNING)
    mine = GpuProcess(100, "me", "python", 1 * GB, ugro_job=a.id)
    cluster, state = lab({"gpu2": (sample(0, 300 + 1 * GB, procs=(mine,)),)})
    watch = MemoryWatch(AsyncJobStore(store), state)

    async def sample_at(t: float, foreign_mib: int) -> None:
        ollie = GpuProcess(4242, "ollie", "python", foreign_mib)
        state.nodes["gpu2"].gpus = (sample(0, 300 + 1 * GB + foreign_mib, procs=(mine, ollie)),)
        state.nodes["gpu2"].received_at = t
        await watch.observe({j.id: j for j in store.active()})

    asyncio.run(sample_at(1.0, 4 * GB))  # 300 + 1024 + 4096 used, 2048 declared but unused: 8192 holds it
    assert store.get(a.id).warning == ""
    asyncio.run(sample_at(2.0, 6 * GB))  # 300 + 1024 + 6144 + 2048 > 8192
    assert store.get(a.id).warning == ("gpu2:0 is 1.3 GB short of what its jobs declared: ollie's python 6.0 GB "
                                       "(ugro does not stop processes it did not start)")
    assert store.get(a.id).state is JobState.RUNNING and not store.get(a.id).stop


def test_two_jobs_started_at_once_on_one_node_get_rendezvous_ports_of_their_own(tmp_path, monkeypatch) -> None:
    """Two jobs placed in one round on one shared card start concurrently, before either stored its rendezvous:
    the second must not be handed the first one's port (its torchrun would join the other job's store)."""
    from ugro_tui.core.jobs.launcher import SshLauncher
    from ugro_tui.core.jobs.store import JobStore
    from ugro_tui.core.pool import Pool

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    store = JobStore()
    cluster = Cluster(nodes=(Node("a", "127.0.0.2"), Node("b", "127.0.0.3")), rendezvous_ports=(29500, 29509))
    plain = dataclasses.replace(job(0).spec, kind="command")
    jobs = store.submit([job(0, 1.0).spec, job(0, 1.0).spec, job(0, 1.0).spec, job(0, 1.0).spec, job(0).spec, plain])
    later, elsewhere, command, jobs = jobs[3], jobs[4], jobs[5], jobs[:3]
    for j in jobs:
        store.move(j.id, JobState.STARTING, placement=(("a", (0,)),))
    for j, node in ((elsewhere, "b"), (command, "a")):
        store.move(j.id, JobState.STARTING, placement=((node, (1,)),))
    launcher = SshLauncher(cluster, store, Pool(cluster))

    async def pick() -> list[int]:
        return list(await asyncio.gather(*(launcher.free_port(store.get(j.id)) for j in jobs)))

    ports = asyncio.run(pick())
    assert len(set(ports)) == 3, ports
    assert sorted(ports) == [29500, 29501, 29502]
    # Cluster-wide (the store listens on every interface; two entries may be one machine); a plain command
    # needs none, and takes none from the others.
    assert asyncio.run(launcher.free_port(store.get(elsewhere.id))) == 29503
    assert asyncio.run(launcher.free_port(store.get(command.id))) == 29500
    store.move(jobs[0].id, JobState.CANCELLED, reason="cancelled")  # an ended job's port is free again
    later = store.move(later.id, JobState.STARTING, placement=(("a", (0,)),))
    assert asyncio.run(launcher.free_port(later)) == ports[0]
