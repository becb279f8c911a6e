"""Checkpoints on the loopback cluster with real torchrun: retention, resume after a failure, pull, copy to a node."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import FIXTURES, private_lab
from ..helpers import job, needs_torch, ugro, wait

needs_torch()
pytestmark = pytest.mark.timeout(300)
SCRIPT = str(FIXTURES / "jobs" / "ckpt_job.py")


@pytest.fixture
def config(lab: LoopbackCluster, tmp_path: Path):
    with private_lab(lab, tmp_path, ports=3) as path:
        yield path


def on_node(config: Path, node: str) -> Path:
    return config.parent / "lab-work" / node / "ckpt"


def steps_in(text: str) -> list[int]:
    return [int(s) for s in re.findall(r"^step (\d+) loss", text, re.MULTILINE)]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.usefixtures("autostart")  # `ugro checkpoints` asks the daemon it starts
def test_retention_keeps_the_last_two_and_the_best_and_a_pull_matches_every_node(config: Path, tmp_path) -> None:
    done = ugro(config, "submit", "--nnodes", "3", "--checkpoint-dir", "ckpt", "--keep-last", "2", "--keep-best", "1",
                "--", SCRIPT, "--steps", "40", "--save-every", "10", "--leave-partial")
    assert done.returncode == 0, done.stderr
    ran = ugro(config, "scheduler", "--until-idle", timeout=240)
    assert ran.returncode == 0, ran.stderr
    assert job(config, 1)["state"] == "succeeded", job(config, 1)
    for node in ("node0", "node1", "node2"):
        names = sorted(p.name for p in on_node(config, node).iterdir() if p.name.startswith("step-"))
        # 0, 10, 20, 30 and 39 were written; the best (step 20: the loss is lowest there) and the last two stay,
        # and the folder left without its marker is never deleted (it might still be being written).
        assert names == ["step-000020", "step-000030", "step-000039", "step-000090"], (node, names)
    listed = json.loads(ugro(config, "checkpoints", "1", "--json").stdout)["checkpoints"]
    partial = [c for c in listed if c["step"] == 90]
    assert len(partial) == 3 and not any(c["complete"] for c in partial)
    best = [c for c in listed if c["step"] == 20]
    assert all(c["complete"] and abs(c["metric"] - 1.0) < 1e-9 for c in best)
    shown = ugro(config, "show", "1").stdout
    deleted = re.findall(r"deleted checkpoints (.*): keep_last 2, keep_best 1", shown)
    assert deleted and any(re.search(r"step-000010 \([^)]*node1", line) for line in deleted), shown

    to = tmp_path / "pulled"
    pulled = ugro(config, "checkpoints", "1", "--pull", "latest", "--to", str(to))
    assert pulled.returncode == 0, pulled.stderr
    metadata = 0
    for node_rank, node in enumerate(("node0", "node1", "node2")):
        here, there = to / node / "step-000039", on_node(config, node) / "step-000039"
        files = sorted(p.name for p in there.iterdir())
        assert sorted(p.name for p in here.iterdir()) == files
        assert all(sha(here / f) == sha(there / f) for f in files)
        assert f"shard-{node_rank}.bin" in files
        metadata += ".metadata" in files
    assert metadata == 1  # rank 0's node only, as torch.distributed.checkpoint writes it
    again = ugro(config, "checkpoints", "1", "--pull", "latest", "--to", str(to))  # resumable: nothing to fetch
    assert again.returncode == 0 and sha(to / "node1" / "step-000039" / "shard-1.bin") == \
        sha(on_node(config, "node1") / "step-000039" / "shard-1.bin")
    for args, words in ((["--pull", "7"], "no complete checkpoint at step 7"),
                        (["--pull", "x"], "a step number or `latest`"),
                        (["--pull", "latest", "--to", "/proc/nope"], "not writable")):
        bad = ugro(config, "checkpoints", "1", *args)
        assert bad.returncode == 2 and words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_a_failed_attempt_resumes_from_the_newest_complete_checkpoint(config: Path) -> None:
    done = ugro(config, "submit", "--nnodes", "3", "--checkpoint-dir", "ckpt", "--max-retries", "1", "--",
                SCRIPT, "--steps", "60", "--save-every", "10", "--sleep", "0.08", "--fail-once-at", "35")
    assert done.returncode == 0, done.stderr
    ran = ugro(config, "scheduler", "--until-idle", timeout=240)
    assert ran.returncode == 0, ran.stderr
    final = job(config, 1)
    assert final["state"] == "succeeded" and final["attempt"] == 2, final
    # The rank that failed (node rank 1) got to step 35; the others ran on until they were torn down.
    failed = ugro(config, "logs", "1", "--attempt", "1", "--node", "node1").stdout
    assert "failing at step 35 on purpose" in failed, failed[-500:]
    second_log = ugro(config, "logs", "1", "--attempt", "2", "--rank", "0").stdout
    second = steps_in(second_log)
    resumed = re.search(r"resumed from (\S+) at step (\d+)", second_log)
    assert resumed and second[0] == int(resumed.group(2)) and second[-1] == 59, second_log[:500]
    redone = 35 + 1 - second[0]  # steps done again: from where attempt 2 starts to where the failure was
    assert second[0] == 31 and 0 < redone <= 10, second[0]  # step 30 was the newest complete on every node
    assert resumed.group(1).startswith("ckpt/step-") and final["resume_from"] == resumed.group(1)


def test_a_retry_on_a_node_without_the_checkpoint_gets_it_copied_first(config: Path) -> None:
    done = ugro(config, "submit", "--checkpoint-dir", "ckpt", "--", SCRIPT, "--steps", "40", "--save-every", "10")
    assert done.returncode == 0
    ran = ugro(config, "scheduler", "--until-idle", timeout=120)
    assert ran.returncode == 0 and job(config, 1)["state"] == "succeeded"
    first_node = next(iter(job(config, 1)["placement"]))
    # The scheduler is the daemon in the foreground: `retry --from` asks it which checkpoints exist.
    sched = subprocess.Popen([sys.executable, "-m", "ugro_tui", "scheduler", "--config", str(config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait(lambda: json.loads(ugro(config, "daemon", "status", "--json").stdout)["running"], 30, "the scheduler")
        bad = ugro(config, "retry", "1", "--from", "15")
        assert bad.returncode == 2 and "no complete checkpoint at step 15 (complete steps: 0, 10, 20, 30, 39)" in \
            bad.stderr, bad.stderr
        # Hold the first node with a job pinned to it, then retry from step 20: the retry lands elsewhere.
        ugro(config, "submit", "--kind", "command", "--nodes", first_node, "--", "sleep", "60")
        deadline = time.monotonic() + 60
        while job(config, 2)["state"] != "running":
            assert time.monotonic() < deadline, "the blocker never ran"
            time.sleep(0.25)
        retried = ugro(config, "retry", "1", "--from", "20")
        assert retried.returncode == 0 and "resumes from step-000020" in retried.stdout, retried.stderr
        while job(config, 1)["state"] != "succeeded":
            assert time.monotonic() < deadline + 90, job(config, 1)
            time.sleep(0.25)
        ugro(config, "cancel", "2")
        while job(config, 2)["state"] != "cancelled":  # by this scheduler, before it is stopped
            assert time.monotonic() < deadline + 120, job(config, 2)
            time.sleep(0.25)
    finally:
        sched.kill()
        sched.wait()
    second_node = next(iter(job(config, 1)["placement"]))
    assert second_node != first_node
    copied = on_node(config, second_node) / "step-000020"
    original = on_node(config, first_node) / "step-000020"
    assert sorted(p.name for p in copied.iterdir()) == sorted(p.name for p in original.iterdir())
    assert all(sha(copied / p.name) == sha(original / p.name) for p in original.iterdir())
    shown = ugro(config, "show", "1").stdout
    assert f"copied checkpoint step-000020 from {first_node} to {second_node}" in shown, shown
    log = ugro(config, "logs", "1", "--rank", "0").stdout
    assert "at step 21" in log and steps_in(log)[0] == 21


@pytest.mark.parametrize("folder", ["separate", "shared"])
@pytest.mark.usefixtures("autostart")  # `ugro checkpoints` asks the daemon it starts
def test_keep_last_holds_exactly_after_a_retry_whether_nodes_share_the_folder_or_not(config: Path, tmp_path: Path,
                                                                                    folder: str) -> None:
    """A 3-node job whose rank failed once, keep_last 2: afterwards exactly the 2 newest are listed and on disk,
    each listed once with every node that sees it, where the nodes share one folder (NFS, a shared home)."""
    shared = tmp_path / "nfs" / "ckpt"  # a folder every node mounts
    directory = "ckpt" if folder == "separate" else str(shared)
    done = ugro(config, "submit", "--nnodes", "3", "--checkpoint-dir", directory, "--keep-last", "2",
                "--max-retries", "1", "--", SCRIPT, "--steps", "50", "--save-every", "10", "--sleep", "0.08",
                "--fail-once-at", "25")
    assert done.returncode == 0, done.stderr
    ran = ugro(config, "scheduler", "--until-idle", timeout=240)
    assert ran.returncode == 0, ran.stderr
    final = job(config, 1)
    # Resumed from a checkpoint (in the shared folder the fixture's per-node markers make step 30 look whole too).
    assert final["state"] == "succeeded" and final["attempt"] == 2 and final["resume_from"], final
    listed = [c for c in json.loads(ugro(config, "checkpoints", "1", "--json").stdout)["checkpoints"]
              if c["step"] is not None]
    nodes = {"node0", "node1", "node2"}
    if folder == "shared":
        assert sorted(c["step"] for c in listed) == [40, 49], listed  # once each, not once per node
        assert all({c["node"], *c["seen_by"]} == nodes for c in listed), listed
        assert sorted(p.name for p in shared.glob("step-*")) == ["step-000040", "step-000049"]
    else:
        assert sorted((c["node"], c["step"]) for c in listed) == sorted((n, s) for n in nodes for s in (40, 49))
        assert all(c["seen_by"] == [] for c in listed), listed
        for node in sorted(nodes):
            assert sorted(p.name for p in on_node(config, node).glob("step-*")) == ["step-000040", "step-000049"]
