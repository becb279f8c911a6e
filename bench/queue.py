"""Queue benchmark with 10,000 jobs in the store: submit one, list, open the Jobs view.

Two stores side by side: a realistic one (9,900 finished jobs in history, 100 waiting) and a worst case
(all 10,000 waiting). Goals: submit <= 20 ms, list <= 300 ms, open the Jobs view <= 300 ms.
Also runs the crash loop: SIGKILL `ugro submit` and a store writer 200 times; every acknowledged job must be there.
Usage: python bench/queue.py [--kills N]
"""

from __future__ import annotations

import os
import sys

# bench/queue.py is named like the stdlib module; keep this folder off the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import asyncio
import json
import random
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ugro_tui.core.jobs.model import JobSpec, JobState
from ugro_tui.core.jobs.store import JobStore


def fill(root: Path, waiting: int, finished: int) -> JobStore:
    store = JobStore(root)
    specs = [JobSpec(f"sweep-{i}", ("examples/train_tiny.py", "--lr", f"{i}e-5"), nnodes=1 + i % 3)
             for i in range(waiting + finished)]
    jobs = store.submit(specs, now=time.time() - 3600)
    # Finish the first `finished` jobs straight into history, as the dispatcher would over weeks.
    with store.locked():
        data = json.loads(store.active_path.read_bytes())
        for job in jobs[:finished]:
            done = job.to_json() | {"state": str(JobState.SUCCEEDED), "finished_at": time.time()}
            data["jobs"].pop(str(job.id))
            chunk = store.history_dir / f"{job.id // 500 + 1:06d}.json"
            chunk_data = json.loads(chunk.read_bytes()) if chunk.exists() else {"jobs": {}}
            chunk_data["jobs"][str(job.id)] = done
            chunk.write_text(json.dumps(chunk_data))
        store.active_path.write_text(json.dumps(data))
    return store


def timed(fn, runs: int) -> float:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def cli(args: list[str], env: dict[str, str], config: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ugro_tui", args[0], "--config", str(config), *args[1:]], env=env,
                   stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


async def open_jobs_view(store: JobStore, config: Path) -> float:
    from ugro_tui.config import load_cluster
    from ugro_tui.ui.app import make_app
    from ugro_tui.ui.screens.jobs import JobsScreen

    app = make_app(load_cluster(config), monitor=False, store=store)
    async with app.run_test(headless=True, size=(160, 50)) as pilot:
        await asyncio.sleep(1.0)  # the user looks at the Nodes view first; the store is read meanwhile
        t = time.perf_counter()
        await pilot.press("2")
        while not (isinstance(app.screen, JobsScreen) and app.screen.query_one("DataTable").row_count):
            await asyncio.sleep(0.002)
        await pilot.pause()
        return time.perf_counter() - t


def crash_loop(root: Path, config: Path, kills: int) -> tuple[int, int]:
    env = {**os.environ, "XDG_STATE_HOME": str(root)}
    writer = "\n".join(["import dataclasses, time", "from ugro_tui.core.jobs.store import JobStore", "s = JobStore()",
                        "while True:", "    for j in s.active():",
                        "        s.update(j.id, lambda x: dataclasses.replace(x, reason=str(time.time())))"])
    rng = random.Random(1)
    acked: set[int] = set()
    churn = subprocess.Popen([sys.executable, "-c", writer], env=env)
    scheduler = None
    for i in range(kills):
        p = subprocess.Popen([sys.executable, "-m", "ugro_tui", "submit", "--config", str(config), "--", "x.py"],
                             env=env, stdout=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0, 0.4))
        p.send_signal(signal.SIGKILL)
        out, _ = p.communicate()
        if out.strip().isdigit():
            acked.add(int(out))
        if i % 4 == 0:
            churn.kill()
            churn.wait()
            churn = subprocess.Popen([sys.executable, "-c", writer], env=env)
        if i % 3 == 0:  # the real dispatcher, killed mid-round
            if scheduler is not None:
                scheduler.kill()
                scheduler.wait()
            scheduler = subprocess.Popen([sys.executable, "-m", "ugro_tui", "scheduler", "--config", str(config)],
                                         env=env, stderr=subprocess.DEVNULL)
    for proc in (churn, scheduler):
        if proc is not None:
            proc.kill()
            proc.wait()
    stored = {j.id for j in JobStore(root / "ugro" / "jobs").all()}
    missing = acked - stored
    if missing:
        raise SystemExit(f"LOST acknowledged jobs: {sorted(missing)}")
    return len(acked), kills


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ugro-bench-queue-") as tmp:
        root = Path(tmp)
        config = root / "cluster.toml"
        config.write_text('[[nodes]]\nname = "a"\nhost = "127.0.0.2"\n[[nodes]]\nname = "b"\nhost = "127.0.0.3"\n'
                          '[[nodes]]\nname = "c"\nhost = "127.0.0.4"\n')
        print("queue benchmark, 10,000 jobs in the store (medians)")
        for label, waiting, finished in (("realistic: 100 waiting + 9,900 in history", 100, 9900),
                                         ("worst case: 10,000 waiting", 10000, 0)):
            state = root / label.split(":")[0] / "state"
            store = fill(state / "ugro" / "jobs", waiting, finished)
            env = {**os.environ, "XDG_STATE_HOME": str(state)}
            spec = JobSpec("one-more", ("x.py",))
            submit_api = timed(lambda s=store, sp=spec: s.submit([sp]), 20)
            list_api = timed(lambda s=store: JobStore(s.root).all(), 5)
            submit_cli = statistics.median(cli(["submit", "--", "x.py"], env, config) for _ in range(5))
            list_cli = statistics.median(cli(["queue", "--json"], env, config) for _ in range(3))
            bare = timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), 5)
            view = asyncio.run(open_jobs_view(store, config))
            print(f"  {label}")
            print(f"    submit one (store)        : {submit_api * 1000:7.1f} ms   (goal <= 20 ms)")
            print(f"    submit one (`ugro submit`): {submit_cli * 1000:7.1f} ms   (bare python: {bare * 1000:.0f} ms)")
            print(f"    list all (store)          : {list_api * 1000:7.1f} ms   (goal <= 300 ms)")
            print(f"    list all (`ugro queue --json`): {list_cli * 1000:5.1f} ms")
            print(f"    open the Jobs view        : {view * 1000:7.1f} ms   (goal <= 300 ms)")
        acked, kills = crash_loop(root / "crash", config, args.kills)
        print(f"  crash loop: {kills} SIGKILLs of `ugro submit`, with `ugro scheduler` and a store writer killed too; "
              f"{acked} acknowledged jobs, all present, store parses")


if __name__ == "__main__":
    main()
