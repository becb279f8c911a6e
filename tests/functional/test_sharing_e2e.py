"""Sharing a card by memory on the loopback lab (real OpenSSH, real torchrun, the simulated 8 GB cards): two
`--gpu-mem 3` jobs run on one card at once, a third waits with its reason in numbers, a foreign 6 GB process keeps
a 3 GB job off its card, and a rank over its share is warned about or, enforced, stopped."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import daemon_on, private_lab
from ..helpers import jobs, through_sshd, ugro, wait

pytestmark = pytest.mark.timeout(240)

HOLD = """\
import os, sys, time
print("rank", os.environ["RANK"], "cuda", os.environ["CUDA_VISIBLE_DEVICES"], "share", os.environ["UGRO_GPU_MEM_GB"],
      flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.2)
"""


@pytest.fixture
def config(lab: LoopbackCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with private_lab(lab, tmp_path, ports=6) as path, daemon_on(path, monkeypatch):
        yield path


def submit(config: Path, *args: str) -> int:
    done = ugro(config, "submit", *args)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[0])


def test_two_jobs_share_a_card_a_third_waits_in_numbers_and_a_foreign_process_keeps_one_off(
        config: Path, tmp_path: Path) -> None:
    script = tmp_path / "hold.py"
    script.write_text(HOLD)
    stop = tmp_path / "stop"
    # A stand-in for ollie's notebook on gpu2's card: 6 GB that ugro did not start (the simulator sees its env).
    env = {**os.environ, "UGRO_NODE": "node2", "CUDA_VISIBLE_DEVICES": "0", "UGRO_SIM_MEM_MIB": "6144",
           **through_sshd(config, "node2")}
    foreign = subprocess.Popen(["sleep", "600"], env=env)
    try:
        share = ("--gpu-mem", "3", "--nodes", "node1,node2", "--", str(script), str(stop))
        first, second = submit(config, "--name", "a", *share), submit(config, "--name", "b", *share)
        wait(lambda: all(jobs(config)[i]["state"] == "running" for i in (first, second)), 90, "both on one card")
        now = jobs(config)
        assert now[first]["placement"] == now[second]["placement"] == {"node1": [0]}  # gpu2's card: 6 GB taken
        third = submit(config, "--name", "c", "--gpu-mem", "3", "--nodes", "node1", "--", str(script), str(stop))
        kept_off = submit(config, "--name", "d", "--gpu-mem", "3", "--nodes", "node2", "--", str(script), str(stop))

        def reasons() -> bool:
            j = jobs(config)
            # Both jobs' use, once telemetry has seen each of them (not one and then the other).
            return ("job 1 holds 3.0 GB, uses 1.5 GB, job 2 holds 3.0 GB, uses 1.5 GB" in j[third]["reason"]
                    and "sleep 6.0 GB" in j[kept_off]["reason"])

        wait(reasons, 30, "the waiting jobs' reasons")
        j = jobs(config)
        assert j[third]["state"] == j[kept_off]["state"] == "queued"
        assert j[third]["reason"].startswith("needs 3.0 GB on 1 GPU; best: node1:0 has 1."), j[third]["reason"]
        assert j[third]["reason"].endswith("GB free (job 1 holds 3.0 GB, uses 1.5 GB, job 2 holds 3.0 GB, uses 1.5 GB)"
                                           "; start unknown (jobs 1, 2 have no ETA)")  # their script says no total
        assert j[kept_off]["reason"].startswith("needs 3.0 GB on 1 GPU; best: node2:0 has "), j[kept_off]["reason"]
        status = json.loads(ugro(config, "status", "--json").stdout)
        card = next(n for n in status["nodes"] if n["name"] == "node1")["gpus"][0]
        assert card["shared_by"] == [first, second] and card["declared_mib"] == 2 * 3072
        logs = ugro(config, "logs", str(first)).stdout
        assert "cuda 0 share 3" in logs, logs
        # Someone's process grows on the shared card: its jobs are warned, naming it; ugro never stops it.
        env |= {"UGRO_NODE": "node1", "UGRO_SIM_MEM_MIB": "2048", **through_sshd(config, "node1")}
        grower = subprocess.Popen(["sleep", "600"], env=env)
        try:
            wait(lambda: "short of what its jobs declared: " in jobs(config)[first]["warning"], 30, "the warning")
            assert "'s sleep 2.0 GB (ugro does not stop processes it did not start)" in jobs(config)[first]["warning"]
            assert grower.poll() is None and jobs(config)[first]["state"] == "running"
        finally:
            grower.kill()
            grower.wait()
    finally:
        foreign.kill()
        foreign.wait()
        stop.write_text("")
    wait(lambda: all(j["state"] in ("succeeded",) for j in jobs(config).values()), 120, "every job to end well")


def test_a_rank_over_its_share_is_warned_about_or_stopped_when_enforced(config: Path, tmp_path: Path) -> None:
    script = tmp_path / "hold.py"
    script.write_text(HOLD)
    stop = tmp_path / "stop"
    over = ("--gpu-mem", "1", "--nodes", "node0", "--env", "UGRO_SIM_MEM_MIB=2000", "--", str(script), str(stop))
    warned = submit(config, "--name", "warned", *over)
    enforced = submit(config, "--name", "enforced", "--gpu-mem-enforce", *over)
    wait(lambda: jobs(config)[enforced]["state"] == "failed", 90, "the enforced job to be stopped")
    j = jobs(config)
    assert j[enforced]["reason"].startswith("stopped by --gpu-mem-enforce: a rank on node0:0 (pid "), j[enforced]
    assert "uses 2.0 GB, over its declared 1.0 GB by more than 10% for 3 samples" in j[enforced]["reason"]
    assert j[warned]["state"] == "running", j[warned]
    # The same three samples over as the enforced job's stop took, counted from when its rank showed up.
    wait(lambda: jobs(config)[warned]["warning"].startswith("a rank on node0:0"), 90, "the warning",
         detail=lambda: (jobs(config)[warned], ugro(config, "status", "--json").stdout[-3000:]))
    shown = ugro(config, "show", str(warned)).stdout
    assert "warning    : a rank on node0:0" in shown and "warning: a rank on node0:0" in shown, shown
    events = ugro(config, "events", "--json").stdout
    assert "gpu-mem-over" in events
    stop.write_text("")
    wait(lambda: jobs(config)[warned]["state"] == "succeeded", 60, "the warned job to end well")


def test_out_of_memory_on_a_shared_card_names_what_shared_it(config: Path, tmp_path: Path) -> None:
    script = tmp_path / "hold.py"
    script.write_text(HOLD)
    stop = tmp_path / "stop"
    oom = tmp_path / "oom.py"
    oom.write_text('import sys\nprint("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",'
                   ' file=sys.stderr, flush=True)\nsys.exit(1)\n')
    holder = submit(config, "--name", "holder", "--gpu-mem", "3", "--nodes", "node2", "--", str(script), str(stop))

    def seen() -> bool:  # its rank on the card, as telemetry shows it
        doc = json.loads(ugro(config, "status", "--json").stdout)
        card = next(n for n in doc["nodes"] if n["name"] == "node2")["gpus"][0]
        return any(p["ugro_job"] == holder for p in card["processes"])

    wait(seen, 60, "the holder's rank on node2's card")
    failed = submit(config, "--name", "oom", "--gpu-mem", "2", "--nodes", "node2", "--", str(oom))
    wait(lambda: jobs(config)[failed]["state"] == "failed", 60, "the job to run out of memory")
    diagnosis = jobs(config)[failed]["diagnosis"]
    assert diagnosis.startswith("CUDA out of memory"), diagnosis
    assert f"the card was shared with job {holder} holds 3.0 GB, uses 1.5 GB on node2:0" in diagnosis, diagnosis
    stop.write_text("")
    wait(lambda: jobs(config)[holder]["state"] == "succeeded", 60, "the holder to end well")
