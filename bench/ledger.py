"""The ledger's and `/metrics`' cost at 64 nodes x 8 GPUs and 1 Hz, side by side in one run.

- A real daemon at 64 nodes x 8 GPUs (64 sshd and agents on 127.0.7.x, 1 s samples), its CPU with
  `[daemon] ledger = false` against on, measured alternately (off, on, off, on) so drift hits both alike.
- The ledger in process: the daemon's work per second with the ledger on against off is exactly what the task adds:
  one `observe` per node sample (64 x 8 GPUs, half of them held by jobs), the store's placements read every
  2 s, and the two files saved every 15 s, amortized. Measured in process (CPU time per simulated second of
  samples), beside the floor the daemon pays anyway for the same samples (`apply_sample`, parsing the agent's
  lines into the state). Goal: at most 1% of a core more.
- One `/metrics` scrape of that state (prometheus-client's OpenMetrics text, with 32 running jobs), beside the
  same state as the API's JSON (`state.to_json()` + `json.dumps`). Goal: <= 20 ms.

Usage: python bench/ledger.py [--seconds N] [--nodes N] [--daemon-seconds S] (0: skip the real daemon)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ugro_tui.core.jobs.model import Job, JobSpec, JobState  # noqa: E402
from ugro_tui.core.ledger.book import Book  # noqa: E402
from ugro_tui.core.ledger.metrics import DCGM, UgroCollector, render  # noqa: E402
from ugro_tui.core.telemetry.model import ClusterState  # noqa: E402

GPUS = 8


def agent_line(node: int, t: float) -> dict:
    """One agent sample of a node's 8 GPUs, as the agent sends it."""
    gpus = [{"index": i, "uuid": f"GPU-{node:04d}-{i}", "name": "NVIDIA H100 80GB HBM3",
             "utilization_pct": 50 + (i * 7) % 50, "memory_used_mib": 20000 + i * 1000, "memory_total_mib": 81559,
             "temperature_c": 60 + i, "power_w": 300.0 + 10 * i + (t % 7), "power_limit_w": 700.0, "fan_pct": None,
             "energy_mj": 1e9 + t * 300_000.0, "processes": []} for i in range(GPUS)]
    return {"t": t, "source": "nvml", "driver": "550.54.15", "gpus": gpus,
            "host": {"cpu_pct": 35.0, "cores": 64, "load1": 12.0, "mem_used_mib": 200_000, "mem_total_mib": 515_000}}


def library_only(state: ClusterState) -> bytes:
    """The same GPU families written by prometheus-client alone: the floor of doing it the library's way."""
    from prometheus_client.core import CollectorRegistry, GaugeMetricFamily
    from prometheus_client.openmetrics.exposition import generate_latest

    class Gpus:
        def collect(self):
            for field, _, text, read in DCGM:
                family = GaugeMetricFamily(field, text, labels=["gpu", "UUID", "modelName", "Hostname"])
                for name, status in state.nodes.items():
                    for gpu in status.gpus:
                        value = read(gpu)
                        if value is not None:
                            family.add_metric([str(gpu.index), gpu.uuid or "", gpu.name or "", name], value)
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Gpus())  # type: ignore[arg-type]
    return generate_latest(registry)


