"""JobSpec (what the user asked for), Job (what happened) and the one place that changes a job's state."""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from ugro_tui.core.jobs.progress import Progress
from ugro_tui.core.jobs.search_checks import search_problem
from ugro_tui.core.services.status import ServiceStatus, service_problem
from ugro_tui.core.sessions.status import SessionStatus, session_problem
from ugro_tui.errors import UgroError
from ugro_tui.names import env_name_problem, text_problem


class JobState(StrEnum):
    QUEUED = "queued"
    HELD = "held"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"  # a sweep's trial stopped early: clearly worse than the others

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PRUNED)

    @property
    def active(self) -> bool:
        """Holds GPUs now."""
        return self in (JobState.STARTING, JobState.RUNNING)


S = JobState
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    S.QUEUED: frozenset({S.STARTING, S.HELD, S.CANCELLED, S.FAILED}),  # failed: a dependency failed
    S.HELD: frozenset({S.QUEUED, S.CANCELLED}),
    S.STARTING: frozenset({S.RUNNING, S.FAILED, S.CANCELLED, S.QUEUED}),  # queued: a retry after a failed start
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED, S.PRUNED, S.QUEUED}),  # queued: retried
    S.SUCCEEDED: frozenset({S.QUEUED}),  # `ugro retry`: run it again
    S.FAILED: frozenset({S.QUEUED}),
    S.CANCELLED: frozenset({S.QUEUED}),
    S.PRUNED: frozenset({S.QUEUED}),
}


class IllegalTransition(UgroError):
    exit_code = 2


class BadSpec(UgroError):
    """A job whose fields have the wrong types or values (a job file, a template, a hand-edited store)."""

    exit_code = 2


MAX_NAME = 200
KINDS = ("torchrun", "command", "service", "session")
INT_FIELDS = ("nnodes", "nnodes_min", "elastic_restarts", "nproc_per_node", "gpus_per_node", "priority",
              "max_retries", "max_concurrent",
              "warmup_steps", "min_trials", "grace", "reduction_factor", "max_t")
OPTIONAL_TEXT = ("workdir", "checkpoint_dir", "template", "sweep_id", "metric_regex", "early_stop", "sync",
                 "sync_hash")


def spec_type_problem(spec: JobSpec) -> str | None:
    """The first field of `spec` with a wrong type or an impossible value, as `field: why`, or None."""
    if (why := text_problem(spec.name)) or (why := None if spec.name.strip() else "is empty"):
        return f"name: {why}"
    if len(spec.name) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in spec.name):
        return f"name: at most {MAX_NAME} characters, no newlines or control characters"
    if not isinstance(spec.command, tuple) or not spec.command:
        return "command: expected the script or program and its arguments"
    for word in spec.command:
        if why := text_problem(word):
            return f"command: {why}"
    if spec.kind not in KINDS:
        return f"kind: expected torchrun, command, service or session, got {spec.kind!r}"
    for key in INT_FIELDS:
        value = getattr(spec, key)
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{key}: expected a whole number, got {value!r}"
    if isinstance(spec.min_gpu_mem_gb, bool) or not isinstance(spec.min_gpu_mem_gb, int | float):
        return f"min_gpu_mem_gb: expected a number of GB, got {spec.min_gpu_mem_gb!r}"
    mem = spec.gpu_mem_gb
    if mem is not None and (isinstance(mem, bool) or not isinstance(mem, int | float) or not 0 < mem < 1e6):
        return f"gpu_mem_gb: expected a number of GB above 0 (the GPU memory each rank needs), got {mem!r}"
    if not isinstance(spec.preemptible, bool):
        return f"preemptible: expected true or false, got {spec.preemptible!r}"
    if not isinstance(spec.gpu_mem_enforce, bool):
        return f"gpu_mem_enforce: expected true or false, got {spec.gpu_mem_enforce!r}"
    for name in spec.nodes:
        if why := text_problem(name):
            return f"nodes: {why}"
    for pair in spec.env:
        if not (isinstance(pair, tuple) and len(pair) == 2) or any(text_problem(x) for x in pair):
            return f"env: expected NAME = \"text\" pairs, got {pair!r}"
        if why := env_name_problem(pair[0]):
            return f"env: {why}"
    for key in OPTIONAL_TEXT:
        value = getattr(spec, key)
        if value is not None and (why := text_problem(value)):
            return f"{key}: {why}"
    for dep in spec.after:
        if isinstance(dep, bool) or not isinstance(dep, int):
            return f"after: expected job ids, got {dep!r}"
    if not isinstance(spec.sync_git, bool):
        return f"sync_git: expected true or false, got {spec.sync_git!r}"
    if not isinstance(spec.data, tuple):
        return f"data: expected a list, got {spec.data!r}"
    if spec.nnodes_min and not 1 <= spec.nnodes_min <= spec.nnodes:
        return f"nnodes: {spec.nnodes_min}:{spec.nnodes}: MIN must be 1 to MAX"
    if spec.nnodes_min and spec.kind != "torchrun":
        return f"nnodes: {spec.nnodes_min}:{spec.nnodes} (elastic) is for torchrun jobs, not {spec.kind}"
    return service_problem(spec) or session_problem(spec) or search_problem(spec)


