"""Yielding a desktop's GPU on the loopback lab: a stand-in for the owner's game (a process ugro did not start, 2 GB
on the GPU through the simulator) makes the preemptible training job there save, step aside and wait, and it
resumes where it stopped once the game has been gone for yield_idle_minutes. By hand: `ugro yield` and `ugro
unyield`, with --force for a job that is not preemptible, and the bad input in one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import daemon_on, private_lab
from ..helpers import job, logs, needs_torch, steps_done, through_sshd, ugro, wait

pytestmark = pytest.mark.timeout(300)
TINY = str(Path(__file__).resolve().parents[2] / "examples" / "train_tiny.py")
SETTINGS = "[cluster]\npreempt_grace = 20\nyield_after = 2\nyield_idle_minutes = 0.1\n"


@pytest.fixture
def config(lab: LoopbackCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with private_lab(lab, tmp_path, ports=3) as path:
        text = path.read_text().replace("[cluster]\n", SETTINGS, 1)
        path.write_text(text.replace('name = "node0"\n', 'name = "node0"\ndesktop = true\n', 1))
        with daemon_on(path, monkeypatch):
            yield path


def game(node: str, config: Path) -> subprocess.Popen[bytes]:
    """The owner's game: on the node's GPU 0 with 2 GB, no ugro job's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UGRO_")}
    env |= {"UGRO_NODE": node, "CUDA_VISIBLE_DEVICES": "0", "UGRO_SIM_MEM_MIB": "2048", **through_sshd(config, node)}
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env)


def test_a_desktops_gpu_is_yielded_to_its_owners_process_and_the_job_comes_back_after(config: Path,
                                                                                     tmp_path: Path) -> None:
    needs_torch()
    ckpt = tmp_path / "ckpt"
    low = ugro(config, "submit", "--nodes", "node0", "--preemptible", "--name", "sweep", "--max-retries", "0",
               "--checkpoint-dir", str(ckpt), "--", TINY, "--steps", "40", "--sleep", "0.25", "--save-every", "1000")
    assert low.returncode == 0, low.stderr
    wait(lambda: len(steps_done(logs(config, 1, rank=0))) >= 3, 120, "the job training")
    owner = game("node0", config)
    try:
        wait(lambda: job(config, 1)["state"] == "queued", 60, "the job yielding the desktop's GPU")
        j = job(config, 1)
        assert j["preemptions"] == 1 and "node0:0 yielded to " in j["reason"] and "took 2.0 GB on node0:0" in \
            j["reason"], j
        status = json.loads(ugro(config, "status", "--json").stdout)
        [y] = status["yielded"]
        assert y["node"] == "node0" and y["gpus"] == [0] and y["auto"], y
        wait(lambda: "node0:0 is yielded to" in job(config, 1)["reason"], 30, "the wait naming the yield")
        assert job(config, 1)["state"] == "queued"
    finally:
        owner.kill()
        owner.wait()
    wait(lambda: job(config, 1)["state"] == "succeeded", 180, "the job back after the game ended")
    first = ugro(config, "logs", "1", "--rank", "0", "--attempt", "1").stdout
    second = ugro(config, "logs", "1", "--rank", "0", "--attempt", "2").stdout
    saved = int(re.search(r"preempted: saved step (\d+)", first).group(1))
    assert steps_done(first) == list(range(saved + 1))
    assert steps_done(second) == list(range(saved + 1, 40))  # no step done twice
    kinds = [e["event"] for e in json.loads(ugro(config, "events", "--json").stdout)["events"]]
    assert "gpu-yielded" in kinds and "gpu-unyielded" in kinds and "job-preempted" in kinds, kinds
    assert json.loads(ugro(config, "status", "--json").stdout)["yielded"] == []


def test_yield_by_hand_forced_for_a_job_that_is_not_preemptible_and_given_back(config: Path) -> None:
    for args, says in ((("node1",), "node1 is not a desktop"), (("node9",), "no node 'node9'")):
        out = ugro(config, "yield", *args)
        assert out.returncode == 2 and says in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr
    refused = ugro(config, "yield", "node0", "--read-only")
    assert refused.returncode != 0 and "read-only" in refused.stderr, refused.stderr
    busy = ugro(config, "submit", "--nodes", "node1", "--kind", "command", "--max-retries", "0", "--name", "busy",
                "--", "sleep", "300")
    assert busy.returncode == 0, busy.stderr
    wait(lambda: job(config, 1)["state"] == "running", 60, "the job running")
    said = ugro(config, "yield", "node1", "--force", "--to", "ob", "--for", "2h")
    assert said.returncode == 0 and "job 1 (busy) is stopped (it fails; its retry policy applies)" in said.stdout
    wait(lambda: job(config, 1)["state"] == "failed", 60, "the forced yield stopping the job")
    assert job(config, 1)["reason"].startswith("yielded: node1 (every GPU) yielded to ob until "), job(config, 1)
    nxt = ugro(config, "submit", "--nodes", "node1", "--kind", "command", "--name", "next", "--", "true")
    assert nxt.returncode == 0, nxt.stderr
    wait(lambda: "node1:0 is yielded to ob until" in job(config, 2)["reason"], 30, "the wait naming the yield")
    assert "node1 (every GPU) yielded to ob until " in ugro(config, "status").stdout
    assert ugro(config, "unyield", "node1").stdout.strip() == "node1 is back in the queue"
    wait(lambda: job(config, 2)["state"] == "succeeded", 60, "the next job once the node was given back")
    told = [(e["event"], e["message"]) for e in json.loads(ugro(config, "events", "--json").stdout)["events"]]
    assert ("gpu-unyielded", "node1 (every GPU) is back in the queue (it was yielded to ob)") in told, told
    assert any(kind == "gpu-yielded" and message.endswith(": by hand") for kind, message in told), told
