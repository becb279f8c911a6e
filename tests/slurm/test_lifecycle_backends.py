"""One lifecycle, two backends: the same scripted jobs (an after-chain on a failed and on a cancelled parent, a
retry that then succeeds, a child of it) run on ugro's own SSH backend and on a real Slurm give each job the same
history of states and the same reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import private_lab
from ..helpers import ugro

pytestmark = [pytest.mark.timeout(240), pytest.mark.xdist_group("slurm")]  # one Slurm lab, on one worker


def history(config: Path, job_id: int) -> tuple[list[str], str]:
    """The states the job went through, in order (each stored change's trail, joined), and its last reason."""
    doc = json.loads(ugro(config, "show", str(job_id), "--json").stdout)
    seen: list[str] = []
    for change in doc["states"]:
        for state in change["went"].split(" → "):
            if not seen or seen[-1] != state:
                seen.append(state)
    return seen, doc["reason"]


def script(config: Path, marks: Path) -> None:
    def submit(*args: str) -> None:
        done = ugro(config, "submit", "--kind", "command", *args)
        assert done.returncode == 0, done.stderr

    submit("--", "sh", "-c", "exit 3")                                        # 1 fails
    submit("--after", "1", "--", "echo", "never")                             # 2 after a failed parent
    submit("--hold", "--", "echo", "held")                                    # 3 cancelled while held
    submit("--after", "3", "--", "echo", "never")                             # 4 after a cancelled parent
    submit("--max-retries", "1", "--", "sh", "-c", f"test -e {marks}/once || {{ touch {marks}/once; exit 1; }}")
    submit("--after", "5", "--", "echo", "child")                             # 6 after the retried one
    assert ugro(config, "cancel", "3").returncode == 0
    ran = ugro(config, "scheduler", "--until-idle", timeout=200)
    assert ran.returncode == 0, ran.stderr


def test_both_backends_give_the_same_histories(lab: LoopbackCluster, config: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    got = {}
    (tmp_path / "ssh").mkdir()
    with private_lab(lab, tmp_path / "ssh") as ssh:
        for name, cluster in (("slurm", config), ("ssh", ssh)):
            monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / name / "state"))  # a store of its own
            marks = tmp_path / name / "marks"
            marks.mkdir(parents=True, exist_ok=True)
            script(cluster, marks)
            got[name] = {job_id: history(cluster, job_id) for job_id in range(1, 7)}
    for job_id in range(1, 7):
        assert got["ssh"][job_id][0] == got["slurm"][job_id][0], (job_id, got)
    states = {job_id: seen for job_id, (seen, _) in got["ssh"].items()}
    assert states == {
        1: ["queued", "starting", "running", "failed"],
        2: ["queued", "failed"],
        3: ["held", "cancelled"],
        4: ["queued", "failed"],
        5: ["queued", "starting", "running", "queued", "starting", "running", "succeeded"],
        6: ["queued", "starting", "running", "succeeded"],
    }, states
    for name in got:
        assert got[name][2][1] == "job 1 it runs after was failed", got[name][2]
        assert got[name][4][1] == "job 3 it runs after was cancelled", got[name][4]
