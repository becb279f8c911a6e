"""Services benchmark: time to ready, restart time and the probes' cost, on loopback labs, side by side in one run.

1. serve_tiny as a service (health every 0.5 s): seconds from `ugro submit` to `ready`, beside the server's own
   loading time (its log's "ready after X s"): the ratio is what scheduling and probing add.
2. Its server killed: seconds until `ready` again (restarted in place), beside the first start.
3. Probe cost: one probe (an HTTP GET over a direct channel on the node's SSH connection) beside one status check
   (the `kill -0` command every running job's follow runs each round), interleaved over one connection; CPU here plus
   in the node's sshd per operation, and so per service per minute.
Usage: python bench/services.py [--rounds N]. Only 127.0.10.x and 127.0.11.x are used.
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


def probe_cost(lab: Lab, rounds: int) -> None:
    """One probe beside one `kill -0` status check over the same SSH connection (the check every running job gets
    each round), interleaved in blocks; CPU of this process plus the node's sshd tree per operation."""
    import asyncio
    import tomllib

    from ugro_tui.config import parse_cluster
    from ugro_tui.core.services.probe import probe
    from ugro_tui.core.transport import SshTransport

    port = free_port("127.0.0.1")
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              cwd=lab.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cluster = parse_cluster(tomllib.loads(lab.config.read_text()), str(lab.config))
    sshd = [n.proc.pid for n in lab.lab.nodes if n.proc][:1]

    def cpu() -> float:
        return time.process_time() + tree_cpu(sshd)

    async def run() -> tuple[float, float, list[float]]:
        t = SshTransport(cluster.nodes[0], cluster)
        await t.connect()
        spent = {"probe": 0.0, "status": 0.0}
        latencies = []
        try:
            for _ in range(rounds // 20):
                began = cpu()
                for _ in range(20):
                    ok, ms, err = await probe(t, "127.0.0.1", port, "/", 5)
                    if not ok:
                        raise SystemExit(f"probe failed: {err}")
                    latencies.append(ms or 0.0)
                spent["probe"] += cpu() - began
                began = cpu()
                for _ in range(20):
                    await t.run("kill -0 1 2>/dev/null; echo running", timeout=5)
                spent["status"] += cpu() - began
        finally:
            await t.close()
        return spent["probe"] / rounds, spent["status"] / rounds, sorted(latencies)

    try:
        time.sleep(1)
        per_probe, per_status, latencies = asyncio.run(run())
    finally:
        server.kill()
        server.wait()
    print(f"{rounds} probes (HTTP GET over a direct channel) vs {rounds} status checks (a command over SSH), "
          f"interleaved: {per_probe * 1000:.2f} ms vs {per_status * 1000:.2f} ms of CPU each (here and in the node's "
          f"sshd; ratio {per_probe / per_status:.2f}x); median probe latency {latencies[len(latencies) // 2]:.2f} ms")
    print(f"probe cost per service per minute: {per_probe * 6 * 1000:.0f} ms of CPU at the default 10 s period, "
          f"{per_probe * 60 * 1000:.0f} ms at one probe a second")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ugro-bench-services-") as tmp:
        a = Lab(Path(tmp) / "a", ["127.0.10.2", "127.0.10.3", "127.0.10.4"], ["a0", "a1", "a2"])
        b = Lab(Path(tmp) / "b", ["127.0.11.2", "127.0.11.3", "127.0.11.4"], ["b0", "b1", "b2"])
        try:
            a.start()
            b.start()
            time.sleep(4)  # both schedulers connected and dispatching: the figures are of a warm cluster
            ready_and_restart(a)
            probe_cost(b, args.rounds)
        finally:
            a.stop()
            b.stop()


if __name__ == "__main__":
    main()
