"""How a request for a job becomes a checked JobSpec (and its sweep): the one way for `ugro submit`, job files,
templates with --set, and the API. Each bad value is one line naming the field (UsageError, exit 2 or HTTP 400)."""

from __future__ import annotations

import os
import shlex
import tomllib
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ugro_tui.config import Cluster
from ugro_tui.core.jobs import templates
from ugro_tui.core.jobs.model import USER_KEYS, Job, JobSpec
from ugro_tui.core.jobs.nodecount import parse_nnodes
from ugro_tui.core.jobs.sharing import Card, too_big
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.jobs.sweep import Search, expand, new_sweep_id, parse_axis, parse_search
from ugro_tui.core.jobs.validate import spec_problem
from ugro_tui.errors import UsageError
from ugro_tui.names import ENV_NAME_RE

SPEC_KEYS = set(USER_KEYS)
SEARCH_FLAGS = ("keep_last", "keep_best", "max_concurrent", "metric", "goal", "metric_regex", "early_stop",
                "warmup_steps", "min_trials",
                "grace", "reduction_factor", "max_t")
SERVICE_FLAGS = ("port", "health", "health_initial_delay", "health_period", "health_timeout", "health_failures",
                 "restart", "max_restarts")




@dataclass
class Request:
    """`ugro submit`'s flags, for callers without a command line (the API): None is "not given", as there."""

    file: str | None = None
    template: str | None = None
    set: list[str] = field(default_factory=list)
    sweep: list[str] = field(default_factory=list)
    trials: int | None = None
    seed: int | None = None
    command: list[str] = field(default_factory=list)
    env: list[str] | None = None
    name: str | None = None
    kind: str | None = None
    nnodes: int | str | None = None  # 3, or "2:3" (elastic)
    elastic_restarts: int | None = None
    nproc_per_node: int | None = None
    gpus_per_node: int | None = None
    min_gpu_mem: float | None = None
    gpu_mem: float | None = None
    gpu_mem_enforce: bool = False
    preemptible: bool = False
    nodes: str | None = None
    workdir: str | None = None
    priority: int | None = None
    after: list[int] | None = None
    max_retries: int | None = None
    checkpoint_dir: str | None = None
    sync: str | None = None
    sync_git: bool = False
    data: list[str] | None = None
    worker_command: str | None = None
    max_concurrent: int | None = None
    metric: str | None = None
    goal: str | None = None
    metric_regex: str | None = None
    early_stop: str | None = None
    warmup_steps: int | None = None
    min_trials: int | None = None
    grace: int | None = None
    reduction_factor: int | None = None
    max_t: int | None = None
    keep_last: int | None = None
    keep_best: int | None = None
    port: int | None = None
    health: str | None = None
    health_initial_delay: float | None = None
    health_period: float | None = None
    health_timeout: float | None = None
    health_failures: int | None = None
    restart: str | None = None
    max_restarts: int | None = None


