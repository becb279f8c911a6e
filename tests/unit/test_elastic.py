"""Elastic torchrun jobs, the pure parts: the node count, placement on MIN to MAX nodes, the torchrun command, the
nodes an elastic job goes on without, the node it grows onto, and the rank logs read across torchrun's restarts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ugro_tui.config import parse_cluster
from ugro_tui.core.jobs.elastic import grow_choices, without
from ugro_tui.core.jobs.form import FormValues, check
from ugro_tui.core.jobs.logs import fetch_script, parse_frames
from ugro_tui.core.jobs.model import Job, JobSpec, JobState, NodeRun, spec_type_problem
from ugro_tui.core.jobs.nodecount import parse_nnodes
from ugro_tui.core.jobs.placement import FreeGpu, NodeCapacity, place
from ugro_tui.core.jobs.planner import plan
from ugro_tui.errors import UsageError

CLUSTER = parse_cluster({"nodes": [{"name": f"n{i}", "host": f"127.0.0.{i + 2}"} for i in range(3)]})
ELASTIC = JobSpec("e", ("train.py",), nnodes=3, nnodes_min=2)


def test_node_counts_and_their_bad_input() -> None:
    assert parse_nnodes("3") == (0, 3) and parse_nnodes("2:3") == (2, 3) and parse_nnodes(4) == (0, 4)
    for bad, says in (("3:2", "MIN is more than MAX"), ("0:2", "MIN must be 1 or more"), ("a:b", "expected"),
                      ("2:", "expected"), ("0", "expected 1 or more nodes")):
        with pytest.raises(UsageError, match=says):
            parse_nnodes(bad)
    assert spec_type_problem(JobSpec("e", ("x",), nnodes=2, nnodes_min=3)) == "nnodes: 3:2: MIN must be 1 to MAX"
    assert "is for torchrun jobs" in (spec_type_problem(JobSpec("e", ("x",), kind="command", nnodes=2,
                                                                nnodes_min=1)) or "")


def test_it_starts_on_min_nodes_and_takes_up_to_max() -> None:
    nodes = [NodeCapacity(f"n{i}", (), (FreeGpu(0, 8000),), 1, 8192) for i in range(2)]
    [d] = place([Job(1, ELASTIC)], nodes, now=0.0)
    assert d.placement == (("n0", (0,)), ("n1", (0,)))
    busy = [nodes[0], NodeCapacity("n1", (), (), 1, 8192)]
    [d] = place([Job(1, ELASTIC)], busy, now=0.0)
    assert d.placement is None and d.reason.startswith("needs 2 to 3 nodes with 1 free GPU"), d.reason
    [d] = place([Job(1, ELASTIC)], nodes[:1], now=0.0)
    assert d.reason.startswith("can never fit on this cluster")


def test_the_torchrun_command_of_an_elastic_job() -> None:
    job = Job(7, ELASTIC, placement=(("n0", (0,)), ("n1", (0,))), attempt=1)
    first, second = plan(job, CLUSTER, 29500)
    assert "--nnodes 2:3" in first.script and "--max-restarts 3" in first.script
    assert "is_host=true" in first.script and "is_host=false" in second.script
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" in first.script
    fixed = plan(Job(8, JobSpec("f", ("train.py",), nnodes=2), placement=job.placement, attempt=1), CLUSTER, 29500)
    assert "--max-restarts 0" in fixed[0].script and "--nnodes 2 " in fixed[0].script
    assert "rdzv-conf" not in fixed[0].script


def test_it_goes_on_without_a_node_while_min_remain_and_never_without_the_rendezvous_host() -> None:
    runs = tuple((f"n{i}", NodeRun(pid=10 + i)) for i in range(3))
    job = Job(1, ELASTIC, state=JobState.RUNNING, placement=tuple((f"n{i}", (0,)) for i in range(3)), runs=runs)
    smaller = without(job, {"n2"})
    assert smaller is not None and [n for n, _ in smaller.placement] == ["n0", "n1"] and len(smaller.runs) == 2
    assert without(job, {"n0"}) is None  # it hosts the rendezvous store
    assert without(job, {"n1", "n2"}) is None  # below MIN
    assert without(Job(2, JobSpec("f", ("x",), nnodes=3), placement=job.placement), {"n2"}) is None


def test_it_grows_onto_a_free_node_it_is_not_on_unless_that_node_is_still_to_be_swept() -> None:
    job = Job(1, ELASTIC, state=JobState.RUNNING, placement=(("n0", (0,)), ("n1", (0,))))
    free = {"n0": [(1, 8000)], "n1": [], "n2": [(0, 8000)]}
    [(grown, node, gpus)] = grow_choices([job], dict(free), {1: {"n0", "n1", "n2"}}, set())
    assert (grown.id, node, gpus) == (1, "n2", (0,))
    assert grow_choices([job], dict(free), {1: {"n0", "n1", "n2"}}, {(1, "n2")}) == []
    full = Job(2, ELASTIC, state=JobState.RUNNING, placement=(("n0", (0,)), ("n1", (0,)), ("n2", (0,))))
    assert grow_choices([full], {"n3": [(0, 8000)]}, {2: {"n3"}}, set()) == []
    big = Job(3, JobSpec("b", ("x",), nnodes=3, nnodes_min=2, min_gpu_mem_gb=10), state=JobState.RUNNING,
              placement=job.placement)
    assert grow_choices([big], dict(free), {3: {"n2"}}, set()) == []  # n2's card has too little free


def test_the_form_takes_min_max_nodes() -> None:
    done = check(FormValues(script="train.py", nnodes="2:3"), CLUSTER)
    assert done.spec is not None and (done.spec.nnodes_min, done.spec.nnodes) == (2, 3), done.errors
    bad = check(FormValues(script="train.py", nnodes="3:2"), CLUSTER)
    assert bad.spec is None and "MIN is more than MAX" in bad.errors["nnodes"]
    assert Job(1, done.spec, placement=(("n0", (0,)),)).to_json()["elastic"] == {
        "nnodes_min": 2, "nnodes_max": 3, "nodes": 1}
    from ugro_tui.core.jobs.describe import shape

    assert shape(Job(1, done.spec)) == "2:3×1"


def test_rank_logs_read_every_restart_as_one_stream_even_when_torchrun_rewrites_one(tmp_path: Path) -> None:
    first = tmp_path / "torchrun" / "ugro-1-1_x" / "attempt_0" / "0"
    second = first.parent.parent / "attempt_1" / "0"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    (first / "stdout.log").write_text("step 0\nstep 1\n")
    (second / "stdout.log").write_text("resumed with 2 ranks\n")

    def fetch(offset: int) -> bytes:
        out = subprocess.run(["sh", "-c", fetch_script(str(tmp_path), {"console": 0, "0.stdout": offset})],
                             capture_output=True, check=True).stdout
        return dict(parse_frames(out))["0.stdout"]

    got = fetch(0)
    assert got == b"step 0\nstep 1\nresumed with 2 ranks\n"
    (second / "stdout.log").write_text("with 3\n")  # a node joined: torchrun reused the folder
    again = fetch(len(got))
    assert again == b"with 3\n"
    (second / "stdout.log").write_text("with 3\nstep 9\n")
    assert fetch(len(got) + len(again)) == b"step 9\n"
