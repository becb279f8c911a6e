"""Sweeps as a thing: every job of one submission carries its sweep's id; the leaderboard ranks its trials."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ugro_tui.core.jobs.describe import clock_time
from ugro_tui.core.jobs.metric import best
from ugro_tui.core.jobs.model import Job, JobState


@dataclass(frozen=True)
class Row:
    job: Job
    best: tuple[int, float] | None   # (step, value)
    last_step: int | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.job.id, "name": self.job.spec.name, "params": dict(self.job.spec.params),
                "state": str(self.job.state), "best": self.best[1] if self.best else None,
                "best_step": self.best[0] if self.best else None, "last_step": self.last_step,
                "reason": self.job.reason}


@dataclass(frozen=True)
class Sweep:
    id: str
    trials: tuple[Job, ...]   # by job id

    @property
    def name(self) -> str:
        return self.trials[0].spec.name.split("[", 1)[0]

    @property
    def metric(self) -> str:
        return self.trials[0].spec.metric

    @property
    def goal(self) -> str:
        return self.trials[0].spec.goal

    @property
    def early_stop(self) -> str | None:
        return self.trials[0].spec.early_stop

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for job in self.trials:
            out[str(job.state)] = out.get(str(job.state), 0) + 1
        return out

    def leaderboard(self) -> list[Row]:
        """Best first; trials with no value yet last, by id."""
        rows = [Row(j, best(j.metric, self.goal), j.metric[-1][0] if j.metric else None) for j in self.trials]
        sign = 1 if self.goal == "min" else -1
        return sorted(rows, key=lambda r: (r.best is None, sign * r.best[1] if r.best else 0.0, r.job.id))

    def eta(self) -> float | None:
        """When its last trial ends: the running trials at their ETAs; each waiting trial takes the slot that frees
        first and runs as long as the running ones take on average. None: a running trial has no ETA, or none runs."""
        running = [j for j in self.trials if j.state is JobState.RUNNING]
        ends = [j.progress.eta() if j.progress else None for j in running]
        if not running or any(e is None for e in ends):
            return None
        spans = [(j.progress.total or 0) / j.progress.rate for j in running if j.progress and j.progress.rate]
        span = sum(spans) / len(spans)
        slots = sorted(e for e in ends if e is not None)
        for _ in (j for j in self.trials if j.state in (JobState.QUEUED, JobState.STARTING)):
            slots.append(slots.pop(0) + span)
            slots.sort()
        return max(slots)

    def eta_text(self, now: float) -> str:
        """`ETA 14:20` (its last trial's), `ETA unknown`, or "" once every trial has finished."""
        if all(j.state.finished for j in self.trials):
            return ""
        eta = self.eta()
        return f"ETA {clock_time(eta, now)}" if eta is not None else "ETA unknown"

    def saved_steps(self) -> tuple[int, int]:
        """(steps the pruned trials ran, steps they would have run had they gone as far as the longest trial)."""
        ended = [j for j in self.trials if j.metric and j.state is JobState.SUCCEEDED] or self.trials
        longest = max((j.metric[-1][0] for j in ended if j.metric), default=0)
        pruned = [j for j in self.trials if j.state is JobState.PRUNED]
        ran = sum(j.metric[-1][0] if j.metric else 0 for j in pruned)
        return ran, longest * len(pruned)

    def to_json(self) -> dict[str, Any]:
        ran, full = self.saved_steps()
        return {"id": self.id, "name": self.name, "metric": self.metric, "goal": self.goal,
                "early_stop": self.early_stop, "states": self.counts(), "eta": self.eta(),
                "pruned_steps_saved": full - ran,
                "trials": [r.to_json() for r in self.leaderboard()]}


def sweeps(jobs: Iterable[Job]) -> list[Sweep]:
    """Every sweep among `jobs`, newest first."""
    found: dict[str, list[Job]] = {}
    for job in jobs:
        if job.spec.sweep_id:
            found.setdefault(job.spec.sweep_id, []).append(job)
    out = [Sweep(sid, tuple(sorted(trials, key=lambda j: j.id))) for sid, trials in found.items()]
    return sorted(out, key=lambda s: -s.trials[0].id)


def find(jobs: Iterable[Job], sweep_id: str) -> Sweep | None:
    trials = tuple(sorted((j for j in jobs if j.spec.sweep_id == sweep_id), key=lambda j: j.id))
    return Sweep(sweep_id, trials) if trials else None
