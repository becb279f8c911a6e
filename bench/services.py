"""Services benchmark: time to ready, restart time and the probes' cost, on loopback labs, side by side in one run.

1. serve_tiny as a service (health every 0.5 s): seconds from `ugro submit` to `ready`, beside the server's own
   loading time (its log's "ready after X s"): the ratio is what scheduling and probing add.
2. Its server killed: seconds until `ready` again (restarted in place), beside the first start.
3. Probe cost: two labs and two schedulers at once, each running N jobs of the same tiny HTTP server: N services
   probed every second (TCP) on one, N plain `command` jobs on the other. The difference in CPU of the scheduler and
   the labs' sshd (their whole process trees) over the same wall time, per service and minute, is the probes' cost.
Usage: python bench/services.py [--services N] [--seconds S]. Only 127.0.10.x and 127.0.11.x are used.
"""

from __future__ import annotations

import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import contextlib
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

from ugro_tui.sim.loopback import LoopbackCluster, free_port, job_processes

TICK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "examples" / "serve_tiny.py")
SIM = [(["RTX 4070"], "nvml")] * 3


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) of these processes and every descendant alive now."""
    children: dict[int, list[int]] = {}
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / TICK
            children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo, seen = 0.0, list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += stats.get(pid, 0.0)
        todo += children.get(pid, [])
    return total


class Lab:
    def __init__(self, root: Path, hosts: list[str], names: list[str]) -> None:
        self.root = root
        self.lab = LoopbackCluster(root / "lab", hosts=hosts).start()
        self.config = root / "cluster.toml"
        # Node names of its own: both labs run on this one machine, and ugro finds a job's processes by job id and
        # node name, so the same pair in both labs would let one lab's cancel kill the other's job.
        text = self.lab.cluster_toml(sim=SIM, poll_interval=1.0, names=names)
        first = 18400 + 100 * int(hosts[0].split(".")[2])
        self.config.write_text(text.replace("[cluster]", f"[cluster]\nservice_ports = [{first}, {first + 99}]"))
        self.env = {**os.environ, "XDG_STATE_HOME": str(root / "state"), "XDG_CONFIG_HOME": str(root / "config")}
        self.sched: subprocess.Popen | None = None
        self.names = names

    def ugro(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "ugro_tui", args[0], "--config", str(self.config), *args[1:]],
                              capture_output=True, text=True, env=self.env, timeout=60)
        if done.returncode:
            raise SystemExit(done.stderr)
        return done.stdout

    def job(self, job_id: int) -> dict:
        return json.loads(self.ugro("show", str(job_id), "--json"))

    def start(self) -> None:
        self.sched = subprocess.Popen([sys.executable, "-m", "ugro_tui", "scheduler", "--config", str(self.config)],
                                      env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cpu(self) -> float:
        assert self.sched is not None
        return tree_cpu([self.sched.pid, *(n.proc.pid for n in self.lab.nodes if n.proc)])

    def stop(self) -> None:
        if self.sched:
            self.sched.kill()
            self.sched.wait()
        for name in self.names:  # the jobs run detached: end what this lab's nodes started
            for pid in job_processes(node=name):
                with contextlib.suppress(OSError):
                    os.kill(pid, 9)
        self.lab.stop()


def wait(predicate, timeout: float = 120.0, show=None) -> float:
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > timeout:
            raise SystemExit("timed out" + (f": {show()}" if show else ""))
        time.sleep(0.05)
    return time.monotonic() - began


def ready_and_restart(lab: Lab) -> None:
    began = time.monotonic()
    sid = int(lab.ugro("submit", "--kind", "service", "--health", "/health", "--health-period", "0.5", "--nodes",
                       "a0", "--", "{python}", TINY, "--port", "{port}").split()[0])
    wait(lambda: lab.job(sid)["health"] == "ready")
    first = time.monotonic() - began
    log = lab.ugro("logs", str(sid))
    own = float(re.findall(r"ready after ([0-9.]+)s", log)[-1])
    print(f"start to ready: {first:.2f} s; the server's own loading {own:.2f} s; ratio {first / own:.2f}x")
    pids = [int(p) for p in subprocess.run(["pgrep", "-f", f"{TINY} --port"], capture_output=True,
                                           text=True).stdout.split()]
    killed = time.monotonic()
    for pid in pids:
        os.kill(pid, 9)
    wait(lambda: lab.job(sid)["restarts"] == 1 and lab.job(sid)["health"] == "ready")
    again = time.monotonic() - killed
    print(f"restart (killed to ready again, in place): {again:.2f} s; ratio to the first start {again / first:.2f}x "
          "(includes the 1 s backoff and the server's loading again)")
    lab.ugro("cancel", str(sid))


def probe_cost(services: Lab, plain: Lab, count: int, seconds: float) -> None:
    server = ["--", "{python}", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
    for _ in range(count):
        services.ugro("submit", "--kind", "service", "--health-period", "1", "--gpus-per-node", "0", *server)
        port = free_port("127.0.0.1")
        plain.ugro("submit", "--kind", "command", "--gpus-per-node", "0", "--", sys.executable, "-m", "http.server",
                   str(port), "--bind", "127.0.0.1")
    wait(lambda: json.loads(services.ugro("services", "--json"))["services"] and all(
        s["health"] == "ready" for s in json.loads(services.ugro("services", "--json"))["services"]),
        show=lambda: services.ugro("services"))
    wait(lambda: all(j["state"] == "running" for j in json.loads(plain.ugro("queue", "--json"))["jobs"]),
         show=lambda: plain.ugro("queue"))
    time.sleep(3)
    a0, b0, t0 = services.cpu(), plain.cpu(), time.monotonic()
    time.sleep(seconds)
    a, b, wall = services.cpu() - a0, plain.cpu() - b0, time.monotonic() - t0
    docs = json.loads(services.ugro("services", "--json"))["services"]
    latencies = sorted(s["last_probe_ms"] for s in docs if s["last_probe_ms"] is not None)
    per = (a - b) / count / (wall / 60)
    print(f"{count} services probed every 1 s vs {count} plain jobs, {wall:.0f} s side by side: scheduler + sshd CPU "
          f"{a:.2f} s vs {b:.2f} s (ratio {a / max(b, 1e-9):.2f}x)")
    print(f"probe cost: {per * 1000:.0f} ms of CPU per service per minute at one probe a second "
          f"({per * 1000 / 60:.1f} ms a probe; {per * 1000 / 6:.0f} ms a minute at the default 10 s period); "
          f"median probe latency {latencies[len(latencies) // 2]:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ugro-bench-services-") as tmp:
        a = Lab(Path(tmp) / "a", ["127.0.10.2", "127.0.10.3", "127.0.10.4"], ["a0", "a1", "a2"])
        b = Lab(Path(tmp) / "b", ["127.0.11.2", "127.0.11.3", "127.0.11.4"], ["b0", "b1", "b2"])
        try:
            a.start()
            b.start()
            time.sleep(4)  # both schedulers connected and dispatching: the figures are of a warm cluster
            ready_and_restart(a)
            probe_cost(a, b, args.services, args.seconds)
        finally:
            a.stop()
            b.stop()


if __name__ == "__main__":
    main()