def spec_from_request(args: Request | Namespace, cluster: Cluster, given: dict[str, Any] | None = None,
                      cards: Callable[[], list[Card]] | None = None) -> tuple[JobSpec, Search]:
    """The job a request describes, and its sweep (empty: one job). `args`: `ugro submit`'s flags, or a Request
    with the same fields; `given`: job-file keys that came another way (the web API's body), checked as a job
    file's are; a template named in the flags is their base. `cards`: the cluster's GPUs as far as known (asked only
    of a job that declares its memory per rank)."""
    base: dict[str, Any] = {}
    search = Search()
    if args.file and args.template:
        raise UsageError("ugro submit: give --file or --template, not both")
    if args.template:
        base, search = templates.load(args.template)
    if given is not None:
        unknown = set(given) - SPEC_KEYS
        if unknown:
            raise UsageError(f"unknown key {sorted(unknown)[0]!r}; known: {', '.join(sorted(SPEC_KEYS))}")
        base = {**base, **given}
    elif args.file:
        try:
            base = tomllib.loads(Path(args.file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"{args.file}: cannot read the job file: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{args.file}: not a text file (a job file is TOML)") from None
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{args.file}: invalid TOML: {exc}") from None
        unknown = set(base) - SPEC_KEYS
        if unknown:
            raise UsageError(f"{args.file}: unknown key {sorted(unknown)[0]!r}; known: {', '.join(sorted(SPEC_KEYS))}")
    base = templates.apply_sets(base, args.set)
    if args.sweep or args.trials is not None or args.seed is not None:
        given = {a.key: a for a in search.axes} | {a.key: a for a in map(parse_axis, args.sweep)}  # flags win
        search = parse_search(tuple(given.values()), args.trials if args.trials is not None else search.trials,
                              args.seed if args.seed is not None else search.seed)
    raw_command = base.get("command") or []
    if isinstance(raw_command, str):  # `command = "train.py --lr 3"`: shell words, as the form's args field
        try:
            raw_command = shlex.split(raw_command)
        except ValueError as exc:
            raise UsageError(f"ugro submit: command: {exc}") from None
    if not isinstance(raw_command, list):
        raise UsageError(f"ugro submit: command: expected a list of words or one string, got {raw_command!r}")
    command = list(args.command or raw_command)
    if not command and _pick(args.kind, base, "kind", "torchrun") == "session":
        command = ["session"]  # a session runs no command of its own: its keeper holds the GPUs
    for word in command:
        if not isinstance(word, str):
            raise UsageError(f"ugro submit: command: expected text, got {word!r}")
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("ugro submit: give the script or command after --, e.g. `ugro submit -- train.py --lr 3e-4`")
    if not isinstance(base.get("env", {}), dict):
        raise UsageError(f"ugro submit: env: expected a table of NAME = \"value\", got {base['env']!r}")
    env = dict(base.get("env", {}))
    for item in args.env or []:
        key, sep, value = item.partition("=")
        if not sep or not ENV_NAME_RE.match(key):
            raise UsageError(f"ugro submit: --env {item!r}: expected NAME=VALUE")
        env[key] = value
    nproc = _pick(args.nproc_per_node, base, "nproc_per_node", 1)
    try:
        least, most = parse_nnodes(_pick(args.nnodes, base, "nnodes", 1), "--nnodes" if args.nnodes else "nnodes")
    except UsageError as exc:
        raise UsageError(f"ugro submit: {exc}") from None
    spec = JobSpec(
        name=_pick(args.name, base, "name", Path(command[0]).name),
        command=tuple(command),
        kind=_pick(args.kind, base, "kind", "torchrun"),
        nnodes=most, nnodes_min=least or _pick(None, base, "nnodes_min", 0),
        elastic_restarts=_pick(getattr(args, "elastic_restarts", None), base, "elastic_restarts", 3),
        nproc_per_node=nproc,
        gpus_per_node=_pick(args.gpus_per_node, base, "gpus_per_node", nproc),
        min_gpu_mem_gb=_pick(args.min_gpu_mem, base, "min_gpu_mem_gb", 0.0),
        gpu_mem_gb=_pick(getattr(args, "gpu_mem", None), base, "gpu_mem_gb", None),
        gpu_mem_enforce=True if getattr(args, "gpu_mem_enforce", False) else base.get("gpu_mem_enforce", False),
        preemptible=True if getattr(args, "preemptible", False) else base.get("preemptible", False),
        nodes=tuple(args.nodes.split(",")) if args.nodes else _words(base, "nodes"),
        env=tuple(env.items()),
        workdir=_pick(args.workdir, base, "workdir", None),
        priority=_pick(args.priority, base, "priority", 0),
        after=tuple(args.after or _words(base, "after")),
        max_retries=_pick(args.max_retries, base, "max_retries", 0),
        checkpoint_dir=_pick(args.checkpoint_dir, base, "checkpoint_dir", None),
        template=args.template,
        sync=_pick(getattr(args, "sync", None), base, "sync", None),
        sync_git=True if getattr(args, "sync_git", False) else base.get("sync_git", False),
        data=_data(base, getattr(args, "data", None) or []),
        worker_command=_worker_command(getattr(args, "worker_command", None), base),
        hours=base.get("hours", 12.0), idle_stop_min=base.get("idle_stop_min", 60.0),
        gpu_indexes=tuple(_words(base, "gpu_indexes")), jupyter=base.get("jupyter", False),
        **{key: _pick(getattr(args, key, None), base, key, JobSpec.__dataclass_fields__[key].default)
           for key in (*SEARCH_FLAGS, *SERVICE_FLAGS)},
    )
    validate_spec(spec, cluster)
    if spec.gpu_mem_gb is not None:
        problem = too_big(spec, (cards or (lambda: sim_cards(cluster)))(), round(cluster.gpu_mem_headroom_gb * 1024))
        if problem:
            raise UsageError(f"ugro submit: {problem}")
    if spec.kind == "service" and spec.port is not None:
        from ugro_tui.core.services.follow import port_problem

        problem = port_problem(spec, JobStore().active(), cluster)
        if problem:
            raise UsageError(f"ugro submit: {problem}")
    if spec.early_stop and not search:
        raise UsageError("ugro submit: --early-stop compares the trials of a sweep; give --sweep too")
    return spec, search


def _worker_command(flag: str | None, base: dict[str, Any]) -> tuple[str, ...]:
    value = flag if flag is not None else base.get("worker_command", [])
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise UsageError(f"ugro submit: worker_command: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(w, str) for w in value):
        raise UsageError(f"ugro submit: worker_command: expected a list of words or one string, got {value!r}")
    return tuple(value)


def _words(base: dict[str, Any], key: str) -> tuple[Any, ...]:
    value = base.get(key, [])
    if not isinstance(value, list):
        raise UsageError(f"ugro submit: {key}: expected a list, got {value!r}")
    return tuple(value)


def _data(base: dict[str, Any], flags: list[str]) -> tuple[tuple[str, float, str], ...]:
    from ugro_tui.core.jobs.model import BadSpec, parse_data

    try:
        return parse_data(list(base.get("data", [])) if isinstance(base.get("data", []), list) else base["data"]) + \
            parse_data(flags)
    except BadSpec as exc:
        raise UsageError(f"ugro submit: {exc}") from None


def _pick(flag: Any, base: dict[str, Any], key: str, default: Any) -> Any:
    return flag if flag is not None else base.get(key, default)


def queue(store: JobStore, spec: JobSpec, search: Search, *, hold: bool = False,
          sync_sent: tuple[tuple[str, int, int], ...] = ()) -> tuple[list[Job], str | None, Search]:
    """The checked request stored: its jobs (a sweep's trials, in one write), the sweep's id and its search, whose
    draw is made reproducible (a seed is chosen and said when none was given). One rule for the CLI, the daemon's
    socket and the web API."""
    if search and search.trials is not None and search.seed is None:
        search = Search(search.axes, search.trials, int.from_bytes(os.urandom(4), "big") >> 1)
    sweep_id = new_sweep_id() if search else None
    # A sweep changes only names, args and env, so the spec validated before stands for every job of it.
    return store.submit(expand(spec, search, sweep_id), hold=hold, sync_sent=sync_sent), sweep_id, search


def sim_cards(cluster: Cluster) -> list[Card]:
    """The cards a config describes itself (simulated nodes'); a real node's are known from its telemetry only."""
    return [(n.name, i, g.memory_mib) for n in cluster.nodes if n.sim for i, g in enumerate(n.sim.gpus)]


def validate_spec(spec: JobSpec, cluster: Cluster) -> None:
    problem = spec_problem(spec, cluster)
    if problem:
        raise UsageError(f"ugro submit: {problem}")
