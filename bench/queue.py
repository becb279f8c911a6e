"""Queue benchmark with 10,000 jobs in the store, this tree beside an earlier one (default: the commit before the
fast-queue work, d539689) measured in the same run on the same machine.

Two stores: a realistic one (9,900 finished jobs in history, 100 waiting) and a worst case (all 10,000 waiting).
Each code version gets its own copy of each store and is run as a user runs it, in new processes:
`ugro submit` (goal <= 50 ms), `ugro queue --json` (goal <= 100 ms; with a daemon running where the version
answers from it, once its first rounds are over, and without one; the daemon's first answer is printed too), and
the Jobs view: `2` pressed until its rows show (goal <= 150 ms), then a key (`down`) answered (goal <= 50 ms).
Bare Python's start is printed beside them: no command can beat it.
Then the crash loop: SIGKILL `ugro submit`, the dispatcher and a store writer; every acknowledged job must be there.
Usage: python bench/queue.py [--base REF] [--kills N]
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
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
CASES = {"floor": (50, 0), "realistic": (100, 9900), "worst": (10000, 0)}  # (waiting, finished)
JOBS = {case: sum(counts) for case, counts in CASES.items()}
CONFIG = ('[[nodes]]\nname = "a"\nhost = "127.0.0.2"\n[[nodes]]\nname = "b"\nhost = "127.0.0.3"\n'
          '[[nodes]]\nname = "c"\nhost = "127.0.0.4"\n')  # loopback; nothing listens: nothing is placed


def fill(root: Path, waiting: int, finished: int) -> None:
    """A store as weeks of use leave it: `finished` jobs in history chunks, `waiting` in active.json (written as
    both versions read them)."""
    from ugro_tui.core.jobs.model import Job, JobSpec, JobState

    now = time.time() - 3600
    history: dict[Path, dict] = {}
    active: dict[str, dict] = {}
    for i in range(1, waiting + finished + 1):
        spec = JobSpec(f"sweep-{i}", ("examples/train_tiny.py", "--lr", f"{i}e-5"), nnodes=1 + i % 3)
        job = Job(i, spec, submitted_at=now)
        doc = job.to_json()
        if i <= finished:
            doc |= {"state": str(JobState.SUCCEEDED), "finished_at": now + 60}
            history.setdefault(root / "history" / f"{(i - 1) // 500 + 1:06d}.json", {"jobs": {}})["jobs"][str(i)] = doc
        else:
            active[str(i)] = doc
    (root / "history").mkdir(parents=True)
    for path, data in history.items():
        path.write_text(json.dumps(data, separators=(",", ":")))
    next_id = waiting + finished + 1
    (root / "active.json").write_text(json.dumps({"jobs": active, "meta": {"1": {"schema": 1, "next_id": next_id}}},
                                                 separators=(",", ":")))
    (root / "next_id").write_text(str(next_id))


def run(argv: list[str], env: dict[str, str]) -> float:
    """One command's wall time. Run from / : `python -m` puts the working folder first on sys.path, so from the
    repository every version would import this tree (the CLI figures once compared this tree with itself)."""
    t = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd="/")
    return time.perf_counter() - t


def cli_times(env: dict[str, str], config: Path) -> dict[str, float]:
    ugro = [sys.executable, "-m", "ugro_tui"]
    out = {"submit": statistics.median(run([*ugro, "submit", "--config", str(config), "--", "x.py"], env)
                                       for _ in range(7)),
           "queue": statistics.median(run([*ugro, "queue", "--config", str(config), "--json"], env)
                                      for _ in range(5))}
    started = subprocess.run([*ugro, "daemon", "start", "--config", str(config)], env=env, capture_output=True, cwd="/")
    if started.returncode == 0:
        try:
            queue = [*ugro, "queue", "--config", str(config), "--json"]
            out["queue_daemon_first"] = run(queue, env)  # the daemon reads the store once
            # Its first rounds give every waiting job its reason (10,000 documents new, each encoded again once);
            # a daemon runs for weeks, so the figure is taken once two answers read the same.
            deadline, last = time.monotonic() + 60, None
            while time.monotonic() < deadline:
                now = subprocess.run(queue, env=env, capture_output=True, check=True, cwd="/").stdout
                if now == last:
                    break
                last = now
                time.sleep(1.0)
            out["queue_daemon"] = statistics.median(run([*ugro, "queue", "--config", str(config), "--json"], env)
                                                    for _ in range(7))
            out["submit_daemon"] = statistics.median(run([*ugro, "submit", "--config", str(config), "--", "x.py"],
                                                         env) for _ in range(7))
        finally:
            subprocess.run([*ugro, "daemon", "stop", "--config", str(config)], env=env, capture_output=True, cwd="/")
    return out


async def view_times(config: Path, jobs: int) -> dict[str, float]:
    """In this process (the version under test is on sys.path): open the Jobs view (the first time, which makes
    the screen, and again), then keys. Times run from the key's event to the rows shown (or the cursor moved), as
    the app handles them; Textual's pilot adds its own wait for the process to go idle, so it is not used."""
    from textual import events
    from textual.widgets import DataTable

    from ugro_tui.config import load_cluster
    from ugro_tui.ui.app import make_app
    from ugro_tui.ui.screens.jobs import JobsScreen

    async def until(condition) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.0005)

    app = make_app(load_cluster(config), monitor=False)
    async with app.run_test(headless=True, size=(160, 50)) as pilot:
        await until(lambda: app.session.jobs_snapshot is not None and len(app.session.jobs_snapshot) >= jobs)
        await pilot.pause(0.5)  # the user looks at the Nodes view first; the store is read meanwhile
        opens = []
        for _ in range(2):
            t = time.perf_counter()
            app.post_message(events.Key("2", "2"))
            await until(lambda: isinstance(app.screen, JobsScreen)
                        and any(d.row_count for d in app.screen.query(DataTable)))
            opens.append(time.perf_counter() - t)
            await pilot.pause(0.5)
            if len(opens) == 1:
                await pilot.press("1")
                await pilot.pause(0.5)
        table = app.screen.query_one(DataTable)
        keys = []
        for _ in range(9):
            row = table.cursor_row
            t = time.perf_counter()
            app.post_message(events.Key("down", None))
            await until(lambda row=row: table.cursor_row != row)
            keys.append(time.perf_counter() - t)
            await pilot.pause(0.2)
        return {"view": opens[0], "view_again": opens[1], "key": statistics.median(keys)}


