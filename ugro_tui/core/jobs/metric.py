"""A job's metric history, parsed from its ranks' local log copies: what early stopping and the leaderboard read.

Each rank's lines are matched against the job's pattern (`step N loss X` by default); the job's value at a step is
the mean over ranks when every rank reported it, else the lowest reporting rank's. The history is stored with the
job, so it survives a restarted dispatcher (which re-reads the copies from the start and finds the same points) and
a retry (the newer attempt's value replaces a step's value; the time the step was first reached is kept)."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

from ugro_tui.core.jobs.logs import CopyReader, LineCarry
from ugro_tui.core.jobs.model import Job, JobSpec, Point
from ugro_tui.core.jobs.progress import Progress, ProgressScan, total_from_spec

DEFAULT_PATTERN = r"\bstep[\s:=]+(\d+)\b.*?\b{name}[\s:=]+([-+0-9.eE]+|nan|inf)"
MAX_POINTS = 2000  # stored per job; older points are thinned beyond it


def pattern(spec: JobSpec) -> re.Pattern[str]:
    if spec.metric_regex:
        return re.compile(spec.metric_regex)
    return re.compile(DEFAULT_PATTERN.format(name=re.escape(spec.metric)), re.IGNORECASE)


def parse_point(match: re.Match[str]) -> tuple[int, float] | None:
    try:
        return int(float(match.group(1))), float(match.group(2))
    except (ValueError, TypeError, OverflowError):
        return None


@dataclass
class _Reading:
    reader: CopyReader
    pattern: re.Pattern[str]
    carry: LineCarry = field(default_factory=LineCarry)
    ranks: dict[int, dict[int, float]] = field(default_factory=dict)
    changed: set[int] = field(default_factory=set)  # steps with a new value since the last update
    history: tuple[Point, ...] | None = None        # the job's history as this reading has it
    scan: ProgressScan = field(default_factory=ProgressScan)  # the step, its total and rate (progress.py)


class MetricFollower:
    """Per running attempt, reads only what the copies gained since the last call (blocking: call it in a thread)."""

    def __init__(self) -> None:
        self._readings: dict[tuple[int, int], _Reading] = {}
        self._saved: dict[int, float] = {}  # job id -> when its history was last worth a store write

    def due(self, job: Job, every: float) -> bool:
        """Whether a new history is worth a store write now: at once for a trial that early stopping judges, else
        every `every` seconds (the history is kept in memory between)."""
        now = time.monotonic()
        if not job.spec.early_stop and now - self._saved.get(job.id, 0.0) < every:
            return False
        self._saved[job.id] = now
        return True

    def update(self, job: Job, now: float) -> tuple[Point, ...]:
        """The job's history with whatever its copies say now."""
        key = (job.id, job.attempt)
        reading = self._readings.get(key)
        if reading is None:
            reading = self._readings[key] = _Reading(CopyReader(job), pattern(job.spec), scan=ProgressScan(
                total=total_from_spec(job.spec.command, job.spec.env)))
        for index, (node, _) in enumerate(job.runs):
            for source, data in reading.reader.read_new(node):
                rank = source.rank
                if rank is None:  # the console: a command job's only output; torchrun's own lines otherwise
                    if job.spec.kind != "command":
                        continue
                    rank = index
                text = b"".join(reading.carry.feed(source, data)).decode("utf-8", "replace")
                drawing = reading.carry.pending(source)  # a progress bar redrawn in place has no newline yet
                for line in text.split("\n") + ([drawing.decode("utf-8", "replace")] if drawing else []):
                    reading.scan.feed(rank, line, now)
                    found = reading.pattern.search(line)
                    point = parse_point(found) if found else None
                    if point is not None:
                        reading.ranks.setdefault(rank, {})[point[0]] = point[1]
                        reading.changed.add(point[0])
        base = reading.history if reading.history is not None else job.metric
        if not reading.changed:
            return base
        world = job.spec.nnodes * (1 if job.spec.kind == "command" else job.spec.nproc_per_node)
        values = combine(reading.ranks, world, reading.changed)
        reading.changed = set()
        reading.history = merge(base, values, now)  # kept here too: the caller may store it later, not now
        return reading.history

    def progress(self, job: Job) -> Progress | None:
        """How far the job's running attempt is, from what `update` read (None: no step seen yet)."""
        reading = self._readings.get((job.id, job.attempt))
        found = reading.scan.progress() if reading is not None else None
        return found or job.progress

    def forget(self, job_id: int) -> None:
        self._saved.pop(job_id, None)
        for key in [k for k in self._readings if k[0] == job_id]:
            del self._readings[key]


def combine(ranks: dict[int, dict[int, float]], world: int, steps: set[int] | None = None) -> dict[int, float]:
    """step -> the job's value: the mean when all `world` ranks reported the step, else the lowest rank's.
    Only `steps` when given (those that changed)."""
    if not ranks:
        return {}
    out: dict[int, float] = {}
    everyone = len(ranks) >= world
    wanted = steps if steps is not None else {s for points in ranks.values() for s in points}
    for step in sorted(wanted):
        values = [points[step] for _, points in sorted(ranks.items()) if step in points]
        out[step] = sum(values) / len(values) if everyone and len(values) == len(ranks) else values[0]
    return out


def merge(history: tuple[Point, ...], values: dict[int, float], now: float) -> tuple[Point, ...]:
    """New values into a history: a new step is stamped `now`; a step seen before keeps its time, takes the value."""
    points = {step: (value, seen) for step, value, seen in history}
    for step, value in values.items():
        old = points.get(step)
        points[step] = (value, old[1] if old else now)
    merged = tuple((step, value, seen) for step, (value, seen) in sorted(points.items()))
    while len(merged) > MAX_POINTS:
        merged = thin(merged)
    return merged


def thin(points: tuple[Point, ...]) -> tuple[Point, ...]:
    """Every other point of the older half, and of the newer half's older half when that is not enough: the
    latest quarter stays exact."""
    half = len(points) // 2
    return points[:half:2] + (points[half:] if len(points) - half <= MAX_POINTS else thin(points[half:]))


def best(history: tuple[Point, ...], goal: str) -> tuple[int, float] | None:
    """(step, value) of the best finite value, the earliest on ties."""
    found: tuple[int, float] | None = None
    for step, value, _ in history:
        if math.isfinite(value) and (found is None or (value < found[1] if goal == "min" else value > found[1])):
            found = (step, value)
    return found
