"""Yielding a desktop's GPUs: the watch that sees a process ugro did not start, the file that keeps the yields, the
placement that skips yielded cards and names them, and the command's bad input in one line."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ugro_tui.config import ConfigError, parse_cluster
from ugro_tui.core.jobs.async_store import AsyncJobStore
from ugro_tui.core.jobs.model import Job, JobSpec, JobState
from ugro_tui.core.jobs.placement import capacity, place
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.jobs.yield_actions import unyield_cards, yield_cards
from ugro_tui.core.jobs.yield_watch import YieldWatch
from ugro_tui.core.jobs.yields import Yield, YieldBook, give_back, take
from ugro_tui.core.telemetry.model import ClusterState, GpuProcess, GpuSample, NodeState
from ugro_tui.errors import UsageError

CONFIG = {"cluster": {"yield_after": 20, "yield_idle_minutes": 5},
          "nodes": [{"name": "desk", "host": "127.0.0.1", "desktop": True, "user": "ollie"},
                    {"name": "rack", "host": "127.0.0.2"}]}


def gpu(index: int, *procs: GpuProcess) -> GpuSample:
    used = sum(p.used_mib or 0 for p in procs)
    return GpuSample(index, None, "RTX 4070", 0.0, used, 12282, 40.0, 50.0, 200.0, 0.0, procs)


def state_with(sampled: float, **gpus: tuple[GpuSample, ...]) -> ClusterState:
    state = ClusterState([("desk", "127.0.0.1"), ("rack", "127.0.0.2")])
    for name, cards in gpus.items():
        status = state.nodes[name]
        status.state, status.gpus, status.received_at = NodeState.ONLINE, cards, sampled
    return state


def running(job_id: int, node: str, gpu_index: int, preemptible: bool) -> Job:
    return Job(job_id, JobSpec(f"j{job_id}", ("x.py",), preemptible=preemptible), state=JobState.RUNNING,
               placement=((node, (gpu_index,)),), started_at=1.0)


def test_the_config_keys_and_their_bad_values() -> None:
    cluster = parse_cluster(CONFIG)
    assert cluster.node("desk").desktop and not cluster.node("rack").desktop
    assert (cluster.yield_min_mib, cluster.yield_after, cluster.yield_idle_minutes) == (512, 20.0, 5.0)
    for key, bad in (("yield_min_mib", -1), ("yield_after", "soon"), ("yield_idle_minutes", True)):
        with pytest.raises(ConfigError, match=key):
            parse_cluster({**CONFIG, "cluster": {key: bad}})
    with pytest.raises(ConfigError, match="desktop"):
        parse_cluster({"nodes": [{"name": "a", "host": "127.0.0.1", "desktop": "yes"}]})


def test_a_foreign_process_yields_the_card_after_a_while_and_it_comes_back_after_the_idle_time(
        tmp_path: Path) -> None:
    cluster = parse_cluster(CONFIG)
    store = JobStore(tmp_path / "jobs")
    now = [1000.0]
    game = GpuProcess(4242, "ollie", "/usr/games/game", 2048)
    state = state_with(now[0], desk=(gpu(0, game), gpu(1)))
    watch = YieldWatch(lambda: cluster, AsyncJobStore(store), state, clock=lambda: now[0])
    jobs = {1: running(1, "desk", 0, True), 2: running(2, "desk", 1, True)}
    assert asyncio.run(watch.observe(jobs)) == []  # seen, not yet for yield_after
    now[0] += 21
    state.nodes["desk"].received_at = now[0]
    [y] = asyncio.run(watch.observe(jobs))
    assert (y.node, y.gpus, y.to, y.auto) == ("desk", (0,), "ollie", True)
    assert y.why == "ollie's game took 2.0 GB on desk:0"
    assert y.describe(300) == "yielded to ollie while its process runs"
    assert YieldBook(store.root).read() == [y]  # kept for the next daemon
    caps = capacity(cluster, state, list(jobs.values()), [y])
    assert [g.index for g in caps[0].free] == [] and caps[0].held == ((1, 12282),)  # never a victim's card either
    assert caps[0].claims == ((0, "yielded to ollie while its process runs"),)
    now[0] += 1
    state.nodes["desk"].gpus, state.nodes["desk"].received_at = (gpu(0), gpu(1)), now[0]  # the game ended
    [y] = asyncio.run(watch.observe(jobs))
    assert y.gone_at == now[0] and y.describe(300).startswith("yielded to ollie until ")
    now[0] += 301
    state.nodes["desk"].received_at = now[0]
    assert asyncio.run(watch.observe(jobs)) == [] and YieldBook(store.root).read() == []


def test_jobs_on_a_yielded_card_make_way_preemptible_ones_always_others_only_when_forced(tmp_path: Path) -> None:
    cluster = parse_cluster(CONFIG)
    store = JobStore(tmp_path / "jobs")
    spec = JobSpec("x", ("x.py",))
    ids = [j.id for j in store.submit([dataclasses.replace(spec, preemptible=True), spec, spec])]
    for job_id, gpu_index in zip(ids, (0, 1, 0), strict=True):
        where = (("desk" if job_id < 3 else "rack", (gpu_index,)),)
        store.move(job_id, JobState.STARTING, reason="starting", placement=where)
        store.move(job_id, JobState.RUNNING, reason="running")
    state = state_with(5.0, desk=(gpu(0), gpu(1)), rack=(gpu(0),))
    watch = YieldWatch(lambda: cluster, AsyncJobStore(store), state, clock=lambda: 5.0)
    YieldBook(store.root).change(lambda ys: take(ys, Yield("desk", (), "ob", 1.0, why="by hand")))
    asyncio.run(watch.observe({j.id: j for j in store.active()}))
    first, second, third = (store.get(i) for i in ids)
    assert first.preempt == "desk (every GPU) yielded to ob (by hand)" and not second.stop and not third.stop
    YieldBook(store.root).change(lambda ys: take(ys, Yield("desk", (1,), "ob", 1.0, force=True, why="by hand")))
    asyncio.run(watch.observe({j.id: j for j in store.active()}))
    assert store.get(ids[1]).stop == "yielded: desk:1 yielded to ob (by hand)" and not store.get(ids[2]).stop


def test_the_yields_file_survives_damage_and_give_back_takes_some_cards(tmp_path: Path) -> None:
    book = YieldBook(tmp_path)
    book.path.write_text("{half")
    assert book.read() == [] and "set aside" in book.problem and not book.path.exists()
    book.path.write_text(json.dumps([{"node": "desk"}, {"node": "desk", "gpus": [0, 1], "to": "ob", "since": 1}]))
    [kept] = book.read()
    assert kept.gpus == (0, 1)
    assert give_back([kept], "desk", (1,)) == [dataclasses.replace(kept, gpus=(0,))]
    assert give_back([kept], "desk") == [] and give_back([kept], "rack") == [kept]


def test_a_waiting_job_names_the_yield_and_never_preempts_for_a_yielded_card(tmp_path: Path) -> None:
    cluster = parse_cluster(CONFIG)
    state = state_with(5.0, desk=(gpu(0),))
    y = Yield("desk", (0,), "ollie", 1.0, until=4_000_000_000.0, why="by hand")
    low = running(1, "desk", 0, True)
    high = Job(2, JobSpec("urgent", ("x.py",), priority=5, nodes=("desk",)), submitted_at=2.0)
    [d] = place([high], capacity(cluster, state, [low], [y]), now=10.0, running=[low])
    assert d.placement is None and d.preempt == () and "desk:0 is yielded to ollie until" in d.reason


def test_yield_and_unyield_by_hand_and_their_bad_input(tmp_path: Path) -> None:
    cluster = parse_cluster(CONFIG)
    store = JobStore(tmp_path / "jobs")
    said = yield_cards(cluster, store, "desk", (0,), span_s=3600, now=1000.0)
    assert said.startswith("desk:0 yielded to ollie until ") and said.endswith("no job runs there; nothing new is "
                                                                               "placed there")
    with pytest.raises(UsageError, match="rack is not a desktop"):
        yield_cards(cluster, store, "rack")
    with pytest.raises(UsageError, match="no node 'nowhere'"):
        yield_cards(cluster, store, "nowhere")
    assert yield_cards(cluster, store, "rack", force=True, to="ob").startswith("rack (every GPU) yielded to ob")
    assert unyield_cards(cluster, store, "desk") == "desk is back in the queue"
    assert unyield_cards(cluster, store, "desk") == "nothing of desk is yielded"
    assert [y.node for y in YieldBook(store.root).read()] == ["rack"]


@pytest.mark.parametrize("argv, says", [
    (["yield", "node0", "--gpus", "a"], "expected GPU indexes such as 0 or 0,1"),
    (["yield", "node0", "--for", "soon"], "expected a time such as 30m, 2h or 1d"),
    (["yield", "node0", "--for=-2h"], "expected a time above 0"),
])
def test_bad_yield_arguments_are_one_line_with_exit_2(argv: list[str], says: str) -> None:
    out = subprocess.run([sys.executable, "-m", "ugro_tui", *argv], capture_output=True, text=True, check=False)
    assert out.returncode == 2 and says in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