@dataclass(frozen=True)
class JobSpec:
    name: str
    command: tuple[str, ...]            # torchrun: script + args; command, service: argv (a service's head)
    kind: str = "torchrun"              # torchrun | command | service | session
    nnodes: int = 1                     # elastic (nnodes_min > 0): the most nodes
    nproc_per_node: int = 1
    gpus_per_node: int = 1
    min_gpu_mem_gb: float = 0.0
    # Sharing a card by memory (sharing.py): the GPU memory each rank needs; None takes whole cards. Enforced: a
    # rank over it by 10% for 3 samples stops the job (else a warning).
    gpu_mem_gb: float | None = None
    gpu_mem_enforce: bool = False
    preemptible: bool = False  # a job of higher priority may stop it (TERM, a grace, KILL) and requeue it
    nnodes_min: int = 0        # elastic (`--nnodes MIN:MAX`): starts on MIN to nnodes nodes, goes on above MIN
    elastic_restarts: int = 3  # torchrun's --max-restarts of an elastic job (a node lost or joining)
    nodes: tuple[str, ...] = ()         # allowed node names or labels; empty: any
    env: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    priority: int = 0
    after: tuple[int, ...] = ()
    max_retries: int = 0
    checkpoint_dir: str | None = None
    template: str | None = None
    # Sweeps and early stopping: every trial carries its sweep's settings, so the rules need no other state.
    sweep_id: str | None = None
    params: tuple[tuple[str, str], ...] = ()   # this trial's values
    max_concurrent: int = 0                    # trials of the sweep running at once; 0: no limit
    metric: str = "loss"
    goal: str = "min"                          # min | max
    metric_regex: str | None = None            # two groups, (step) and (value); None: `step N <metric> X`
    early_stop: str | None = None              # median | asha
    warmup_steps: int = 0                      # median: never prune before this step
    min_trials: int = 5                        # median: other trials that must have reached the step
    grace: int = 1                             # asha: the first rung's step
    reduction_factor: int = 3                  # asha: one in this many trials goes on at each rung
    max_t: int = 0                             # asha: the last rung's step at most; 0: no limit
    # Checkpoint retention (None: keep everything): the newest N complete ones, and the best K by the metric.
    keep_last: int | None = None
    keep_best: int | None = None
    # Code and data: the tree sent to the nodes before launch (its hash names the folder it runs in there), and the
    # datasets each placed node must have: (path, at least GB, sha256), 0 and "" when not asked.
    sync: str | None = None
    sync_git: bool = False
    sync_hash: str | None = None
    data: tuple[tuple[str, float, str], ...] = ()
    # Services (kind = "service"): they run until cancelled. `{port}`, `{host}`, `{head}`, `{workers}`, ... in the
    # commands are filled in per node (see services/roles.py); without `health` a TCP connect is the probe.
    port: int | None = None
    health: str | None = None
    health_initial_delay: float = 600.0
    health_period: float = 10.0
    health_timeout: float = 5.0
    health_failures: int = 3
    restart: str = "on-failure"                # never | on-failure | always
    max_restarts: int = 5
    worker_command: tuple[str, ...] = ()       # run on every node but the first (the head), started first
    # Sessions (kind = "session", sessions/): given back after `hours`, or after `idle_stop_min` minutes with no
    # shell attached and no process of it on its GPUs. `gpu_indexes`: these GPUs of its node, not any free ones.
    hours: float = 12.0
    idle_stop_min: float = 60.0
    gpu_indexes: tuple[int, ...] = ()
    jupyter: bool = False                      # a session that runs JupyterLab on its node's loopback

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["data"] = [{"path": p, "min_gb": g, "sha256": h} for p, g, h in self.data]
        out["command"] = list(self.command)
        out["worker_command"] = list(self.worker_command)
        out["nodes"] = list(self.nodes)
        out["env"] = dict(self.env)
        out["after"] = list(self.after)
        out["params"] = dict(self.params)
        out["gpu_indexes"] = list(self.gpu_indexes)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        """A stored spec, checked: wrong types raise BadSpec (the store then names the job as damaged)."""
        data = dict(data)
        for key in ("command", "nodes", "after", "worker_command", "gpu_indexes"):
            if not isinstance(data.get(key, []), list):
                raise BadSpec(f"{key}: expected a list, got {data[key]!r}")
        for key in ("env", "params"):
            if not isinstance(data.get(key, {}), dict):
                raise BadSpec(f"{key}: expected a table, got {data[key]!r}")
        data["command"] = tuple(data.get("command", ()))
        data["worker_command"] = tuple(data.get("worker_command", ()))
        data["nodes"] = tuple(data.get("nodes", ()))
        data["env"] = tuple(dict(data.get("env", {})).items())
        data["params"] = tuple(dict(data.get("params", {})).items())
        data["after"] = tuple(data.get("after", ()))
        data["gpu_indexes"] = tuple(data.get("gpu_indexes", ()))
        data["data"] = parse_data(data.get("data", []))
        known = {f for f in cls.__dataclass_fields__}
        spec = cls(**{k: v for k, v in data.items() if k in known})
        problem = spec_type_problem(spec)
        if problem:
            raise BadSpec(problem)
        return spec


