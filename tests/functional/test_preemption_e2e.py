"""Preemption that keeps the work, with real torchrun (gloo on the CPU) on the loopback lab: a preemptible 2-node
training job at priority 0 makes room for a 1-node job at priority 5 that needs one of its nodes. It saves on TERM,
is queued again with the reason, spends no retry, and resumes from the step it saved once the other ends: no step
is done twice."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import daemon_on, private_lab
from ..helpers import job, logs, needs_torch, steps_done, ugro, wait

needs_torch()
pytestmark = pytest.mark.timeout(300)
TINY = str(Path(__file__).resolve().parents[2] / "examples" / "train_tiny.py")


@pytest.fixture
def config(lab: LoopbackCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with private_lab(lab, tmp_path, ports=4) as path:
        path.write_text(path.read_text().replace("[cluster]\n", "[cluster]\npreempt_grace = 20\n", 1))
        with daemon_on(path, monkeypatch):
            yield path


def test_a_preempted_job_saves_on_term_is_requeued_and_resumes_where_it_stopped(config: Path,
                                                                               tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    low = ugro(config, "submit", "--nnodes", "2", "--nodes", "node0,node1", "--preemptible", "--name", "long",
               "--max-retries", "0", "--checkpoint-dir", str(ckpt), "--", TINY, "--steps", "60", "--sleep", "0.25",
               "--save-every", "1000")
    assert low.returncode == 0, low.stderr
    wait(lambda: len(steps_done(logs(config, 1, rank=0))) >= 5, 120, "the long job training")
    assert job(config, 1)["spec"]["preemptible"] and job(config, 1)["preemptions"] == 0
    high = ugro(config, "submit", "--nodes", "node1", "--priority", "5", "--name", "urgent", "--kind", "command",
                "--", "sh", "-c", "sleep 2; echo urgent done")
    assert high.returncode == 0, high.stderr
    wait(lambda: job(config, 1)["state"] == "queued", 60, "the long job preempted")
    j = job(config, 1)
    assert j["reason"].startswith("preempted by job 2 (priority 5)") and j["preemptions"] == 1, j
    wait(lambda: job(config, 2)["state"] == "succeeded", 60, "the urgent job")
    wait(lambda: job(config, 1)["state"] == "succeeded", 180, "the long job resumed and finished")
    j = job(config, 1)
    assert j["preemptions"] == 1 and j["reason"] == "every node exited 0" and j["retries_used"] == 0, j
    first = ugro(config, "logs", "1", "--rank", "0", "--attempt", "1").stdout
    second = ugro(config, "logs", "1", "--rank", "0", "--attempt", "2").stdout
    saved = int(re.search(r"preempted: saved step (\d+)", first).group(1))
    assert f"resumed from {ckpt}/step-{saved:06d} at step {saved + 1}" in second, second
    done_before, done_after = steps_done(first), steps_done(second)
    assert done_before == list(range(saved + 1)) and done_after == list(range(saved + 1, 60))  # 0 steps redone
    events = ugro(config, "show", "1").stdout
    assert "preempted: preempted by job 2 (priority 5)" in events and "resumed after 1 preemption(s)" in events
    kinds = [e["event"] for e in json.loads(ugro(config, "events", "--json").stdout)["events"] if e["job_id"] == 1]
    assert "job-preempted" in kinds and "job-resumed" in kinds
