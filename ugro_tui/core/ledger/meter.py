"""Energy of one GPU over time, and what a job (or nobody) used of it.

Energy comes from NVML's total-energy counter where the GPU has one (millijoules since the driver loaded), else
from the integral of its power samples (trapezoids), and each figure says which. A counter that goes backwards
(a driver reload) starts a new segment and is never counted as negative. A gap longer than MAX_GAP (a node that
was offline) counts nothing: neither time nor energy is guessed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_GAP = 30.0  # seconds between two samples beyond which the interval is not counted
COUNTER, POWER, NONE = "counter", "power", "none"  # how an interval's energy was known


@dataclass(frozen=True)
class Step:
    seconds: float
    wh: float
    source: str  # COUNTER, POWER or NONE (power read [N/A]: GPU-hours, no energy)


@dataclass
class GpuMeter:
    """The previous sample of one GPU."""

    at: float | None = None
    power_w: float | None = None
    counter_mj: float | None = None

    def step(self, at: float, power_w: float | None, counter_mj: float | None) -> Step:
        """The interval since the previous sample: its seconds and energy (the first sample opens it)."""
        prev_at, prev_power, prev_counter = self.at, self.power_w, self.counter_mj
        if prev_at is not None and at <= prev_at:
            return Step(0.0, 0.0, NONE)  # a sample out of order: nothing to count, and the meter keeps its place
        self.at, self.power_w, self.counter_mj = at, power_w, counter_mj
        if prev_at is None or at - prev_at > MAX_GAP:
            return Step(0.0, 0.0, NONE)
        seconds = at - prev_at
        if counter_mj is not None and prev_counter is not None and counter_mj >= prev_counter:
            return Step(seconds, (counter_mj - prev_counter) / 3.6e6, COUNTER)
        known = [p for p in (prev_power, power_w) if p is not None and p >= 0]
        if not known:
            return Step(seconds, 0.0, NONE)
        return Step(seconds, sum(known) / len(known) * seconds / 3600.0, POWER)


@dataclass
class Usage:
    """What one holder (a job, or the idle/other users of a node on a day) used of one or more GPUs."""

    gpu_seconds: float = 0.0
    wh: float = 0.0
    util_seconds: float = 0.0  # utilization % x seconds, for the time-weighted mean
    peak_util: float = 0.0
    peak_memory_mib: int = 0
    sources: set[str] = field(default_factory=set)

    def add(self, step: Step, util_pct: float | None = None, memory_mib: int | None = None) -> None:
        self.gpu_seconds += step.seconds
        self.wh += step.wh
        if step.seconds:
            self.sources.add(step.source)
        if util_pct is not None:
            self.util_seconds += util_pct * step.seconds
            self.peak_util = max(self.peak_util, util_pct)
        if memory_mib is not None:
            self.peak_memory_mib = max(self.peak_memory_mib, memory_mib)

    def merge(self, other: Usage) -> None:
        self.gpu_seconds += other.gpu_seconds
        self.wh += other.wh
        self.util_seconds += other.util_seconds
        self.peak_util = max(self.peak_util, other.peak_util)
        self.peak_memory_mib = max(self.peak_memory_mib, other.peak_memory_mib)
        self.sources |= other.sources

    @property
    def mean_util(self) -> float | None:
        return self.util_seconds / self.gpu_seconds if self.gpu_seconds else None

    @property
    def energy_source(self) -> str:
        """counter, power, mixed, or none: how the energy was known (none: power read [N/A] throughout)."""
        known = self.sources - {NONE}
        if not known:
            return NONE
        if NONE in self.sources:
            return "partial"
        return known.pop() if len(known) == 1 else "mixed"

    def cost(self, price_per_kwh: float) -> float:
        return self.wh / 1000.0 * price_per_kwh

    def to_json(self) -> dict[str, Any]:
        return {"gpu_seconds": round(self.gpu_seconds, 3), "wh": round(self.wh, 6),
                "util_seconds": round(self.util_seconds, 3), "peak_util": self.peak_util,
                "peak_memory_mib": self.peak_memory_mib, "sources": sorted(self.sources)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Usage:
        return cls(float(doc.get("gpu_seconds", 0.0)), float(doc.get("wh", 0.0)),
                   float(doc.get("util_seconds", 0.0)), float(doc.get("peak_util", 0.0)),
                   int(doc.get("peak_memory_mib", 0)), {str(s) for s in doc.get("sources") or ()})