def parse_data(value: Any) -> tuple[tuple[str, float, str], ...]:
    """`data = ["~/datasets/x", { path = "...", min_gb = 2, sha256 = "..." }]` as (path, min GB, sha256) triples."""
    if not isinstance(value, list):
        raise BadSpec(f"data: expected a list of paths or {{ path, min_gb, sha256 }} tables, got {value!r}")
    out = []
    for item in value:
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict) or set(item) - {"path", "min_gb", "sha256"}:
            raise BadSpec(f"data: expected a path or a {{ path, min_gb, sha256 }} table, got {item!r}")
        path, gb, digest = item.get("path"), item.get("min_gb", 0.0), item.get("sha256", "")
        if not isinstance(path, str) or not path.strip() or "\0" in path:
            raise BadSpec(f"data: path: expected a path, got {path!r}")
        if isinstance(gb, bool) or not isinstance(gb, int | float) or gb < 0:
            raise BadSpec(f"data: min_gb: expected a number of GB of 0 or more, got {gb!r}")
        if not isinstance(digest, str) or (digest and not re.fullmatch(r"[0-9a-fA-F]{64}", digest)):
            raise BadSpec(f"data: sha256: expected 64 hex digits, got {digest!r}")
        out.append((path, float(gb), digest.lower()))
    return tuple(out)


INTERNAL_KEYS = ("template", "sweep_id", "params", "sync_hash")  # set by ugro, never by a job file or template
USER_KEYS = tuple(f for f in JobSpec.__dataclass_fields__ if f not in INTERNAL_KEYS)
Point = tuple[int, float, float]  # (step, metric value, when it was first seen)


@dataclass(frozen=True)
class NodeRun:
    """What happened on one node of a job."""

    pid: int | None = None
    run_dir: str | None = None
    exit_code: int | None = None


@dataclass(frozen=True)
class SlurmRef:
    """Where a job is on the Slurm backend: its Slurm job id (`123`, or `120_3` for a trial of an array) once
    submitted; empty while the submit is in flight (a dispatcher that dies then looks for it by name)."""

    job_id: str = ""
    partition: str = ""
    state: str = ""  # Slurm's own word for it: PENDING, RUNNING, COMPLETED, ...


