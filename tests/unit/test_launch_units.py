"""The planner, rank demux and diagnosis: pure parts of launching, tested without a cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ugro_tui.core.jobs.diagnose import diagnose, root_cause
from ugro_tui.core.jobs.logs import RankDemux, Source
from ugro_tui.core.jobs.model import Job, JobSpec
from ugro_tui.core.jobs.planner import plan

from ..conftest import cluster_from

CLUSTER = cluster_from("""
[[nodes]]
name = "gpu-master"
host = "127.0.0.2"
python = "/opt/conda/envs/torch/bin/python"
socket_ifname = "lo"
env = { OMP_NUM_THREADS = "2" }
[[nodes]]
name = "gpu1"
host = "127.0.0.3"
python = "~/venv/bin/python -X dev"
""")


def placed(spec: JobSpec, placement=(("gpu-master", (0, 1)), ("gpu1", (1,)))) -> Job:
    return Job(42, spec, placement=placement, attempt=1)


def test_torchrun_plan_has_every_flag_and_env() -> None:
    job = placed(JobSpec("t", ("train.py", "--lr", "3e-4"), nnodes=2, nproc_per_node=2, gpus_per_node=2,
                         env=(("WANDB_MODE", "offline"),), checkpoint_dir="/ckpt"))
    first, second = plan(job, CLUSTER, 29517)
    s = first.script
    for part in ("-m torch.distributed.run", "--nnodes 2", "--nproc-per-node 2", "--rdzv-backend c10d",
                 "--rdzv-endpoint 127.0.0.2:29517", "--rdzv-id ugro-42-1", "--max-restarts 0",
                 "--redirects 3 --tee 3", "train.py --lr 3e-4", "/opt/conda/envs/torch/bin/python"):
        assert part in s, part
    assert "--log-dir " in s and "--node-rank" not in s  # meaningless under c10d
    for env in ("CUDA_VISIBLE_DEVICES=0,1", "NCCL_SOCKET_IFNAME=lo", "GLOO_SOCKET_IFNAME=lo",
                "TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE='[rank${rank}.${local_rank}]:'", "OMP_NUM_THREADS=2",
                "WANDB_MODE=offline", "UGRO_CHECKPOINT_DIR=/ckpt"):
        assert f"export {env};" in s, env
    assert "CUDA_VISIBLE_DEVICES=1;" in second.script and "NCCL_SOCKET_IFNAME" not in second.script
    assert '"$HOME"/venv/bin/python -X dev -m torch.distributed.run' in second.script
    assert first.run_dir == "~/ugro/runs/job-42-a1"


weird = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(weird.filter(lambda a: "{resume}" not in a), max_size=5),  # ugro's placeholder (planner._word)
       value=weird, name=weird)
def test_values_reach_the_program_exactly(tmp_path_factory, args: list[str], value: str, name: str) -> None:
    """Shell metacharacters in names, args and env arrive as exactly the argv given, and nothing else runs."""
    root = tmp_path_factory.mktemp("q")
    marker = root / "pwned"
    probe = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['UGRO_PROBE']]))"
    spec = JobSpec(name or "x", (sys.executable, "-c", probe, *args), kind="command",
                   env=(("UGRO_PROBE", value),), workdir=str(root))
    cluster = cluster_from(f'[[nodes]]\nname = "n"\nhost = "localhost"\nworkdir = "{root}"\n')
    [p] = plan(Job(1, spec, placement=(("n", (0,)),), attempt=1), cluster, 29500)
    run_dir = Path(p.run_dir)
    run_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "UGRO_PROBE"}
    done = subprocess.run(["sh", "-c", p.script], capture_output=True, env=env, cwd=root, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [args, value]
    assert (run_dir / "exit").read_text() == "0\n" and not marker.exists()


def test_demux_routes_by_global_rank_and_keeps_partial_lines() -> None:
    console, rank3 = Source("gpu1"), Source("gpu1", 3, "stdout")
    d = RankDemux(max_lines=3)
    assert d.feed(console, b"[rank2.0]:step 1 lo\nINFO torchrun says hi\n[rank2]:old style\n") == [
        ("node:gpu1", "INFO torchrun says hi"), ("rank2", "old style")]  # a tee copy is dropped
    assert d.feed(rank3, b"par") == [] and d.live == {"rank3": "par"}  # a line being written shows
    assert d.feed(rank3, b"tial\n\r10%") == [("rank3", "partial")] and d.live == {"rank3": "10%"}
    assert d.feed(rank3, b"\r50%") == [] and d.live == {"rank3": "50%"}
    assert d.feed(rank3, b"\r100%\n") == [("rank3", "100%")] and d.live == {}
    for i in range(10):
        d.feed(Source("gpu1", 2, "stdout"), f"step {i} loss {1 / (i + 1)}\n".encode())
    assert len(d.ranks[2].lines) == 3  # bounded
    assert list(d.losses)[-1] == (9, 0.1)
    d.feed(rank3, b"no newline")
    assert d.flush() == [("rank3", "no newline")]


CHILD_FAILED = """
[rank1]:torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
train_tiny.py FAILED
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-29_01:02:03
  host      : gpu1
  rank      : 1 (local_rank: 0)
  exitcode  : -9 (pid: 4242)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 4242
============================================================
"""


def test_child_failed_root_cause() -> None:
    assert root_cause(CHILD_FAILED) == "rank 1 failed with exit code -9 (SIGKILL)"
    found = diagnose(CHILD_FAILED, {"gpu1": 1, "gpu-master": 1})
    assert found is not None and found.cause == "rank 1 failed with exit code -9 (SIGKILL)"


def test_the_earliest_root_cause_wins_over_knock_on_failures() -> None:
    """Node order is not time order: rank 2's exit 1 (a knock-on) comes first in the text, rank 1's SIGKILL first
    in time."""
    knock_on = CHILD_FAILED.replace("01:02:03", "01:02:04").replace("rank      : 1", "rank      : 2").replace(
        "exitcode  : -9", "exitcode  : 1").replace("Signal 9 (SIGKILL) received by PID 4242", "<N/A>")
    assert root_cause(knock_on + CHILD_FAILED) == "rank 1 failed with exit code -9 (SIGKILL)"
    assert root_cause(CHILD_FAILED + knock_on) == "rank 1 failed with exit code -9 (SIGKILL)"


def test_each_known_failure_is_named() -> None:
    cases = {
        "[E ProcessGroupNCCL.cpp:475] [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=9, "
        "OpType=ALLREDUCE, Timeout(ms)=600000) ran for 600121 milliseconds before timing out.": "NCCL collective",
        "torch.distributed.elastic.rendezvous.api.RendezvousConnectionError: The connection to the C10d store "
        "has failed.": "rendezvous / store",
        "torch.distributed.DistNetworkError: The server socket has failed to listen on any local network "
        "address. port: 29500, useIpv6: 0, code: -98, name: EADDRINUSE, message: address already in use":
            "port already in use",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB": "CUDA out of memory",
    }
    for text, cause in cases.items():
        found = diagnose(text, {"a": 1})
        assert found is not None and cause in found.cause and found.hint, text


def test_network_error_at_shutdown_with_exit_0_is_benign() -> None:
    text = "torch.distributed.DistNetworkError: failed to recv, got 0 bytes (during shutdown)"
    assert diagnose(text, {"a": 0, "b": 0}) is None
