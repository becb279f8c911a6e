"""How far a running job is, and when it will end, from its own output.

The step is the newest one the lowest reporting rank printed: `step N ...`, `step N/M`, or a tqdm bar's `N/M [`.
The total comes from the first of: a `step N/M` or tqdm line, `UGRO_TOTAL_STEPS=M` printed by the script or set in
the job's environment, `--steps M` in the job's own arguments. The rate is the steps over the last RATE_WINDOW
seconds as the lines were read, so the ETA follows a job that speeds up or slows down."""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field

STEP = re.compile(r"\bstep[\s:=]+(\d+)(?:\s*/\s*(\d+))?", re.IGNORECASE)
TQDM = re.compile(r"\|\s*(\d+)/(\d+)\s*\[")
TOTAL = re.compile(r"\bUGRO_TOTAL_STEPS=(\d+)")
RATE_WINDOW = 120.0  # seconds of recent steps the rate is taken over


@dataclass(frozen=True)
class Progress:
    """A running job's last step (and its total, when known), the recent step rate and when the step was seen."""

    step: int
    total: int | None = None
    rate: float | None = None  # steps per second, recent
    at: float = 0.0

    def fraction(self) -> float | None:
        return min(1.0, self.step / self.total) if self.total else None

    def eta(self) -> float | None:
        """When the job reaches its total at the recent rate (None: no total or no rate yet)."""
        if not self.total or not self.rate or self.rate <= 0:
            return None
        return self.at + max(0, self.total - self.step) / self.rate

    def to_json(self) -> dict:
        return {"step": self.step, "total": self.total, "rate": self.rate, "at": self.at,
                "fraction": self.fraction(), "eta": self.eta()}

    @classmethod
    def from_json(cls, data: dict | None) -> Progress | None:
        if not isinstance(data, dict) or not isinstance(data.get("step"), int):
            return None
        total, rate, at = data.get("total"), data.get("rate"), data.get("at")
        return cls(data["step"], total if isinstance(total, int) and total > 0 else None,
                   float(rate) if isinstance(rate, (int, float)) and rate > 0 else None,
                   float(at) if isinstance(at, (int, float)) else 0.0)


def total_from_spec(args: tuple[str, ...], env: tuple[tuple[str, str], ...]) -> int | None:
    """`UGRO_TOTAL_STEPS` in the job's environment, else `--steps M` / `--steps=M` in its arguments."""
    for key, value in env:
        if key == "UGRO_TOTAL_STEPS" and value.isdigit() and int(value) > 0:
            return int(value)
    for i, arg in enumerate(args):
        if arg == "--steps" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--steps="):
            value = arg.removeprefix("--steps=")
        else:
            continue
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


@dataclass
class ProgressScan:
    """Fed each rank's complete lines as they are read (in a thread, like the metric); `progress()` says it."""

    total: int | None = None  # from the job's spec; a line's own total wins
    ranks: dict[int, int] = field(default_factory=dict)  # rank -> its newest step
    seen: deque[tuple[float, int]] = field(default_factory=deque)  # (when read, the lowest rank's step)
    line_total: int | None = None

    def feed(self, rank: int, line: str, now: float | None = None) -> None:
        """One line of a rank (a progress bar redrawn with \r: its newest drawing counts)."""
        line = next((part for part in reversed(line.split("\r")) if part.strip()), "")
        found = TQDM.search(line) or STEP.search(line)
        if found is None:
            told = TOTAL.search(line)
            if told and int(told.group(1)) > 0:
                self.line_total = int(told.group(1))
            return
        step = int(found.group(1))
        if found.re is TQDM or found.group(2):
            total = int(found.group(2))
            self.line_total = total if total > 0 else self.line_total
        self.ranks[rank] = step
        if rank == min(self.ranks) and not (self.seen and self.seen[-1][1] == step):  # a sample per new step
            now = time.time() if now is None else now
            if self.seen and self.seen[-1][0] == now:
                self.seen[-1] = (now, step)  # read in one go (a backlog): one sample, no rate from it
            else:
                self.seen.append((now, step))
            while len(self.seen) > 2 and now - self.seen[1][0] > RATE_WINDOW:
                self.seen.popleft()

    def progress(self) -> Progress | None:
        if not self.seen:
            return None
        (t0, s0), (t1, s1) = self.seen[0], self.seen[-1]
        rate = (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None
        return Progress(s1, self.line_total or self.total, rate, t1)
