"""Preemption on the loopback lab, with real torchrun: how long a high-priority job waits when it must preempt, and
how many steps a preempted job does again.

A preemptible 2-node training run (examples/train_tiny.py, a checkpoint every --save-every steps) is preempted at a
random step by a 1-node job of priority 5 that needs one of its nodes, then resumes from its newest checkpoint.
- Start: from the high-priority submit to its start, beside what the victim took to stop (TERM to queued); the goal
  is that stop plus one dispatcher round.
- Steps redone per preemption: the last step of the preempted attempt + 1 - the step the next attempt starts at.
  With save-on-TERM (the script's default) the goal is 0; without it (--no-save-on-term) at most one interval.
Real sshd nodes on 127.0.5.2-3, `ugro scheduler` (the daemon in the foreground). Usage:
python bench/preempt.py [--preemptions N] [--save-every K]
"""

from __future__ import annotations

import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import json
import random
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ugro_tui.sim.loopback import LoopbackCluster, free_port

TINY = str(Path(__file__).resolve().parents[1] / "examples" / "train_tiny.py")
GRACE = 20


def ugro(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ugro_tui", args[0], "--config", str(config), *args[1:]],
                          capture_output=True, text=True, timeout=timeout)


def show(config: Path, job_id: str) -> dict:
    return json.loads(ugro(config, "show", job_id, "--json").stdout)


def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def steps(text: str) -> list[int]:
    return [int(s) for s in re.findall(r"^step (\d+) loss", text, re.MULTILINE)]


def one(config: Path, i: str, at: int, save_on_term: bool, save_every: int) -> tuple[float, float, int]:
    extra = [] if save_on_term else ["--no-save-on-term"]
    victim = ugro(config, "submit", "--nnodes", "2", "--preemptible", "--checkpoint-dir", f"ck/run{i}", "--", TINY,
                  "--steps", "400", "--sleep", "0.03", "--save-every", str(save_every), *extra).stdout.strip()
    until(lambda: len(steps(ugro(config, "logs", victim, "--rank", "0").stdout)) > at, 120, "the victim at its step")
    asked = time.time()
    urgent = ugro(config, "submit", "--nodes", "node1", "--priority", "5", "--kind", "command", "--", "sh", "-c",
                  "sleep 0.5").stdout.strip()
    until(lambda: show(config, urgent)["started_at"] is not None, 120, "the urgent job to start")
    started = show(config, urgent)["started_at"] - asked
    went = [s["t"] for s in show(config, victim)["states"] if s["went"].endswith("running → queued")]
    stopped = (went[-1] - asked) if went else float("nan")
    until(lambda: show(config, victim)["state"] in ("succeeded", "failed"), 300, "the victim to finish")
    first = steps(ugro(config, "logs", victim, "--rank", "0", "--attempt", "1").stdout)
    second = ugro(config, "logs", victim, "--rank", "0", "--attempt", "2").stdout
    resumed = re.search(r"resumed from .* at step (\d+)", second)
    redone = first[-1] + 1 - (int(resumed.group(1)) if resumed else 0)
    return started, stopped, redone


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preemptions", type=int, default=10, help="per mode (with and without save-on-TERM)")
    parser.add_argument("--save-every", type=int, default=25)
    args = parser.parse_args()
    rng = random.Random(11)
    with tempfile.TemporaryDirectory(prefix="ugro-bench-preempt-") as tmp:
        root = Path(tmp)
        os.environ["XDG_STATE_HOME"] = str(root / "state")
        os.environ["XDG_CONFIG_HOME"] = str(root / "config")
        os.environ["XDG_RUNTIME_DIR"] = str(root / "run")
        (root / "run").mkdir(mode=0o700)
        lab = LoopbackCluster(root / "lab", hosts=["127.0.5.2", "127.0.5.3"]).start()
        daemon = None
        try:
            port = free_port("127.0.5.2")
            config = root / "cluster.toml"
            config.write_text(lab.cluster_toml(sim=[(["RTX 4070"], "nvml")] * 2, poll_interval=0.5).replace(
                "rendezvous_ports = [29500, 29599]", f"rendezvous_ports = [{port}, {port + 1}]\n"
                                                     f"preempt_grace = {GRACE}"))
            daemon = subprocess.Popen([sys.executable, "-m", "ugro_tui", "scheduler", "--config", str(config)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            until(lambda: json.loads(ugro(config, "daemon", "status", "--json").stdout)["running"], 60, "the daemon")
            for save_on_term in (True, False):
                results = [one(config, f"{save_on_term}-{i}", rng.randrange(40, 300), save_on_term,
                               args.save_every) for i in range(args.preemptions)]
                starts = [s for s, _, _ in results]
                stops = [t for _, t, _ in results]
                redone = [r for _, _, r in results]
                mode = "save-on-TERM" if save_on_term else f"no save on TERM, a checkpoint every {args.save_every}"
                print(f"{mode}: {len(results)} preemptions; urgent job started after median "
                      f"{statistics.median(starts):.2f} s,"
                      f" the victim took median {statistics.median(stops):.2f} s to stop (grace {GRACE} s; overhead "
                      f"{statistics.median(starts) - statistics.median(stops):.2f} s, goal one round); steps redone "
                      f"mean {statistics.mean(redone):.1f}, max {max(redone)} (goal "
                      f"{'0' if save_on_term else f'<= {args.save_every}'}); each: {redone}", flush=True)
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(30)
            lab.stop()


if __name__ == "__main__":
    main()