def daemon_cpu_on_and_off(nodes: int, seconds: float) -> tuple[list[float], list[float]]:
    """The real daemon's share of a core with the ledger off and on, twice each, alternately."""
    import subprocess

    from ugro_tui.sim.loopback import LoopbackCluster

    def cpu_seconds(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    off: list[float] = []
    on: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ugro-bench-ledger-daemon-", dir="/tmp") as tmp:
        root = Path(tmp)
        lab = LoopbackCluster(root / "lab", hosts=[f"127.0.7.{i}" for i in range(2, 2 + nodes)]).start()
        env = dict(os.environ, XDG_STATE_HOME=str(root / "state"), XDG_RUNTIME_DIR=str(root), UGRO_AUTOSTART="0")
        try:
            for ledger in (False, True, False, True):
                config = root / "cluster.toml"
                config.write_text(f"[daemon]\nledger = {str(ledger).lower()}\n" + lab.cluster_toml(
                    sim=[(["RTX 4070"] * GPUS, "nvml")] * nodes, poll_interval=1.0))
                run = [sys.executable, "-m", "ugro_tui"]
                subprocess.run([*run, "daemon", "start", "--config", str(config)], env=env, check=True,
                               capture_output=True)
                status = subprocess.run([*run, "daemon", "status", "--json", "--config", str(config)], env=env,
                                        capture_output=True, text=True)
                pid = json.loads(status.stdout)["pid"]
                deadline = time.monotonic() + 120
                while True:  # every node connected and sampling
                    doc = json.loads(subprocess.run([*run, "daemon", "status", "--json", "--config", str(config)],
                                                    env=env, capture_output=True, text=True).stdout)
                    if sum(doc["connections"].values()) >= nodes or time.monotonic() > deadline:
                        break
                    time.sleep(1.0)
                time.sleep(5.0)
                before = cpu_seconds(pid)
                time.sleep(seconds)
                (on if ledger else off).append((cpu_seconds(pid) - before) / seconds)
                subprocess.run([*run, "daemon", "stop", "--config", str(config)], env=env, capture_output=True)
        finally:
            lab.stop()
    return off, on


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=120, help="simulated seconds of 1 Hz samples")
    parser.add_argument("--nodes", type=int, default=64)
    parser.add_argument("--daemon-seconds", type=float, default=20.0)
    args = parser.parse_args()
    if args.daemon_seconds:
        off, on = daemon_cpu_on_and_off(args.nodes, args.daemon_seconds)
        print(f"a real daemon at {args.nodes} nodes x {GPUS} GPUs, 1 Hz: ledger off "
              f"{' / '.join(f'{x * 100:.2f}' for x in off)}% of a core, on {' / '.join(f'{x * 100:.2f}' for x in on)}%:"
              f" the ledger adds {(statistics.mean(on) - statistics.mean(off)) * 100:.2f}% (goal <= 1%)")
    names = [f"node{i}" for i in range(args.nodes)]
    with tempfile.TemporaryDirectory(prefix="ugro-bench-ledger-") as tmp:
        os.environ["XDG_STATE_HOME"] = tmp
        state = ClusterState([(n, "127.0.0.1") for n in names])
        jobs = [Job(i + 1, JobSpec(f"job{i}", ("t.py",)), JobState.RUNNING, 0.0,
                    placement=((names[i % args.nodes], tuple(range(GPUS // 2))),) if i < args.nodes else ())
                for i in range(32)]
        held = {(node, g): j.id for j in jobs for node, gpus in j.placement for g in gpus}
        book = Book(Path(tmp) / "ledger")
        lines = [[agent_line(n, float(t)) for n in range(args.nodes)] for t in range(args.seconds)]
        # The floor: what the daemon does with every sample anyway (parse into the state).
        began = time.process_time()
        for t, per_node in enumerate(lines):
            for name, line in zip(names, per_node, strict=True):
                state.nodes[name].apply_sample(line, float(t))
        floor = (time.process_time() - began) / args.seconds
        # The ledger on: the same samples, each node's GPUs observed, the placements read every 2 s, saved every 15 s.
        began = time.process_time()
        for t, per_node in enumerate(lines):
            for name, line in zip(names, per_node, strict=True):
                status = state.nodes[name]
                status.apply_sample(line, float(t))
                book.observe(name, float(t), status.gpus, lambda n, g, held=held: held.get((n, g)), "ob")
            if t % 2 == 0:
                held = {(node, g): j.id for j in jobs for node, gpus in j.placement for g in gpus}
            if t % 15 == 14:
                book.save()
        on = (time.process_time() - began) / args.seconds
        added = on - floor
        print(f"ledger at {args.nodes} nodes x {GPUS} GPUs, 1 Hz ({args.seconds} s of samples): the daemon's "
              f"sample handling {floor * 100:.2f}% of a core without the ledger (floor), {on * 100:.2f}% with it: "
              f"the ledger adds {added * 100:.2f}% of a core (goal <= 1%)")
        collector = UgroCollector(lambda: state, lambda: jobs, book.job)
        render(collector)  # warm
        scrapes, floors, library = [], [], []
        for _ in range(30):  # interleaved, so noise hits all alike
            began = time.perf_counter()
            body = render(collector)
            scrapes.append(time.perf_counter() - began)
            began = time.perf_counter()
            json.dumps(state.to_json())
            floors.append(time.perf_counter() - began)
            began = time.perf_counter()
            library_only(state)
            library.append(time.perf_counter() - began)
        scrape, base, lib = statistics.median(scrapes), statistics.median(floors), statistics.median(library)
        print(f"/metrics scrape at {args.nodes} x {GPUS} GPUs and {len(jobs)} running jobs: median "
              f"{scrape * 1e3:.1f} ms, {len(body) / 1024:.0f} KiB (goal <= 20 ms); the same state as the API's JSON "
              f"{base * 1e3:.1f} ms (ratio {scrape / base:.2f}x); the GPU series alone written by prometheus-client "
              f"{lib * 1e3:.1f} ms (ratio {scrape / lib:.2f}x)")


if __name__ == "__main__":
    main()
