"""The queue verbs scripts rely on: submit, queue, show, cancel, hold, release, retry."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import time
import tomllib
from argparse import Namespace
from pathlib import Path
from typing import Any

from ugro_tui.commands.table import DASH, render
from ugro_tui.config import Cluster
from ugro_tui.core.jobs import templates
from ugro_tui.core.jobs.actions import ACTIONS
from ugro_tui.core.jobs.describe import age, detail, event_lines, placement_text, runtime, shape
from ugro_tui.core.jobs.model import USER_KEYS, Job, JobSpec, JobState
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


def parse_ids(values: list[str]) -> list[int]:
    ids = []
    for value in values:
        if not (value.isascii() and value.isdecimal()):
            raise UsageError(f"ugro: {value!r} is not a job id (job ids are numbers; `ugro queue` lists them)")
        ids.append(int(value))
    return ids


def spec_from_args(args: Namespace, cluster: Cluster, given: dict[str, Any] | None = None) -> tuple[JobSpec, Search]:
    """The job the flags describe, and its sweep (empty: one job). `given`: job-file keys that came another way
    (the web API's body), checked as a job file's are; a template named in the flags is their base."""
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
    spec = JobSpec(
        name=_pick(args.name, base, "name", Path(command[0]).name),
        command=tuple(command),
        kind=_pick(args.kind, base, "kind", "torchrun"),
        nnodes=_pick(args.nnodes, base, "nnodes", 1),
        nproc_per_node=nproc,
        gpus_per_node=_pick(args.gpus_per_node, base, "gpus_per_node", nproc),
        min_gpu_mem_gb=_pick(args.min_gpu_mem, base, "min_gpu_mem_gb", 0.0),
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
        **{key: _pick(getattr(args, key, None), base, key, JobSpec.__dataclass_fields__[key].default)
           for key in (*SEARCH_FLAGS, *SERVICE_FLAGS)},
    )
    validate_spec(spec, cluster)
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


def validate_spec(spec: JobSpec, cluster: Cluster) -> None:
    problem = spec_problem(spec, cluster)
    if problem:
        raise UsageError(f"ugro submit: {problem}")


def submit(args: Namespace, cluster: Cluster) -> int:
    """Prints each new job's id on a line of its own, once all of them are stored (a sweep is one write)."""
    spec, search = spec_from_args(args, cluster)
    if search and search.trials is not None and search.seed is None:  # reproducible: the seed is said
        search = Search(search.axes, search.trials, int.from_bytes(os.urandom(4), "big") >> 1)
    sweep_id = new_sweep_id() if search else None
    sent = {}
    if spec.sync:
        spec, sent = _sync(spec, cluster)
    # A sweep changes only names, args and env, so the spec validated above stands for every job of it.
    store = JobStore()
    jobs = store.submit(expand(spec, search, sweep_id), hold=args.hold)
    if sent:
        record = tuple((n, s.files_sent, s.bytes_sent) for n, s in sorted(sent.items()))
        store.update_active({j.id: (lambda j: dataclasses.replace(j, sync_sent=record)) for j in jobs})
    for job in jobs:
        print(job.id)
    if search:
        seed = f" (seed {search.seed})" if search.seed is not None else ""
        print(f"sweep {sweep_id}: {len(jobs)} trial{'s' if len(jobs) != 1 else ''}{seed}; "
              f"`ugro sweep show {sweep_id}` ranks them", file=sys.stderr)
    return 0


def _sync(spec: JobSpec, cluster: Cluster):
    """Keep the tree as submitted, then copy it to the nodes the job may run on (a node that cannot be reached now
    gets it at launch). Returns the spec that runs in the tree's folder, and what travelled per node."""
    import asyncio

    from ugro_tui.commands.sync import copy
    from ugro_tui.core.jobs.placement import NodeCapacity, allowed
    from ugro_tui.core.sync.service import synced_spec

    def prepare():
        synced, tree, manifest = synced_spec(spec, cluster)
        print(f"sync: {tree.summary()}", file=sys.stderr)
        return synced, manifest

    nodes = [n for n in cluster.nodes if allowed(Job(0, spec), NodeCapacity(n.name, n.labels))]
    (synced, _), sent = asyncio.run(copy(cluster, nodes, prepare, strict=False))
    return synced, sent


def list_templates(args: Namespace) -> int:
    from ugro_tui.core.jobs import templates as store

    if args.name:
        print(store.path_of(args.name).read_text(), end="")
        return 0
    found = store.names()
    if not found:
        print(f"no templates yet; save one from the launch form (n, then ctrl+t) into {store.user_dir()}")
        return 0
    rows = [(name, str(store.path_of(name))) for name in found]
    print(render(("TEMPLATE", "FILE"), rows))
    return 0


def queue(args: Namespace, cluster: Cluster) -> int:
    wanted = set(args.state.split(",")) if args.state else None
    if wanted:
        unknown = wanted - {s.value for s in JobState}
        if unknown:
            states = ", ".join(s.value for s in JobState)
            raise UsageError(f"ugro queue: --state {sorted(unknown)[0]!r}: one of {states}")
    store = JobStore()
    if getattr(args, "ack_recovery", False):
        store.acknowledge_recovery()
    if args.json:
        # Stored documents are already the JSON contract; compact, since the C encoder is much faster than indent=.
        docs = [d for d in store.all_json() if not wanted or d["state"] in wanted]
        print(json.dumps({"jobs": docs}, separators=(",", ":")))  # damaged docs are in it as stored
        _say_damaged(store)
        return 0
    jobs = [j for j in store.all() if not wanted or j.state.value in wanted]
    now = time.time()
    rows = [(str(j.id), j.spec.name, j.health, str(j.spec.priority), shape(j), placement_text(j),
             age(now - j.submitted_at), runtime(j, now), j.reason or DASH) for j in jobs]
    print(render(("ID", "NAME", "STATE", "PRI", "SHAPE", "PLACEMENT", "AGE", "RUNTIME", "REASON"), rows)
          if rows else "no jobs")
    _say_damaged(store)
    return 0


def _say_damaged(store: JobStore) -> None:
    """Jobs the store could not read stay in its file, untouched; say which, on stderr, every time. The same for
    a recovery from the previous generation, until acknowledged."""
    notice = store.recovery_notice()
    if notice:
        print(f"ugro: {notice}", file=sys.stderr)
    for line in store.damaged:
        print(f"ugro: {store.active_path}: {line} (left as it is; fix the file or cancel the job)", file=sys.stderr)


def show(args: Namespace, cluster: Cluster) -> int:
    [job_id] = parse_ids([args.job])
    job = JobStore().get(job_id)
    if args.json:
        print(json.dumps(job.to_json(), indent=1))
        return 0
    from ugro_tui.core.jobs import events

    print("\n".join(detail(job) + event_lines(events.read(job.id))))
    return 0


def change_state(args: Namespace, cluster: Cluster) -> int:
    """cancel / hold / release / retry each job in turn; exit 2 on the first unknown id or illegal change."""
    store = JobStore()
    for job_id in parse_ids(args.jobs):
        print(ACTIONS[args.verb](store, job_id))
    return 0
