"""Real torchrun (gloo on the CPU) across the loopback sshd cluster, through `ugro submit` and `ugro scheduler`."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import SIM3, private_lab
from ..helpers import host, job, job_processes, logs, needs_torch, ugro, wait

needs_torch()
pytestmark = pytest.mark.timeout(300)
TINY = str(Path(__file__).resolve().parents[2] / "examples" / "train_tiny.py")


@pytest.fixture
def config(lab: LoopbackCluster, tmp_path: Path):
    with private_lab(lab, tmp_path) as path:
        yield path


def scheduler(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ugro_tui", "scheduler", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def steps(text: str) -> list[tuple[int, float]]:
    return [(int(a), float(b)) for a, b in re.findall(r"^step (\d+) loss ([0-9.e+-]+)$", text, re.MULTILINE)]


def processes_of(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "stat=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and not line.lstrip().startswith("Z")]


def test_three_node_job_succeeds_every_rank_logs_and_loss_falls(config: Path) -> None:
    assert ugro(config, "submit", "--nnodes", "3", "--name", "tiny", "--", TINY, "--steps", "30").stdout == "1\n"
    done = ugro(config, "scheduler", "--until-idle", timeout=240)
    assert done.returncode == 0, done.stderr
    j = job(config, 1)
    assert j["state"] == "succeeded", j
    assert sorted(j["placement"]) == ["node0", "node1", "node2"]
    assert (j["progress"]["step"], j["progress"]["total"]) == (29, 30), j["progress"]  # `--steps 30`, steps 0-29
    for rank in range(3):
        lines = steps(ugro(config, "logs", "1", "--rank", str(rank)).stdout)
        assert [s for s, _ in lines] == list(range(30)), f"rank {rank}"
        first, last = lines[0][1], lines[-1][1]
        assert last < first / 4, f"rank {rank}: loss {first} -> {last}"
    everything = ugro(config, "logs", "1").stdout
    assert "[rank0]:done: 3 ranks" in everything
    assert logs(config, 1) == everything and logs(config, 1, rank=2) == ugro(config, "logs", "1", "--rank", "2").stdout
    assert logs(config, 1, node="node1") == ugro(config, "logs", "1", "--node", "node1").stdout  # as tests read it


def test_progress_eta_and_a_waiting_jobs_start_estimate_then_cancel_mid_run_leaves_no_process(config: Path) -> None:
    marker = "--steps 100000 --sleep 0.05 --lr 0.01"
    ugro(config, "submit", "--nnodes", "2", "--", TINY, *marker.split())
    sched = scheduler(config)
    try:
        wait(lambda: len(steps(logs(config, 1, rank=1))) >= 3, 90, "training to start")
        assert processes_of(marker)
        # Its progress, from its own lines over `--steps 100000`, with an ETA from the recent rate.
        wait(lambda: (job(config, 1).get("progress") or {}).get("eta"), 60, "an ETA")
        p = job(config, 1)["progress"]
        assert p["total"] == 100000 and 0 < p["step"] < 100000 and p["rate"] > 0, p
        assert p["eta"] > time.time() + (100000 - p["step"]) / p["rate"] / 2, p
        assert re.search(r"\b0% · ETA \d\d:\d\d\b", ugro(config, "queue").stdout)
        assert "progress   : 0% · ETA" in ugro(config, "show", "1").stdout
        # A job that needs two nodes waits for job 1 (one node is free): its start is estimated from job 1's ETA.
        ugro(config, "submit", "--nnodes", "2", "--name", "next", "--", TINY, "--steps", "5")
        wait(lambda: "(estimate)" in job(config, 2)["reason"], 30, "job 2's start estimate")
        assert re.search(r"starts ≈ (\w{3} \d\d )?\d\d:\d\d \(estimate\)", job(config, 2)["reason"])
        assert ugro(config, "cancel", "1").returncode == 0
        wait(lambda: job(config, 1)["state"] == "cancelled", 30, "the cancel")
        wait(lambda: not processes_of(marker), 10, "every process on every node to end")
    finally:
        sched.kill()
        sched.wait()


def test_killing_one_nodes_ranks_fails_the_job_and_tears_down_the_rest(config: Path) -> None:
    marker = "--steps 100000 --sleep 0.05 --lr 0.02"
    ugro(config, "submit", "--nnodes", "3", "--", TINY, *marker.split())
    sched = scheduler(config)
    try:
        wait(lambda: len(steps(logs(config, 1, rank=2))) >= 3, 90, "training to start",
             detail=lambda: (job(config, 1), ugro(config, "logs", "1").stdout[-2000:]))
        victim = job(config, 1)["placement"]
        node = sorted(victim)[1]
        # The worker processes (not torchrun's agent) on that node: UGRO_NODE in their environment says where.
        killed = 0
        for pid in job_processes(1, node):
            try:  # a process that ended after it was listed is not one to kill
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"train_tiny.py" in cmd and b"torch.distributed.run" not in cmd:
                subprocess.run(["kill", "-9", str(pid)])
                killed += 1
        assert killed >= 1
        wait(lambda: job(config, 1)["state"] == "failed", 90, "the job to fail")
        j = job(config, 1)
        assert node in j["reason"] and "exited" in j["reason"]
        assert j["diagnosis"] and "failed with exit code" in j["diagnosis"]
        wait(lambda: not processes_of(marker), 30, "the other nodes to be torn down")
        shown = ugro(config, "show", "1").stdout
        assert "diagnosis" in shown
    finally:
        sched.kill()
        sched.wait()


def test_restarting_the_dispatcher_reattaches_without_duplicate_lines(config: Path) -> None:
    ugro(config, "submit", "--nnodes", "2", "--", TINY, "--steps", "60", "--sleep", "0.1")
    first = scheduler(config)
    try:
        wait(lambda: len(steps(logs(config, 1, rank=0))) >= 8, 90, "some steps")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert job(config, 1)["state"] == "running"  # the job outlives its dispatcher
    done = ugro(config, "scheduler", "--until-idle", timeout=240)
    assert done.returncode == 0, done.stderr
    assert job(config, 1)["state"] == "succeeded"
    for rank in (0, 1):
        assert [s for s, _ in steps(ugro(config, "logs", "1", "--rank", str(rank)).stdout)] == list(range(60))


def test_rendezvous_failure_is_diagnosed(lab: LoopbackCluster, tmp_path: Path) -> None:
    """Something else answers on the rendezvous port: the ranks cannot reach the store, and ugro says so."""
    import socket
    import threading

    from ..helpers import free_ports

    port = free_ports(1, (host(2),))
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host(2), port))
    server.listen()
    stop = threading.Event()

    def slam() -> None:  # accept and close at once, like a wrong service on that port
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                pass

    threading.Thread(target=slam, daemon=True).start()
    config = tmp_path / "cluster.toml"
    config.write_text(lab.cluster_toml(sim=SIM3, poll_interval=0.5, rendezvous=(port, port)).replace(
        # The nodes give up on the store after 10 s, not torch's 60: only long for the test's sake.
        "[cluster]\n", "[cluster]\nrendezvous_timeout = 10\n"
    ).replace(
        str(lab.root / "work"), str(tmp_path / "lab-work")))
    try:
        ugro(config, "submit", "--nnodes", "2", "--", TINY, "--steps", "5")
        done = ugro(config, "scheduler", "--until-idle", timeout=240)
        assert done.returncode == 0, done.stderr
        j = job(config, 1)
        assert j["state"] == "failed"
        assert j["diagnosis"] and ("rendezvous" in j["diagnosis"] or "port" in j["diagnosis"]), j["diagnosis"]
    finally:
        stop.set()
        server.close()


PIECES = str(Path(__file__).resolve().parents[1] / "fixtures" / "jobs" / "rank_pieces.py")


def test_rank_logs_are_exact_however_ranks_split_their_writes(config: Path) -> None:
    """3 nodes x 2 ranks, each line written in 3 pieces and a \\r progress bar: every line once, whole, in order."""
    from ugro_tui.core.jobs.logs import CopyReader, RankDemux
    from ugro_tui.core.jobs.model import Job, JobSpec

    assert ugro(config, "submit", "--nnodes", "3", "--nproc-per-node", "2", "--gpus-per-node", "0",
                "--", PIECES, "30").returncode == 0
    done = ugro(config, "scheduler", "--until-idle", timeout=240)
    assert done.returncode == 0, done.stderr
    j = job(config, 1)
    assert j["state"] == "succeeded", j
    bar = "".join(f"\rprogress {i}/{k}" for i in range(30) for k in range(3)) + "\n"
    for rank in range(6):
        out = subprocess.run([sys.executable, "-m", "ugro_tui", "logs", "--config", str(config), "1", "--rank",
                              str(rank)], capture_output=True, timeout=60).stdout.decode()  # bytes: \r stays \r
        lines = out.split("\n")
        want = [f"step {i} loss {rank}.{i:05d}" for i in range(30)]
        assert [x for x in lines if x.startswith("step")] == want, f"rank {rank}: {out!r}"
        assert bar in out, f"rank {rank}: the progress bar is not byte-exact"
        assert f"done rank {rank}\n" in out
        assert "[rank" not in out  # no piece of another rank's stream
    everything = ugro(config, "logs", "1").stdout
    assert sum(line.startswith("[rank3]:step ") for line in everything.splitlines()) == 30
    # What the panes show: the same copies through the demux; the progress bar is one line in its last state.
    spec = JobSpec("x", ("x",))
    reader, demux = CopyReader(Job(1, spec, attempt=1)), RankDemux()
    for node in j["placement"]:
        for source, data in reader.read_new(node):
            demux.feed(source, data)
    demux.flush()
    assert sorted(demux.ranks) == list(range(6))
    for rank, stream in demux.ranks.items():
        assert [x for x in stream.lines if x.startswith("step")] == [
            f"step {i} loss {rank}.{i:05d}" for i in range(30)]
        assert "progress 29/2" in stream.lines and not any(x.startswith("progress 0/") for x in stream.lines)
    assert not any(x.startswith("[rank") for s in demux.nodes.values() for x in s.lines)