@dataclass(frozen=True)
class Job:
    id: int
    spec: JobSpec
    state: JobState = JobState.QUEUED
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    attempt: int = 0
    placement: tuple[tuple[str, tuple[int, ...]], ...] = ()   # node -> GPU indexes, in rank order
    rendezvous: str | None = None
    runs: tuple[tuple[str, NodeRun], ...] = ()
    reason: str = ""
    diagnosis: str | None = None
    cancel_requested: bool = False   # set by `ugro cancel`; the dispatcher stops the processes
    prune: str = ""                  # set by early stopping (why); the dispatcher stops it, the state is pruned
    stop: str = ""                   # set by a rule that ends it as failed (why), e.g. over its GPU memory
    warning: str = ""                # what this attempt should know (a rank over its declared GPU memory)
    preempt: str = ""                # set by placement (who preempts it); the dispatcher stops and requeues it
    preemptions: int = 0             # attempts ended by a preemption: they spend no retry
    metric: tuple[Point, ...] = ()   # (step, value, first seen) by step, across attempts: what early stopping reads
    resume_step: int | None = None   # `ugro retry --from STEP`: the next attempt resumes from this checkpoint
    resume_from: str | None = None   # the checkpoint this attempt resumed from (never pruned while it runs)
    ran_on: tuple[str, ...] = ()     # the nodes of the latest attempt: where its checkpoints are
    sync_sent: tuple[tuple[str, int, int], ...] = ()  # per node: files and bytes of code that had to travel
    service: ServiceStatus | None = None  # a service's health, port and restarts
    slurm: SlurmRef | None = None         # the Slurm backend's job, once submitted there
    session: SessionStatus | None = None  # a session's end, last activity and attached shells
    progress: Progress | None = None      # how far the running attempt is, from its output (progress.py)
    # The states this copy went through since it was read (transition() adds to it; never stored): the store
    # refuses a change of state that did not go through transition().
    trail: tuple[JobState, ...] = field(default=(), compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.spec.name, "state": str(self.state), "priority": self.spec.priority,
            "spec": self.spec.to_json(), "submitted_at": self.submitted_at, "started_at": self.started_at,
            "finished_at": self.finished_at, "attempt": self.attempt,  # the run: its logs, `ugro logs --attempt`
            "retries_used": max(0, self.attempt - 1 - self.preemptions),  # a preempted run spends none
            "placement": {node: list(gpus) for node, gpus in self.placement},
            "rendezvous": self.rendezvous,
            "runs": {node: asdict(run) for node, run in self.runs},
            "reason": self.reason, "diagnosis": self.diagnosis, "cancel_requested": self.cancel_requested,
            "prune": self.prune, "stop": self.stop, "preempt": self.preempt, "preemptions": self.preemptions,
            "warning": self.warning, "resume_step": self.resume_step, "resume_from": self.resume_from,
            "ran_on": list(self.ran_on),
            "elastic": {"nnodes_min": self.spec.nnodes_min, "nnodes_max": self.spec.nnodes,
                        "nodes": len(self.placement)} if self.spec.nnodes_min else None,
            "sync": {"hash": self.spec.sync_hash, "nodes": {n: {"files_sent": f, "bytes_sent": b}
                                                            for n, f, b in self.sync_sent}}
            if self.spec.sync_hash else None,
            "metric": [[s, v if math.isfinite(v) else None, round(t, 3)] for s, v, t in self.metric],
            "service": self.service.to_json() if self.service else None,
            "slurm": asdict(self.slurm) if self.slurm else None,
            "session": self.session.to_json() if self.session else None,
            "progress": self.progress.to_json() if self.progress else None,
            **({"endpoint": self.service.endpoint if self.service else None,
                "restarts": self.service.restarts if self.service else 0, "health": self.health}
               if self.spec.kind == "service" else {}),
        }

    @property
    def health(self) -> str:
        """What a service is now in its own words (starting, ready, unhealthy, restarting), else the job's state."""
        if self.spec.kind != "service" or self.service is None:
            return str(self.state)
        if self.state is JobState.RUNNING or (self.state is JobState.QUEUED and self.service.health == "restarting"):
            return self.service.health
        return str(self.state)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(
            id=int(data["id"]), spec=JobSpec.from_json(data["spec"]), state=JobState(data["state"]),
            submitted_at=float(data["submitted_at"]), started_at=data.get("started_at"),
            finished_at=data.get("finished_at"), attempt=int(data.get("attempt", 0)),
            placement=tuple((n, tuple(g)) for n, g in (data.get("placement") or {}).items()),
            rendezvous=data.get("rendezvous"),
            runs=tuple((n, NodeRun(**r)) for n, r in (data.get("runs") or {}).items()),
            reason=data.get("reason", ""), diagnosis=data.get("diagnosis"),
            cancel_requested=bool(data.get("cancel_requested", False)), prune=str(data.get("prune") or ""),
            stop=str(data.get("stop") or ""), warning=str(data.get("warning") or ""),
            preempt=str(data.get("preempt") or ""), preemptions=int(data.get("preemptions") or 0),
            resume_step=None if data.get("resume_step") is None else int(data["resume_step"]),
            resume_from=data.get("resume_from"), ran_on=tuple(str(n) for n in data.get("ran_on") or ()),
            metric=tuple((int(s), math.nan if v is None else float(v), float(t))
                         for s, v, t in data.get("metric") or ()),
            sync_sent=tuple((str(n), int(v["files_sent"]), int(v["bytes_sent"]))
                            for n, v in ((data.get("sync") or {}).get("nodes") or {}).items()),
            service=ServiceStatus.from_json(data.get("service")),
            slurm=SlurmRef(**{k: str(v) for k, v in data["slurm"].items() if k in SlurmRef.__dataclass_fields__})
            if isinstance(data.get("slurm"), dict) else None,
            session=SessionStatus.from_json(data.get("session")),
            progress=Progress.from_json(data.get("progress")),
        )


