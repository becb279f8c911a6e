"""A random search with median stopping, end to end: real torchrun trials on the loopback cluster, 2 at a time."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import FIXTURES, private_lab, processes_in
from ..helpers import needs_torch, ugro

needs_torch()
pytestmark = pytest.mark.timeout(400)
SCRIPT = str(FIXTURES / "jobs" / "lr_loss.py")
STEPS = 40


@pytest.fixture
def config(lab: LoopbackCluster, tmp_path: Path):
    with private_lab(lab, tmp_path, ports=4) as path:
        yield path


def test_eight_random_trials_two_at_a_time_median_prunes_the_bad_ones(config: Path) -> None:
    # --max-retries 1: under load torchrun can exit 1 after its workers all succeeded (a RendezvousConnectionError
    # in its own rendezvous shutdown, seen once in six full runs); that is torch's flake, not what this test is about.
    # Seed 3 draws lr whose base losses are 1.1, 0.03, 0.27, 0.17, 0.25, 3.02, 3.79, 1.82 (trials 1-8).
    submitted = ugro(config, "submit", "--name", "lr", "--sweep", "lr=loguniform:1e-5:1e-1", "--trials", "8",
                     "--seed", "3", "--max-concurrent", "2", "--early-stop", "median", "--min-trials", "2",
                     "--warmup-steps", "3", "--max-retries", "1", "--", SCRIPT, "--lr", "{lr}", "--steps", str(STEPS))
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.split() == [str(i) for i in range(1, 9)]
    sweep_id = re.search(r"sweep (\w+): 8 trials \(seed 3\)", submitted.stderr).group(1)

    done = ugro(config, "scheduler", "--until-idle", timeout=360)
    assert done.returncode == 0, done.stderr
    board = json.loads(ugro(config, "sweep", "show", sweep_id, "--json").stdout)
    trials = {t["id"]: t for t in board["trials"]}
    pruned = {i for i, t in trials.items() if t["state"] == "pruned"}
    assert {6, 7, 8} <= pruned, board  # clearly worse than the trials before them
    assert trials[2]["state"] == "succeeded", trials[2]  # the best finishes, first
    assert board["trials"][0]["id"] == 2
    for i in pruned:  # a borderline trial may be judged as late as its last step; the clearly bad ones never are
        assert trials[i]["reason"].startswith("pruned (median) at step"), trials[i]
        assert i not in (6, 7, 8) or trials[i]["last_step"] < STEPS - 1, trials[i]  # stopped before the end
    others = [(i, t["state"], t["reason"]) for i, t in trials.items() if i not in pruned]
    assert all(state == "succeeded" for _, state, _ in others), others
    assert board["pruned_steps_saved"] > 0

    # The leaderboard's order is the order of each trial's lowest loss in its own rank logs: every attempt's, since a
    # trial retried after torch's shutdown flake keeps its metric across attempts (and may be pruned by it).
    lowest = {}
    for i in trials:
        losses = []
        for attempt in range(1, json.loads(ugro(config, "show", str(i), "--json").stdout)["attempt"] + 1):
            log = ugro(config, "logs", str(i), "--attempt", str(attempt), "--rank", "0").stdout
            losses += [float(x) for x in re.findall(r"^step \d+ loss ([0-9.]+)$", log, re.MULTILINE)]
        lowest[i] = min(losses)
        assert abs(trials[i]["best"] - lowest[i]) < 1e-9
    assert [t["id"] for t in board["trials"]] == sorted(lowest, key=lowest.__getitem__)

    # Never more than two trials at once.
    jobs = json.loads(ugro(config, "queue", "--json").stdout)["jobs"]
    spans = [(j["started_at"], j["finished_at"]) for j in jobs]
    for start, _ in spans:
        assert sum(1 for s, e in spans if s <= start < e) <= 2
    assert not processes_in(config.parent / "lab-work"), "a trial left processes behind"
    listed = ugro(config, "sweeps").stdout
    assert sweep_id in listed and "loss (min)" in listed
