"""Host metrics benchmark: the agent's own CPU with host metrics on and off, side by side in one run.

Two agents sample the same simulated 8-GPU node at 1 Hz at the same time, one with host metrics (the default) and
one with --no-host; each one's CPU comes from /proc/PID/stat (user + system) over the same wall time. The agent runs
under the oldest Python found (nodes run 3.8) when it exists, else this one. Goal: host metrics on <= 1% of a core.
Usage: python bench/host_metrics.py [--seconds S]. Nothing connects anywhere.
"""

from __future__ import annotations

import os
import sys

# bench/queue.py is named like the stdlib module; keep this folder off the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import glob
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ugro_tui.core.telemetry.monitor import AGENT_SOURCE
from ugro_tui.sim.stage import NODE_DIR

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def oldest_python() -> str:
    """pyenv's 3.8 or 3.9 when present (as the node-code tests look for it), else this Python."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for minor in ("3.8", "3.9"):
        found = sorted(glob.glob(f"{root}/versions/{minor}.*/bin/python{minor}"))
        found += [p for p in (shutil.which(f"python{minor}"),) if p and "shims" not in p]
        if found:
            return found[0]
    return sys.executable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    python = oldest_python()
    spec = {"node": "bench", "source": "nvml", "gpus": [["NVIDIA GeForce RTX 4090", 24564, 450.0]] * 8}
    env = {**os.environ, "UGRO_SIM": json.dumps(spec), "PYTHONPATH": str(NODE_DIR)}
    with tempfile.TemporaryDirectory() as tmp:
        agent = Path(tmp) / "agent.py"
        agent.write_bytes(AGENT_SOURCE)
        procs = {name: subprocess.Popen([python, "-u", str(agent), "--interval", "1", "--workdir", tmp, *extra],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
                 for name, extra in (("host on", []), ("host off", ["--no-host"]))}
        time.sleep(3)  # past start-up (imports, the first NVML sweep)
        start = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        w0 = time.monotonic()
        time.sleep(args.seconds)
        wall = time.monotonic() - w0
        used = {name: (cpu_seconds(p.pid) - start[name]) / wall for name, p in procs.items()}
        for p in procs.values():
            p.stdin.close()  # the agent exits when its stdin closes, as when the SSH channel goes
            p.wait(10)
        line = next(iter(procs["host on"].stdout.read().splitlines()), b"{}")
    print(f"host metrics: agent CPU at 1 Hz, 8 simulated GPUs, {args.seconds:g}s, {Path(python).name}")
    print(f"  agent, host metrics on  : {used['host on'] * 100:6.2f} % of one core   (goal <= 1%)")
    print(f"  agent, host metrics off : {used['host off'] * 100:6.2f} % of one core")
    print(f"  host metrics add        : {(used['host on'] - used['host off']) * 100:6.2f} % of one core")
    print(f"  a line carries host     : {'host' in json.loads(line)}")


if __name__ == "__main__":
    main()
