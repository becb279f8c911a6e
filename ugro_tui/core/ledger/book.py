"""The ledger: per job and GPU it held, and per node and day by user (idle GPUs under "idle"), what was used.

Two files in `$XDG_STATE_HOME/ugro/ledger/`, each replaced atomically: `jobs.json` (per job, per GPU) and
`days.json` (per day, node and user: every GPU-second, a job's under its user). Job rows older than KEEP_DAYS
after their job ended are dropped; the day rows keep their share. A damaged file is set aside as
`*.corrupt-<time>`, the other one's figures stand, and the loss is reported (as the queue does)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ugro_tui import paths
from ugro_tui.atomic import write_atomic
from ugro_tui.core.ledger.history import GpuHistory
from ugro_tui.core.ledger.meter import GpuMeter, Step, Usage
from ugro_tui.core.telemetry.model import GpuSample

KEEP_DAYS = 90
IDLE = "idle"  # the user of a GPU no job held and no process used

Holder = Callable[[str, int], int | None]  # (node, GPU index) -> the job that holds it, if any


def day_of(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(at))


class Book:
    def __init__(self, root: Path | None = None, *, reader: bool = False) -> None:
        self.root = root or paths.state_dir() / "ledger"
        self.reader = reader  # a client's copy (`ugro usage`, the Usage view): it sets nothing aside
        self.meters: dict[tuple[str, int], GpuMeter] = {}
        self.jobs: dict[int, dict[str, Any]] = {}  # id -> {"user", "ended", "gpus": {"node:index": Usage}}
        self.days: dict[str, dict[str, dict[str, Usage]]] = {}  # day -> node -> user -> Usage
        self.recovered: list[str] = []  # files set aside since the last load, for the user to hear of
        self.load()

    # --- recording -------------------------------------------------------------------------------------------

    def observe(self, node: str, at: float, gpus: Iterable[GpuSample], holder: Holder, login: str,
                cpu_pct: float | None = None) -> None:
        """One sample of a node's GPUs: each interval since the last goes to the job holding the GPU (its user is
        the node's `login`, whom ugro runs jobs as there), else to the users of its processes (split evenly),
        else to idle."""
        day = day_of(at)
        for gpu in gpus:
            meter = self.meters.setdefault((node, gpu.index), GpuMeter())
            step = meter.step(at, gpu.power_w, gpu.energy_mj)
            job_id = holder(node, gpu.index)
            if job_id is not None:
                row = self.jobs.setdefault(job_id, {"user": login, "ended": None, "gpus": {}, "history": {}})
                key = f"{node}:{gpu.index}"
                row["gpus"].setdefault(key, Usage()).add(step, gpu.utilization_pct, gpu.memory_used_mib)
                row["history"].setdefault(key, GpuHistory()).add(at, gpu.utilization_pct, gpu.memory_used_mib,
                                                                 gpu.power_w, cpu_pct)
                users = [login]
            else:
                users = sorted({p.user or "unknown" for p in gpu.processes}) or [IDLE]
            share = len(users)
            for user in users:
                part = Step(step.seconds / share, step.wh / share, step.source)
                self.days.setdefault(day, {}).setdefault(node, {}).setdefault(user, Usage()).add(
                    part, gpu.utilization_pct, gpu.memory_used_mib)

    def ended(self, job_id: int, at: float) -> None:
        if job_id in self.jobs:
            self.jobs[job_id]["ended"] = at

    def job(self, job_id: int) -> Usage | None:
        """A job's use of all its GPUs together."""
        row = self.jobs.get(job_id)
        if row is None:
            return None
        total = Usage()
        for usage in row["gpus"].values():
            total.merge(usage)
        return total

    def prune(self, now: float) -> None:
        limit = now - KEEP_DAYS * 86400
        self.jobs = {i: r for i, r in self.jobs.items() if r["ended"] is None or r["ended"] >= limit}
        oldest = day_of(limit)
        self.days = {d: v for d, v in self.days.items() if d >= oldest}

    # --- the files -------------------------------------------------------------------------------------------

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        jobs = {str(i): {"user": r["user"], "ended": r["ended"],
                         "gpus": {k: u.to_json() for k, u in r["gpus"].items()},
                         "history": {k: h.to_json() for k, h in r["history"].items()}} for i, r in self.jobs.items()}
        days = {d: {n: {u: x.to_json() for u, x in users.items()} for n, users in nodes.items()}
                for d, nodes in self.days.items()}
        write_atomic(self.root / "jobs.json", json.dumps({"version": 1, "jobs": jobs}))
        write_atomic(self.root / "days.json", json.dumps({"version": 1, "days": days}))

    def load(self) -> None:
        jobs = self._read("jobs.json", "jobs")
        days = self._read("days.json", "days")
        try:
            self.jobs = {int(i): {"user": str(r["user"]), "ended": r.get("ended"),
                                  "gpus": {str(k): Usage.from_json(u) for k, u in r["gpus"].items()},
                                  "history": {str(k): GpuHistory.from_json(h)
                                              for k, h in (r.get("history") or {}).items()}}
                         for i, r in (jobs or {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            self._set_aside("jobs.json")
            self.jobs = {}
        try:
            self.days = {str(d): {str(n): {str(u): Usage.from_json(x) for u, x in users.items()}
                                  for n, users in nodes.items()} for d, nodes in (days or {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            self._set_aside("days.json")
            self.days = {}

    def _read(self, name: str, key: str) -> dict[str, Any] | None:
        path = self.root / name
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self._set_aside(name)
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get(key), dict):
            self._set_aside(name)
            return None
        return doc[key]

    def _set_aside(self, name: str) -> None:
        path = self.root / name
        if self.reader:  # the daemon, which owns the files, sets it aside and says so
            self.recovered.append(f"the ledger's {name} is damaged; its figures are left out")
            return
        target = path.with_name(f"{name}.corrupt-{int(time.time())}")
        try:
            path.rename(target)
        except OSError:
            return
        self.recovered.append(f"the ledger's {name} was damaged: set aside as {target.name}; "
                              "the other file's figures stand")
