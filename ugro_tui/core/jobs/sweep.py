"""Sweeps: a grid such as lr=1e-4,2e-4 batch=1,2 becomes one job per combination, named by its values.

A value reaches the job wherever `{KEY}` appears in its command, and as the env variable UGRO_SWEEP_KEY."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace

from ugro_tui.core.jobs.model import JobSpec
from ugro_tui.errors import UsageError

KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_JOBS = 1000

Grid = tuple[tuple[str, tuple[str, ...]], ...]


def parse_axis(text: str) -> tuple[str, tuple[str, ...]]:
    """"lr=1e-4,2e-4" -> ("lr", ("1e-4", "2e-4")); a readable UsageError otherwise."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not KEY_RE.match(key):
        raise UsageError(f"sweep {text!r}: expected KEY=V1,V2 with KEY made of letters, digits and _")
    items = tuple(v.strip() for v in values.split(","))
    if not values.strip() or any(not v for v in items):
        raise UsageError(f"sweep {text!r}: every value must be non-empty (KEY=V1,V2)")
    if len(set(items)) != len(items):
        raise UsageError(f"sweep {text!r}: a value is repeated")
    return key, items


def parse_grid(axes: list[str] | str) -> Grid:
    """Several KEY=V1,V2 axes (a list, or one string separated by spaces); each key once."""
    parts = axes.split() if isinstance(axes, str) else axes
    grid = [parse_axis(a) for a in parts if a.strip()]
    keys = [k for k, _ in grid]
    for key in keys:
        if keys.count(key) > 1:
            raise UsageError(f"sweep: {key!r} is given twice")
    count = combinations(tuple(grid))
    if count > MAX_JOBS:
        raise UsageError(f"sweep: {count} combinations; at most {MAX_JOBS} jobs per sweep")
    return tuple(grid)


def combinations(grid: Grid) -> int:
    count = 1
    for _, values in grid:
        count *= len(values)
    return count


def expand(spec: JobSpec, grid: Grid) -> list[JobSpec]:
    """One spec per combination, in grid order; no grid: the spec itself."""
    if not grid:
        return [spec]
    keys = [k for k, _ in grid]
    out = []
    for values in itertools.product(*(v for _, v in grid)):
        chosen = dict(zip(keys, values, strict=True))
        command = tuple(_fill(part, chosen) for part in spec.command)
        env = dict(spec.env) | {f"UGRO_SWEEP_{k.upper()}": v for k, v in chosen.items()}
        label = ",".join(f"{k}={v}" for k, v in chosen.items())
        out.append(replace(spec, name=f"{spec.name}[{label}]", command=command, env=tuple(env.items())))
    return out


def _fill(text: str, chosen: dict[str, str]) -> str:
    for key, value in chosen.items():
        text = text.replace("{" + key + "}", value)
    return text