def measure(label: str, code: Path, stores: Path, config: Path) -> dict[str, dict[str, float]]:
    """Every figure for one code version, in processes that import it (PYTHONPATH=code)."""
    results = {}
    for case in JOBS:
        state = stores / label / case
        shutil.copytree(stores / "fresh" / case, state)
        env = {**os.environ, "PYTHONPATH": str(code), "XDG_STATE_HOME": str(state),
               "XDG_RUNTIME_DIR": tempfile.mkdtemp(prefix="ugro-rt-", dir="/tmp"), "UGRO_AUTOSTART": "0"}
        figures = cli_times(env, config)
        view = subprocess.run([sys.executable, str(HERE), "--view", str(config), "--jobs", str(JOBS[case])],
                              env=env, capture_output=True, text=True, check=True)
        figures |= json.loads(view.stdout.strip().splitlines()[-1])
        results[case] = figures
    return results


def crash_loop(root: Path, config: Path, kills: int) -> tuple[int, int]:
    from ugro_tui.core.jobs.store import JobStore

    env = {**os.environ, "XDG_STATE_HOME": str(root), "UGRO_AUTOSTART": "0"}
    writer = "\n".join(["import dataclasses, time", "from ugro_tui.core.jobs.store import JobStore", "s = JobStore()",
                        "while True:", "    for j in s.active():",
                        "        s.update(j.id, lambda x: dataclasses.replace(x, reason=str(time.time())))"])
    rng = random.Random(1)
    acked: set[int] = set()
    churn = subprocess.Popen([sys.executable, "-c", writer], env=env)
    scheduler = None
    for i in range(kills):
        p = subprocess.Popen([sys.executable, "-m", "ugro_tui", "submit", "--config", str(config), "--", "x.py"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
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
    parser.add_argument("--base", default="d539689", help="the earlier code to measure beside this tree")
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--view", metavar="CONFIG", help=argparse.SUPPRESS)  # internal: the Jobs view figures
    parser.add_argument("--jobs", type=int, default=10000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.view:
        print(json.dumps(asyncio.run(view_times(Path(args.view), args.jobs))))
        return
    with tempfile.TemporaryDirectory(prefix="ugro-bench-queue-") as tmp:
        root = Path(tmp)
        config = root / "cluster.toml"
        config.write_text(CONFIG)
        base = root / "base"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.base, "ugro_tui"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        for case, (waiting, finished) in CASES.items():
            fill(root / "fresh" / case / "ugro" / "jobs", waiting, finished)
        bare = statistics.median(run([sys.executable, "-c", "pass"], dict(os.environ)) for _ in range(7))
        versions = {"this tree": measure("now", REPO, root, config),
                    f"{args.base}": measure("base", base, root, config)}
        print(f"queue benchmark, 10,000 jobs in the store (medians; bare python starts in {bare * 1000:.0f} ms)")
        rows = (("submit", "`ugro submit` (no daemon)", 50), ("submit_daemon", "`ugro submit` (daemon running)", 50),
                ("queue", "`ugro queue --json` (no daemon)", None),
                ("queue_daemon_first", "`ugro queue --json` (daemon's 1st answer)", None),
                ("queue_daemon", "`ugro queue --json` (daemon running)", 100),
                ("view", "open the Jobs view (`2`, first time)", 150), ("view_again", "open it again", 150),
                ("key", "a key in the Jobs view (`down`)", 50))
        for case, title in (("floor", "floor: 50 jobs (the same screens with next to nothing in them)"),
                            ("realistic", "realistic: 100 waiting + 9,900 in history"),
                            ("worst", "worst case: 10,000 waiting")):
            print(f"  {title}")
            for key, what, goal in rows:
                now = versions["this tree"][case].get(key)
                then = versions[args.base][case].get(key)
                cells = [f"{what:<42}", f"{now * 1000:7.1f} ms" if now is not None else "      –   ",
                         f"(before {then * 1000:7.1f} ms" if then is not None else "(before    –   ",
                         f", {then / now:4.1f}x)" if now and then else ")"]
                print("    " + " ".join(cells) + (f"  goal <= {goal} ms" if goal else ""))
        acked, kills = crash_loop(root / "crash", config, args.kills)
        print(f"  crash loop: {kills} SIGKILLs of `ugro submit`, with `ugro scheduler` and a store writer killed too; "
              f"{acked} acknowledged jobs, all present, store parses")


if __name__ == "__main__":
    main()
