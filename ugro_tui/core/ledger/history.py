"""A job's GPUs over time, kept after it ends: one point per GPU every `step` seconds (5 s to begin with), at most
MAX_POINTS; a long job's history is thinned by halving (every other point goes, the step doubles), so a week-long
job keeps its whole shape at a coarser grain."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STEP = 5.0
MAX_POINTS = 720  # per GPU: an hour at 5 s, then coarser


@dataclass
class GpuHistory:
    step: float = STEP
    # t, util %, memory MiB, power W, and the node's CPU % then (a GPU starved by its input reads in the two)
    points: list[tuple[float, float | None, int | None, float | None, float | None]] = field(default_factory=list)

    def add(self, at: float, util: float | None, memory_mib: int | None, power_w: float | None,
            cpu_pct: float | None = None) -> None:
        if self.points and at - self.points[-1][0] < self.step:
            return
        self.points.append((at, util, memory_mib, power_w, cpu_pct))
        if len(self.points) > MAX_POINTS:
            self.points = self.points[::2]
            self.step *= 2

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "points": [list(p) for p in self.points]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> GpuHistory:
        points = [(float(p[0]), p[1], p[2], p[3], p[4] if len(p) == 5 else None) for p in doc.get("points") or ()
                  if isinstance(p, list | tuple) and len(p) in (4, 5)]  # 4: written before the CPU was kept
        return cls(float(doc.get("step") or STEP), points)
