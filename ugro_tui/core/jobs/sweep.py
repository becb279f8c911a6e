"""Sweeps: search spaces that become one job per trial, named by their values.

An axis is a grid (`lr=1e-4,2e-4`: every value) or a distribution (`lr=loguniform:1e-5:1e-2`, `lr=uniform:0:1`,
`bs=int:1:8`, `opt=choice:adam,sgd`). Without `trials` every grid combination runs; with it, `trials` are drawn
(ranges need it; discrete axes are then drawn without repeats). A value reaches the job wherever `{KEY}` appears in
its command, and as the env variable UGRO_SWEEP_KEY; every job of one submission carries the sweep's id."""

from __future__ import annotations

import itertools
import math
import random
import re
import secrets
from dataclasses import dataclass, replace

from ugro_tui.core.jobs.model import JobSpec
from ugro_tui.errors import UsageError

KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_JOBS = 1000
DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
_DIST_RE = re.compile(r"^([A-Za-z]+):(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Axis:
    key: str
    kind: str = "grid"                 # grid | uniform | loguniform | int | choice
    values: tuple[str, ...] = ()       # grid and choice
    lo: float = 0.0
    hi: float = 0.0

    @property
    def discrete(self) -> bool:
        return self.kind in ("grid", "choice")

    @property
    def spec(self) -> str:
        """The value part as typed: `1e-4,2e-4` or `loguniform:1e-5:1e-2`."""
        if self.kind == "grid":
            return ",".join(self.values)
        if self.kind == "choice":
            return "choice:" + ",".join(self.values)
        return f"{self.kind}:{readable(self.lo)}:{readable(self.hi)}"

    def draw(self, rng: random.Random) -> str:
        if self.discrete:
            return rng.choice(self.values)
        if self.kind == "int":
            return str(rng.randint(int(self.lo), int(self.hi)))
        if self.kind == "loguniform":
            return readable(math.exp(rng.uniform(math.log(self.lo), math.log(self.hi))))
        return readable(rng.uniform(self.lo, self.hi))


@dataclass(frozen=True)
class Search:
    """A sweep as asked: its axes, and how many trials to draw (None: the whole grid) from which seed."""

    axes: tuple[Axis, ...] = ()
    trials: int | None = None
    seed: int | None = None

    def __bool__(self) -> bool:
        return bool(self.axes)

    @property
    def count(self) -> int:
        if not self.axes:
            return 1
        return self.trials if self.trials is not None else combinations(self.axes)

    @property
    def text(self) -> str:
        return " ".join(f"{a.key}={a.spec}" for a in self.axes)

    def first(self) -> dict[str, str]:
        """The values of a trial to preview (the first grid value, a range's low end)."""
        return {a.key: a.values[0] if a.discrete else (str(int(a.lo)) if a.kind == "int" else readable(a.lo))
                for a in self.axes}


NO_SEARCH = Search()


def readable(value: float) -> str:
    """3.2e-4, 0.25, 1.5e+06 -> "1.5e6": three significant digits, exponents without padding."""
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
        mantissa, exponent = f"{value:.2e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:.3g}"


def _number(text: str, what: str, whole: bool = False) -> float:
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise UsageError(f"{what}: expected {kind}, got {text!r}") from None
    if not math.isfinite(value):
        raise UsageError(f"{what}: expected a finite number, got {text!r}")
    return value


def parse_axis(text: str) -> Axis:
    """"lr=1e-4,2e-4" (grid) or "lr=loguniform:1e-5:1e-2" (distribution); a readable UsageError otherwise."""
    key, sep, values = text.partition("=")
    key = key.strip()
    what = f"sweep {text!r}"
    if not sep or not KEY_RE.match(key):
        raise UsageError(f"{what}: expected KEY=V1,V2 or KEY=uniform:LO:HI with KEY made of letters, digits and _")
    values = values.strip()
    dist = _DIST_RE.match(values)
    if dist and "," not in dist.group(1):
        name, rest = dist.group(1).lower(), dist.group(2)
        if name not in DISTRIBUTIONS:
            raise UsageError(f"{what}: unknown distribution {dist.group(1)!r}; use {', '.join(DISTRIBUTIONS)} "
                             "or a grid V1,V2")
        if name == "choice":
            return Axis(key, "choice", _values(rest, what))
        parts = rest.split(":")
        if len(parts) != 2:
            raise UsageError(f"{what}: expected {name}:LO:HI")
        whole = name == "int"
        lo, hi = (_number(p.strip(), what, whole) for p in parts)
        if lo >= hi:
            raise UsageError(f"{what}: LO must be below HI")
        if name == "loguniform" and lo <= 0:
            raise UsageError(f"{what}: loguniform needs LO above 0")
        return Axis(key, name, lo=lo, hi=hi)
    return Axis(key, "grid", _values(values, what))


def _values(text: str, what: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in text.split(","))
    if not text.strip() or any(not v for v in items):
        raise UsageError(f"{what}: every value must be non-empty (KEY=V1,V2)")
    if len(set(items)) != len(items):
        raise UsageError(f"{what}: a value is repeated")
    return items


def parse_search(axes: list[str] | str | tuple[Axis, ...], trials: int | None = None,
                 seed: int | None = None) -> Search:
    """Axes (KEY=... words, a list or one string separated by spaces, or parsed Axis) with their trial count."""
    if isinstance(axes, tuple):
        parsed = list(axes)
    else:
        parts = axes.split() if isinstance(axes, str) else axes
        parsed = [parse_axis(a) for a in parts if a.strip()]
    keys = [a.key for a in parsed]
    for key in keys:
        if keys.count(key) > 1:
            raise UsageError(f"sweep: {key!r} is given twice")
    if trials is not None:
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            raise UsageError(f"sweep: trials: expected a whole number of 1 or more, got {trials!r}")
        if trials > MAX_JOBS:
            raise UsageError(f"sweep: {trials} trials; at most {MAX_JOBS} jobs per sweep")
        if not parsed:
            raise UsageError("sweep: trials need a search space (--sweep KEY=uniform:LO:HI, KEY=V1,V2, ...)")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise UsageError(f"sweep: seed: expected a whole number, got {seed!r}")
    ranged = [a for a in parsed if not a.discrete]
    if ranged and trials is None:
        raise UsageError(f"sweep: {ranged[0].key}={ranged[0].spec} is a range: say how many trials to draw "
                         "(--trials N)")
    if not ranged and parsed:
        count = combinations(tuple(parsed))
        if trials is None and count > MAX_JOBS:
            raise UsageError(f"sweep: {count} combinations; at most {MAX_JOBS} jobs per sweep")
        if trials is not None and trials > count:
            raise UsageError(f"sweep: {trials} trials asked but the grid has only {count} combinations")
    return Search(tuple(parsed), trials, seed)


def combinations(axes: tuple[Axis, ...]) -> int:
    count = 1
    for axis in axes:
        count *= len(axis.values) if axis.discrete else 0
    return count


def draw(search: Search) -> list[dict[str, str]]:
    """Every trial's values, in order: the grid's product, or `trials` draws from `seed`."""
    keys = [a.key for a in search.axes]
    if search.trials is None:
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(a.values for a in search.axes))]
    rng = random.Random(search.seed)
    if all(a.discrete for a in search.axes):  # without repeats: distinct indexes into the grid's product
        sizes = [len(a.values) for a in search.axes]
        out = []
        for index in rng.sample(range(combinations(search.axes)), search.trials):
            chosen = {}
            for axis, size in zip(reversed(search.axes), reversed(sizes), strict=True):
                index, pick = divmod(index, size)
                chosen[axis.key] = axis.values[pick]
            out.append({k: chosen[k] for k in keys})
        return out
    return [{a.key: a.draw(rng) for a in search.axes} for _ in range(search.trials)]


