"""Fault benchmark: many rounds of real faults on a loopback lab, with the figures the failure-recovery issue asks.

  1. the scheduler SIGKILLed at random moments (during launches too), ROUNDS times, then run until idle:
     rounds survived, jobs lost (goal 0), leftover processes (goal 0);
  2. a node killed mid-run (its sshd and its processes): time from the loss to the job failed and its survivors
     gone (goal <= node_lost_after + 2 intervals);
  3. a node frozen (SIGSTOP): the start delay of a job on a healthy node (goal <= 2 intervals).

Usage: python bench/faults.py [--rounds 50] [--loss-rounds 3]. Only 127.0.0.0/8 is used.
"""

from __future__ import annotations

import os
import sys

# bench/queue.py is named like the stdlib module; keep this folder off the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import json
import random
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ugro_tui.sim.loopback import LoopbackCluster, job_processes

INTERVAL = 0.5
LOST_AFTER = 3.0
FOREVER = "while :; do echo tick; sleep 0.2; done"


def ugro(config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ugro_tui", args[0], "--config", str(config), *args[1:]],
                          capture_output=True, text=True, timeout=timeout)


def submit(config: Path, *args: str) -> int:
    done = ugro(config, "submit", "--kind", "command", "--gpus-per-node", "0", *args)
    if done.returncode:
        raise SystemExit(f"bench: submit failed: {done.stderr}")
    return int(done.stdout.split()[-1])


def state(config: Path, job_id: int) -> dict:
    return json.loads(ugro(config, "show", str(job_id), "--json").stdout)


def until(predicate, timeout: float, what: str = "a condition") -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def config_for(lab: LoopbackCluster, root: Path) -> Path:
    text = lab.cluster_toml(sim=[(["RTX 4070"], "nvml")] * 3, poll_interval=INTERVAL).replace(
        "connect_timeout = 5.0", f"connect_timeout = 2.0\nnode_lost_after = {LOST_AFTER}")
    path = root / "cluster.toml"
    path.write_text(text.replace(str(lab.root / "work"), str(root / "work")))
    return path


def scheduler(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ugro_tui", "scheduler", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_rounds(lab: LoopbackCluster, root: Path, rounds: int) -> tuple[int, int, int, int]:
    config = config_for(lab, root)
    jobs = [submit(config, "--nnodes", "2", "--max-retries", "3", "--", "sh", "-c", "sleep 0.3; echo ok")
            for _ in range(max(6, rounds // 5))]
    rng = random.Random(1)
    survived = 0
    for _ in range(rounds):
        sched = scheduler(config)
        time.sleep(rng.uniform(0.2, 2.0))
        sched.send_signal(signal.SIGKILL)
        sched.wait()
        survived += 1
    done = ugro(config, "scheduler", "--until-idle")
    if done.returncode:
        raise SystemExit(f"bench: the scheduler failed after the kills: {done.stderr}")
    lost = sum(1 for j in jobs if state(config, j)["state"] != "succeeded")
    return survived, len(jobs), lost, len(job_processes())


def loss_rounds(lab: LoopbackCluster, root: Path, rounds: int) -> list[float]:
    times = []
    for r in range(rounds):
        folder = root / f"loss{r}"
        folder.mkdir()
        os.environ["XDG_STATE_HOME"] = str(folder / "state")
        config = config_for(lab, folder)
        sched = scheduler(config)
        try:
            job = submit(config, "--nnodes", "2", "--nodes", "node0,node1", "--", "sh", "-c", FOREVER)
            until(lambda job=job, config=config: state(config, job)["state"] == "running"
                  and job_processes(job, "node1"), 60, "the 2-node job")
            lab.kill_node(1)
            for pid in job_processes(job, "node1"):
                os.kill(pid, signal.SIGKILL)
            times.append(until(lambda job=job, config=config: state(config, job)["state"] == "failed"
                               and not job_processes(job, "node0"), 60, "the lost node's job to fail"))
        finally:
            sched.kill()
            sched.wait()
            lab.restart_node(1)
    return times


def freeze_rounds(lab: LoopbackCluster, root: Path, rounds: int) -> list[float]:
    delays = []
    for r in range(rounds):
        folder = root / f"freeze{r}"
        folder.mkdir()
        os.environ["XDG_STATE_HOME"] = str(folder / "state")
        config = config_for(lab, folder)
        sched = scheduler(config)
        try:
            stuck = submit(config, "--nodes", "node1", "--", "sh", "-c", FOREVER)
            until(lambda stuck=stuck, config=config: state(config, stuck)["state"] == "running", 60, "the job on node1")
            lab.freeze_node(1)
            started = time.monotonic()
            quick = submit(config, "--nodes", "node2", "--", "sh", "-c", "sleep 1")
            until(lambda quick=quick, config=config: state(config, quick)["state"] in ("running", "succeeded"), 60,
                  "the job on node2")
            delays.append(time.monotonic() - started)
        finally:
            lab.thaw_node(1)
            ugro(config, "cancel", "1")
            until(lambda config=config: state(config, 1)["state"] == "cancelled", 60,
                  "the cancel after the thaw")
            sched.kill()
            sched.wait()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--loss-rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ugro-bench-faults-") as tmp:
        root = Path(tmp)
        os.environ["XDG_STATE_HOME"] = str(root / "state")
        lab = LoopbackCluster(root / "lab", hosts=["127.0.4.1", "127.0.4.2", "127.0.4.3"]).start()
        try:
            survived, jobs, lost, leftover = kill_rounds(lab, root, args.rounds)
            print(f"kill rounds done: {lost} lost, {leftover} leftover", file=sys.stderr, flush=True)
            losses = loss_rounds(lab, root, args.loss_rounds)
            print(f"loss rounds done: {losses}", file=sys.stderr, flush=True)
            delays = freeze_rounds(lab, root, args.loss_rounds)
        finally:
            lab.stop()
            for pid in job_processes():
                os.kill(pid, signal.SIGKILL)
    print(f"fault benchmark (loopback lab, poll_interval {INTERVAL}s, node_lost_after {LOST_AFTER}s)")
    print(f"  scheduler SIGKILLed at random moments : {survived}/{args.rounds} rounds survived")
    print(f"  jobs lost (of {jobs} queued)            : {lost}   (goal 0)")
    print(f"  leftover job processes                : {leftover}   (goal 0)")
    print(f"  node loss -> job failed, survivors gone: median {statistics.median(losses):.1f}s, "
          f"max {max(losses):.1f}s   (goal <= {LOST_AFTER + 2 * INTERVAL:.1f}s + telemetry's notice)")
    print(f"  healthy-node job start during a freeze: median {statistics.median(delays):.2f}s, "
          f"max {max(delays):.2f}s   (goal <= {2 * INTERVAL:.1f}s + the launch)")


if __name__ == "__main__":
    main()
