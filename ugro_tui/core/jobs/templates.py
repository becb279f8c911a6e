"""Job templates: a job's settings saved under a name, as TOML (written with tomli-w, read with tomllib).

A template holds the keys of a job file (`ugro submit --file`) and may add a sweep: `sweep = { lr = ["1e-4", "2e-4"] }`
(a grid) or `sweep = { lr = "loguniform:1e-5:1e-2" }` (a distribution) with `trials = 8` and `seed = 1`.
Yours live in $XDG_CONFIG_HOME/ugro/templates/NAME.toml; the examples shipped with ugro are found after them."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from ugro_tui import data, paths
from ugro_tui.atomic import write_atomic
from ugro_tui.core.jobs.model import INT_FIELDS, USER_KEYS, JobSpec
from ugro_tui.core.jobs.sweep import NO_SEARCH, Search, parse_axis, parse_search
from ugro_tui.errors import UsageError
from ugro_tui.names import NAME_RE

SHIPPED = data.folder("templates")
SPEC_KEYS = USER_KEYS
SEARCH_KEYS = ("sweep", "trials", "seed")
INT_KEYS = (*INT_FIELDS, "keep_last", "keep_best", "port", "health_failures", "max_restarts")
FLOAT_KEYS = ("min_gpu_mem_gb", "gpu_mem_gb", "health_initial_delay", "health_period", "health_timeout")


def user_dir() -> Path:
    return paths.config_home() / "templates"


def search_dirs() -> list[Path]:
    return [user_dir(), SHIPPED]


def names() -> list[str]:
    found: set[str] = set()
    for folder in search_dirs():
        if folder.is_dir():
            found |= {p.stem for p in folder.glob("*.toml")}
    return sorted(found)


def path_of(name: str) -> Path:
    if not NAME_RE.match(name):  # never a path: `../../x` must not read outside the template folders
        raise UsageError(f"template name {name!r}: use letters, digits, . _ - (up to 63)")
    for folder in search_dirs():
        candidate = folder / f"{name}.toml"
        if candidate.is_file():
            return candidate
    known = ", ".join(names()) or "none yet"
    raise UsageError(f"no template {name!r} (templates: {known}; save one from the launch form with ctrl+t)")


def load(name: str) -> tuple[dict[str, Any], Search]:
    """(job-file keys, sweep) of a template."""
    path = path_of(name)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the template: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML: {exc}") from None
    sweep = data.pop("sweep", {})
    trials, seed = data.pop("trials", None), data.pop("seed", None)
    unknown = set(data) - set(SPEC_KEYS)
    if unknown:
        raise UsageError(f"{path}: unknown key {sorted(unknown)[0]!r}; known: {', '.join(SPEC_KEYS + SEARCH_KEYS)}")
    if not isinstance(sweep, dict) or not all((isinstance(v, list) and v) or isinstance(v, str)
                                              for v in sweep.values()):
        raise UsageError(f'{path}: sweep: expected a table of KEY = ["V1", "V2"] or KEY = "loguniform:LO:HI"')
    try:
        axes = tuple(parse_axis(f"{k}={v if isinstance(v, str) else ','.join(map(str, v))}")
                     for k, v in sweep.items())
        return data, parse_search(axes, trials, seed)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None


def to_toml(spec: JobSpec, search: Search = NO_SEARCH) -> dict[str, Any]:
    """A spec as template keys: only what differs from the defaults, so a template reads like what was typed."""
    data = spec.to_json()
    defaults = JobSpec(name="", command=()).to_json()
    out = {k: data[k] for k in SPEC_KEYS if k in ("name", "command", "kind") or data[k] != defaults[k]}
    if search.trials is not None:
        out["trials"] = search.trials
    if search.seed is not None:
        out["seed"] = search.seed
    if search:
        out["sweep"] = {a.key: list(a.values) if a.kind == "grid" else a.spec for a in search.axes}
    return out


def save(name: str, spec: JobSpec, search: Search = NO_SEARCH) -> Path:
    if not NAME_RE.match(name):
        raise UsageError(f"template name {name!r}: use letters, digits, . _ - (up to 63)")
    folder = user_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    write_atomic(path, f"# ugro job template {name!r}: `ugro submit --template {name}`, or load it in the launch "
                 "form (ctrl+o)\n" + tomli_w.dumps(to_toml(spec, search)))
    return path


def apply_sets(data: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """`--set key=value` on template keys; env.NAME=value sets one env variable."""
    data = dict(data)
    for item in sets:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise UsageError(f"--set {item!r}: expected key=value")
        if key.startswith("env."):
            data["env"] = dict(data.get("env", {})) | {key[4:]: value}
        elif key not in SPEC_KEYS:
            raise UsageError(f"--set {key!r}: not a job setting; one of {', '.join(SPEC_KEYS)} or env.NAME")
        elif key == "nnodes" and ":" in value:  # elastic: MIN:MAX, checked with the rest of the job
            data[key] = value
        elif key in INT_KEYS:
            try:
                data[key] = int(value)
            except ValueError:
                raise UsageError(f"--set {key}={value}: expected a whole number") from None
        elif key in FLOAT_KEYS:
            try:
                data[key] = float(value)
            except ValueError:
                raise UsageError(f"--set {key}={value}: expected a number") from None
        elif key in ("command", "worker_command"):
            data[key] = shlex.split(value)
        elif key in ("sync_git", "gpu_mem_enforce"):
            if value.lower() not in ("true", "false"):
                raise UsageError(f"--set {key}={value}: expected true or false")
            data[key] = value.lower() == "true"
        elif key == "data":
            data[key] = shlex.split(value)
        elif key in ("nodes", "after"):
            items = [v.strip() for v in value.split(",") if v.strip()]
            if key == "after" and not all(v.isdigit() for v in items):
                raise UsageError(f"--set after={value}: expected job ids such as 3,4")
            data[key] = [int(v) for v in items] if key == "after" else items
        else:
            data[key] = value
    return data