def new_sweep_id() -> str:
    return secrets.token_hex(3)


def expand(spec: JobSpec, search: Search, sweep_id: str | None = None) -> list[JobSpec]:
    """One spec per trial, in order; no search: the spec itself."""
    if not search:
        return [spec]
    sweep_id = sweep_id or new_sweep_id()
    return [fill_trial(spec, chosen, sweep_id, index) for index, chosen in enumerate(draw(search), 1)]


def fill_trial(spec: JobSpec, chosen: dict[str, str], sweep_id: str | None = None, index: int = 1) -> JobSpec:
    """One trial's job: its values in the command, the env and the name; a checkpoint dir of its own, so no trial
    resumes from another's weights."""
    command = tuple(_fill(part, chosen) for part in spec.command)
    env = dict(spec.env) | {f"UGRO_SWEEP_{k.upper()}": v for k, v in chosen.items()}
    if sweep_id:
        env["UGRO_SWEEP_ID"] = sweep_id
    label = ",".join(f"{k}={v}" for k, v in chosen.items())
    checkpoint_dir = spec.checkpoint_dir
    if checkpoint_dir and sweep_id:
        checkpoint_dir = f"{checkpoint_dir.rstrip('/')}/{sweep_id}-{index}"
    return replace(spec, name=f"{spec.name}[{label}]", command=command, env=tuple(env.items()),
                   sweep_id=sweep_id, params=tuple(chosen.items()), checkpoint_dir=checkpoint_dir)


def _fill(text: str, chosen: dict[str, str]) -> str:
    for key, value in chosen.items():
        text = text.replace("{" + key + "}", value)
    return text
