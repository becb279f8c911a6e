"""The Slurm backend end to end: a real Slurm 22.05 (two `slurmd -N` nodes with two fake GPUs each) driven through
the login node over loopback SSH, with the same `ugro submit ...` as on the SSH backend."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ugro_tui.sim.slurm import SlurmLab

from ..conftest import FIXTURES
from ..helpers import needs_torch, ugro

needs_torch()
pytestmark = [pytest.mark.timeout(240), pytest.mark.xdist_group("slurm")]  # one Slurm lab, on one worker
TINY = str(Path(__file__).resolve().parents[2] / "examples" / "train_tiny.py")
LR_LOSS = str(FIXTURES / "jobs" / "lr_loss.py")


def shown(config: Path, job_id: int) -> dict:
    done = ugro(config, "show", str(job_id), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_two_node_torchrun_job_runs_in_slurm_with_rank_logs_and_a_falling_loss(config: Path) -> None:
    submitted = ugro(config, "submit", "--nnodes", "2", "--gpus-per-node", "1", "--", TINY, "--steps", "30")
    assert submitted.returncode == 0, submitted.stderr
    done = ugro(config, "scheduler", "--until-idle", timeout=180)
    assert done.returncode == 0, done.stderr
    job = shown(config, 1)
    assert job["state"] == "succeeded", job
    assert job["slurm"]["job_id"].isdecimal() and job["slurm"]["partition"] == "gpu", job["slurm"]
    assert sorted(job["runs"]) == ["n1", "n2"] and all(r["exit_code"] == 0 for r in job["runs"].values())
    for rank in (0, 1):  # each rank's own stream, from its node's per-rank files read through the login node
        text = ugro(config, "logs", "1", "--rank", str(rank)).stdout
        losses = [float(x) for x in re.findall(r"step \d+ loss ([0-9.]+)", text)]
        assert len(losses) == 30, text[-2000:]
        assert losses[-1] < losses[0] / 2, losses
    assert len(job["metric"]) == 30


def test_cancel_scancels_it_and_leaves_nothing(config: Path, slurm: SlurmLab, tmp_path: Path) -> None:
    ugro(config, "submit", "--kind", "command", "--nnodes", "2", "--", "sh", "-c", "echo started; sleep 613")
    scheduler = subprocess.Popen([sys.executable, "-m", "ugro_tui", "scheduler", "--config", str(config)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while shown(config, 1)["state"] != "running":
            assert time.monotonic() < deadline, shown(config, 1)
            time.sleep(0.3)
        slurm_id = shown(config, 1)["slurm"]["job_id"]
        assert ugro(config, "cancel", "1").returncode == 0
        while shown(config, 1)["state"] != "cancelled":
            assert time.monotonic() < deadline, shown(config, 1)
            time.sleep(0.3)
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=20)
    assert shown(config, 1)["reason"] == "cancelled by the user"
    queue = slurm.run("squeue", "-h", "-t", "PD,R,CG", "-o", "%i").stdout.split()
    assert slurm_id not in queue
    pids = subprocess.run(["pgrep", "-f", "sleep 613"], capture_output=True, text=True).stdout.split()
    assert not pids, "a cancelled job's process is still running"


def test_a_sweep_is_one_job_array_and_every_trial_runs(config: Path) -> None:
    submitted = ugro(config, "submit", "--name", "lr", "--sweep", "lr=1e-3,1e-2,1e-1", "--max-concurrent", "2",
                     "--gpus-per-node", "1", "--", LR_LOSS, "--lr", "{lr}", "--steps", "5", "--sleep", "0.05")
    assert submitted.returncode == 0, submitted.stderr
    assert ugro(config, "scheduler", "--until-idle", timeout=180).returncode == 0
    jobs = [shown(config, i) for i in (1, 2, 3)]
    assert [j["state"] for j in jobs] == ["succeeded"] * 3, [
        (j["state"], j["reason"], j["diagnosis"], ugro(config, "logs", str(j["id"])).stdout[-1500:]) for j in jobs]
    ids = [j["slurm"]["job_id"] for j in jobs]
    array = {i.split("_")[0] for i in ids}
    assert len(array) == 1 and [i.split("_")[1] for i in ids] == ["1", "2", "3"], ids  # one array, index = trial
    for job, lr in zip(jobs, ("0.001", "0.01", "0.1"), strict=True):
        assert f"done lr {float(lr)}" in ugro(config, "logs", str(job["id"])).stdout


def test_a_failing_job_is_diagnosed_as_on_the_ssh_backend(config: Path, tmp_path: Path) -> None:
    script = tmp_path / "boom.py"
    script.write_text("import os\nprint('step 0 loss 1.0', flush=True)\nif os.environ['RANK'] == '1':\n"
                      "    raise RuntimeError('CUDA out of memory. Tried to allocate 2 GiB')\n")
    ugro(config, "submit", "--nnodes", "2", "--gpus-per-node", "1", "--", str(script))
    assert ugro(config, "scheduler", "--until-idle", timeout=180).returncode == 0
    job = shown(config, 1)
    assert job["state"] == "failed", job
    assert "exited 1" in job["reason"], job["reason"]
    assert "out of memory" in (job["diagnosis"] or "").lower(), job["diagnosis"]


def test_more_gpus_than_a_node_has_is_refused_with_slurms_reason(config: Path) -> None:
    ugro(config, "submit", "--gpus-per-node", "3", "--", LR_LOSS, "--lr", "0.1", "--steps", "1")
    assert ugro(config, "scheduler", "--until-idle", timeout=60).returncode == 0
    job = shown(config, 1)
    assert job["state"] == "failed"
    assert job["reason"] == "Slurm refused it: Requested node configuration is not available", job["reason"]


@pytest.mark.usefixtures("autostart")  # `ugro status` shows what the daemon it starts learned from Slurm
def test_after_holds_and_the_nodes_slurm_shows(config: Path) -> None:
    first = ugro(config, "submit", "--kind", "command", "--", "sh", "-c", "sleep 1; exit 4")
    second = ugro(config, "submit", "--kind", "command", "--after", "1", "--", "echo", "never")
    held = ugro(config, "submit", "--hold", "--kind", "command", "--", "echo", "held")
    assert first.returncode == second.returncode == held.returncode == 0
    status = json.loads(ugro(config, "status", "--json").stdout)
    slurm_nodes = {n["name"]: n["slurm"] for n in status["nodes"] if "slurm" in n}
    assert set(slurm_nodes) == {"n1", "n2"}
    assert all(s["gpus"] == 2 and s["partitions"] == ["gpu"] for s in slurm_nodes.values()), slurm_nodes
    assert ugro(config, "scheduler", "--until-idle", timeout=120).returncode == 0
    assert shown(config, 1)["state"] == "failed"
    second_job = shown(config, 2)
    assert second_job["state"] == "failed" and "runs after" in second_job["reason"], second_job
    assert shown(config, 3)["state"] == "held"


@pytest.mark.usefixtures("autostart")  # `ugro doctor` runs in the daemon it starts
def test_doctor_on_slurm_checks_slurm_and_runs_the_smoke_as_a_two_node_slurm_job(config: Path) -> None:
    done = ugro(config, "doctor", "--smoke", "--json", timeout=200)
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"] if c["node"] == "cluster"}
    assert checks["slurm"]["status"] == "ok" and "2 node(s)" in checks["slurm"]["detail"], checks["slurm"]
    assert checks["partition"]["status"] == "ok" and "4 GPU(s)" in checks["partition"]["detail"]
    assert checks["account"]["status"] == "skip"  # the lab's Slurm keeps no accounts
    assert checks["sbatch"]["status"] == "ok" and "2 node(s) × 1 GPU" in checks["sbatch"]["detail"], checks["sbatch"]
    smoke = checks["smoke"]
    assert smoke["status"] == "ok" and "2 ranks (gloo)" in smoke["detail"], smoke
    job = shown(config, 1)
    assert job["slurm"]["job_id"] and sorted(job["runs"]) == ["n1", "n2"]


def test_sync_sends_the_tree_to_the_login_node_and_the_job_runs_in_it(config: Path, tmp_path: Path) -> None:
    src = tmp_path / "project"
    src.mkdir()
    (src / "train.py").write_text("import os\nprint('in', os.path.basename(os.getcwd()), 'step 0 loss 1.0')\n")
    out = ugro(config, "submit", "--sync", str(src), "--nnodes", "2", "--", "train.py")
    assert out.returncode == 0, out.stderr
    assert ugro(config, "scheduler", "--until-idle", timeout=120).returncode == 0
    job = shown(config, 1)
    assert job["state"] == "succeeded", job
    assert f"in {job['spec']['sync_hash']}" in ugro(config, "logs", "1").stdout


def test_hold_and_release_of_a_job_slurm_already_has(config: Path, slurm: SlurmLab) -> None:
    big = ugro(config, "submit", "--kind", "command", "--nnodes", "2", "--gpus-per-node", "2", "--", "sleep", "4")
    waiting = ugro(config, "submit", "--kind", "command", "--gpus-per-node", "1", "--", "echo", "ran")
    assert big.returncode == waiting.returncode == 0
    scheduler = subprocess.Popen([sys.executable, "-m", "ugro_tui", "scheduler", "--config", str(config)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60

        def until(check, what: str) -> dict:
            while True:
                job = shown(config, 2)
                if check(job):
                    return job
                assert time.monotonic() < deadline, f"{what}: {job}"
                time.sleep(0.2)

        pending = until(lambda j: j["slurm"] and j["slurm"]["job_id"] and re.search(r"Slurm: (Resources|Priority)",
                                                                                     j["reason"]), "pending")
        assert pending["state"] == "queued" and pending["reason"].startswith("waits: "), pending["reason"]
        assert ugro(config, "hold", "2").returncode == 0
        slurm_id = pending["slurm"]["job_id"]
        while "JobHeldUser" not in slurm.run("squeue", "-h", "-j", slurm_id, "-o", "%r").stdout:
            assert time.monotonic() < deadline, "scontrol hold was never sent"
            time.sleep(0.2)
        time.sleep(5)  # the first job ends meanwhile; a held job must not start
        assert shown(config, 2)["state"] == "held"
        assert ugro(config, "release", "2").returncode == 0
        done = until(lambda j: j["state"] == "succeeded", "released and run")
        assert done["slurm"]["job_id"] == slurm_id  # the same Slurm job, released, not a second one
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=20)
