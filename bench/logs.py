"""Logs view under load: 8 ranks x 5,000 lines/s each, headless. Goals: key-to-screen <= 100 ms, bounded memory.

A writer appends `[rankN]:` lines to two nodes' console.log files (local nodes, so `tail` runs for real); the
Logs view's own follower copies them, splits them by rank and writes them to its panes.
Key-to-screen is measured for `]` (page to the next panes) and `w` (re-wrap every pane) while the flood goes on.
Usage: python bench/logs.py [--seconds S]
"""

from __future__ import annotations

import os
import sys

# bench/queue.py is named like the stdlib module; keep this folder off the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import asyncio
import dataclasses
import resource
import statistics
import tempfile
import time
from pathlib import Path

from ugro_tui.config import parse_cluster
from ugro_tui.core.jobs.model import JobSpec, JobState, NodeRun
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.ui.app import make_app
from ugro_tui.ui.screens.logs import LogsScreen

RANKS, RATE = 8, 5000


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    os.environ["XDG_STATE_HOME"] = str(root / "state")
    cluster = parse_cluster({"nodes": [{"name": "a", "host": "localhost"}, {"name": "b", "host": "localhost"}]})
    store = JobStore(root / "jobs")
    [job] = store.submit([JobSpec("flood", ("x",), nnodes=2, nproc_per_node=4)])
    job = store.move(job.id, JobState.STARTING, placement=(("a", (0,)), ("b", (0,))))
    runs = tuple((n, NodeRun(1, str(root / n))) for n in ("a", "b"))
    for _, run in runs:
        Path(run.run_dir).mkdir()
    store.update(job.id, lambda j: dataclasses.replace(j, runs=runs))
    logs = {n: open(Path(run.run_dir) / "console.log", "a") for n, run in runs}  # noqa: SIM115
    app = make_app(cluster, monitor=False, store=store, dispatch=False)
    latencies: dict[str, list[float]] = {"]": [], "w": []}
    async with app.run_test(headless=True, size=(200, 50)) as pilot:
        app.logs_job = job.id
        await pilot.press("3")
        await pilot.pause(0.3)
        screen = app.screen
        assert isinstance(screen, LogsScreen)
        step = 0
        stop = time.monotonic() + args.seconds
        tick = 0.05
        rss_start = None
        while time.monotonic() < stop:
            t0 = time.monotonic()
            per_rank = int(RATE * tick)
            for node, ranks in (("a", range(0, 4)), ("b", range(4, 8))):
                logs[node].write("".join(f"[rank{r}]:step {step + i} loss {1.0 / (step + i + 1):.6f} lorem ipsum\n"
                                         for i in range(per_rank) for r in ranks))
                logs[node].flush()
            step += per_rank
            if rss_start is None and step > RATE:
                rss_start = rss_mib()
            if step // per_rank % 20 == 0:  # every second: a key, timed until the screen shows its effect
                key = "]" if len(latencies["]"]) <= len(latencies["w"]) else "w"
                k0 = time.perf_counter()
                await pilot.press("right_square_bracket" if key == "]" else "w")
                await pilot.pause()
                latencies[key].append(time.perf_counter() - k0)
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - t0)))
        lines = step * RANKS
        await pilot.pause(1.0)
        shown = sum(len(p.output.lines) for p in screen.query("Pane"))
        copied = sum(len(s.lines) for s in screen.demux.ranks.values())
    print(f"logs benchmark: {RANKS} ranks x {RATE} lines/s for {args.seconds:g}s ({lines:,} lines), headless 200x50")
    for key, values in latencies.items():
        print(f"  key-to-screen `{key}`: median {statistics.median(values) * 1000:6.1f} ms, "
              f"max {max(values) * 1000:6.1f} ms   (goal <= 100 ms)")
    print(f"  written: {lines / args.seconds:,.0f} lines/s; in the view's buffers now: {copied:,} lines "
          f"(bounded to 5,000 a rank), on screen panes: {shown:,}")
    print(f"  max RSS: {rss_mib():.0f} MiB (after the first second: {rss_start:.0f} MiB); "
          "panes keep at most 5,000 lines")


if __name__ == "__main__":
    asyncio.run(main())