def transition(job: Job, to: JobState, *, reason: str = "", now: float | None = None, **changes: Any) -> Job:
    """Every state change goes through here; an illegal one raises IllegalTransition."""
    if to not in TRANSITIONS[job.state]:
        raise IllegalTransition(f"job {job.id} is {job.state}; it cannot become {to}")
    now = time.time() if now is None else now
    if to is JobState.STARTING:
        changes.setdefault("preempt", "")  # a preempted job's mark stays while it waits, to say why it waits
        changes.setdefault("started_at", now)
        changes.setdefault("attempt", job.attempt + 1)
    if to.finished:
        changes.setdefault("finished_at", now)
    if to is JobState.SUCCEEDED:  # an earlier attempt's diagnosis belongs to that attempt, not to a success
        changes.setdefault("diagnosis", None)
    if to is JobState.QUEUED:  # a fresh start: forget where it ran
        changes.setdefault("placement", ())
        changes.setdefault("runs", ())
        changes.setdefault("rendezvous", None)
        changes.setdefault("finished_at", None)
        changes.setdefault("prune", "")
        changes.setdefault("stop", "")
        changes.setdefault("warning", "")
        changes.setdefault("session", None)
        if job.state is not JobState.HELD:  # released: still the same Slurm job; anything else: a new one
            changes.setdefault("slurm", None)
        if job.state.finished:  # run again: a cancel of an attempt before is done with (one asked since is kept)
            changes.setdefault("cancel_requested", False)
            changes.setdefault("attempt", 0)
            changes.setdefault("preemptions", 0)
            changes.setdefault("diagnosis", None)
            changes.setdefault("service", None)  # run again from scratch: no restarts counted yet
    return replace(job, state=to, reason=reason, trail=(job.trail or (job.state,)) + (to,), **changes)


def reroute(job: Job, to: JobState, *, reason: str) -> Job:
    """The job's last transition ends in `to` instead (a cancel asked before a failure ends it cancelled); raises
    IllegalTransition where it went through none, or where the state before it cannot become `to`."""
    if len(job.trail) < 2 or to not in TRANSITIONS[job.trail[-2]]:
        raise IllegalTransition(f"job {job.id}: {job.state} cannot be changed to {to} after the fact")
    changes: dict[str, Any] = {"finished_at": job.finished_at or time.time()} if to.finished else {}
    return replace(job, state=to, reason=reason, trail=job.trail[:-1] + (to,), **changes)


def check_moved(before: Job, after: Job) -> None:
    """The store's check of a change: a job's state moves only through transition(), one legal step at a time."""
    if after.state is before.state:
        return
    trail = after.trail
    if not trail or trail[0] is not before.state or trail[-1] is not after.state or any(
            b not in TRANSITIONS[a] for a, b in zip(trail, trail[1:], strict=False)):
        went = " → ".join(map(str, trail)) if trail else "without transition()"
        raise IllegalTransition(f"job {before.id} is {before.state}; it cannot become {after.state} ({went})")
