"""Early stopping: pure rules over the trials' stored metric histories, so a restarted dispatcher decides the same.

- median (Optuna's MedianPruner): a trial is stopped when its best value so far is worse than the median of the
  other trials' values at its latest step (each other trial's value at that step, or the last one before it, among
  trials that reached the step and were not pruned), once `warmup_steps` are past and `min_trials` others count.
- asha (asynchronous successive halving, as Ray Tune's ASHA): rungs at grace * R^k steps (up to max_t). When a
  trial reaches a rung, its value there must be within the best 1/R of the values of the trials that reached that
  rung before it did; the first to arrive always goes on. Arrival times are stored, so the verdict never changes.

Values that are nan count as the worst."""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ugro_tui.core.jobs.model import Job, JobState, Point


@dataclass(frozen=True)
class Trial:
    id: int
    history: tuple[Point, ...]   # by step
    pruned: bool = False


@dataclass(frozen=True)
class Verdict:
    rule: str
    step: int
    value: float
    threshold: float
    trials: int

    def reason(self, metric: str, goal: str) -> str:
        what = "median" if self.rule == "median" else "rung cutoff"
        kept = "lowest" if goal == "min" else "highest"
        return (f"pruned ({self.rule}) at step {self.step}: {metric} {self.value:.4g} worse than the {what} "
                f"{self.threshold:.4g} of {self.trials} other trial{'s' if self.trials != 1 else ''} "
                f"({kept} is better)")


def _key(value: float, goal: str) -> float:
    """Lower is better, nan the worst."""
    if math.isnan(value):
        return math.inf
    return value if goal == "min" else -value


def worse(a: float, b: float, goal: str) -> bool:
    return _key(a, goal) > _key(b, goal)


def value_at(history: Sequence[Point], step: int) -> float | None:
    """The value reported at `step`, or the last one before it; None when it started later."""
    at = bisect.bisect_right(history, step, key=lambda p: p[0])
    return history[at - 1][1] if at else None


def median_rule(trial: Trial, others: Iterable[Trial], *, goal: str, warmup_steps: int = 0,
                min_trials: int = 5) -> Verdict | None:
    if not trial.history:
        return None
    step = trial.history[-1][0]
    if step < warmup_steps:
        return None
    values = []
    for other in others:
        if other.id == trial.id or other.pruned or not other.history or other.history[-1][0] < step:
            continue
        value = value_at(other.history, step)
        if value is not None and not math.isnan(value):
            values.append(value)
    if len(values) < max(1, min_trials):
        return None
    best = min((v for _, v, _ in trial.history), key=lambda v: _key(v, goal))
    middle = statistics.median(values)
    if worse(best, middle, goal):
        return Verdict("median", step, best, middle, len(values))
    return None


def rungs(grace: int, reduction_factor: int, max_t: int, upto: int) -> list[int]:
    """The rungs' steps up to `upto` (and max_t when set)."""
    out = []
    rung = max(1, grace)
    while rung <= upto and (max_t <= 0 or rung <= max_t):
        out.append(rung)
        rung *= max(2, reduction_factor)
    return out


def _arrival(history: Sequence[Point], rung: int) -> tuple[float, float] | None:
    """(value, time) of the first point at or past the rung."""
    at = bisect.bisect_left(history, rung, key=lambda p: p[0])
    return (history[at][1], history[at][2]) if at < len(history) else None


def quantile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    low = math.floor(pos)
    frac = pos - low
    if frac == 0 or xs[low] == xs[min(low + 1, len(xs) - 1)]:
        return xs[low]
    return xs[low] + (xs[low + 1] - xs[low]) * frac


def asha_rule(trial: Trial, others: Iterable[Trial], *, goal: str, grace: int = 1, reduction_factor: int = 3,
              max_t: int = 0) -> Verdict | None:
    if not trial.history:
        return None
    others = [o for o in others if o.id != trial.id]
    for rung in rungs(grace, reduction_factor, max_t, trial.history[-1][0]):
        mine = _arrival(trial.history, rung)
        if mine is None:
            break
        earlier = []
        for other in others:
            theirs = _arrival(other.history, rung)
            if theirs is not None and (theirs[1], other.id) < (mine[1], trial.id):
                earlier.append(_key(theirs[0], goal))
        if not earlier:
            continue
        cutoff = quantile(earlier, 1 / max(2, reduction_factor))
        if _key(mine[0], goal) > cutoff:
            shown = cutoff if goal == "min" else -cutoff
            return Verdict("asha", rung, mine[0], shown, len(earlier))
    return None


def judge(jobs: Sequence[Job]) -> dict[int, str]:
    """Which running trials of one sweep to stop, and why (the settings come from each trial's own spec)."""
    trials = [Trial(j.id, j.metric, j.state is JobState.PRUNED or bool(j.prune)) for j in jobs]
    out = {}
    for job, trial in zip(jobs, trials, strict=True):
        spec = job.spec
        if job.state is not JobState.RUNNING or job.prune or job.cancel_requested or not spec.early_stop:
            continue
        if spec.early_stop == "median":
            verdict = median_rule(trial, trials, goal=spec.goal, warmup_steps=spec.warmup_steps,
                                  min_trials=spec.min_trials)
        else:
            verdict = asha_rule(trial, trials, goal=spec.goal, grace=spec.grace,
                                reduction_factor=spec.reduction_factor, max_t=spec.max_t)
        if verdict is not None:
            out[job.id] = verdict.reason(spec.metric, spec.goal)
    return out
