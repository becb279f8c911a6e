"""JobSpec (what the user asked for), Job (what happened) and the one place that changes a job's state."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from ugro_tui.errors import UgroError


class JobState(StrEnum):
    QUEUED = "queued"
    HELD = "held"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    @property
    def active(self) -> bool:
        """Holds GPUs now."""
        return self in (JobState.STARTING, JobState.RUNNING)


S = JobState
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    S.QUEUED: frozenset({S.STARTING, S.HELD, S.CANCELLED, S.FAILED}),  # failed: a dependency failed
    S.HELD: frozenset({S.QUEUED, S.CANCELLED}),
    S.STARTING: frozenset({S.RUNNING, S.FAILED, S.CANCELLED, S.QUEUED}),  # queued: a retry after a failed start
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED, S.QUEUED}),  # queued: retried (max_retries)
    S.SUCCEEDED: frozenset({S.QUEUED}),  # `ugro retry`: run it again
    S.FAILED: frozenset({S.QUEUED}),
    S.CANCELLED: frozenset({S.QUEUED}),
}


class IllegalTransition(UgroError):
    exit_code = 2


class BadSpec(UgroError):
    """A job whose fields have the wrong types or values (a job file, a template, a hand-edited store)."""

    exit_code = 2


MAX_NAME = 200
INT_FIELDS = ("nnodes", "nproc_per_node", "gpus_per_node", "priority", "max_retries")
OPTIONAL_TEXT = ("workdir", "checkpoint_dir", "template")


def _text_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"expected text, got {value!r}"
    if "\0" in value:
        return "contains a NUL byte"
    return None


def spec_type_problem(spec: JobSpec) -> str | None:
    """The first field of `spec` with a wrong type or an impossible value, as `field: why`, or None."""
    if (why := _text_problem(spec.name)) or (why := None if spec.name.strip() else "is empty"):
        return f"name: {why}"
    if len(spec.name) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in spec.name):
        return f"name: at most {MAX_NAME} characters, no newlines or control characters"
    if not isinstance(spec.command, tuple) or not spec.command:
        return "command: expected the script or program and its arguments"
    for word in spec.command:
        if why := _text_problem(word):
            return f"command: {why}"
    if spec.kind not in ("torchrun", "command"):
        return f"kind: expected torchrun or command, got {spec.kind!r}"
    for key in INT_FIELDS:
        value = getattr(spec, key)
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{key}: expected a whole number, got {value!r}"
    if isinstance(spec.min_gpu_mem_gb, bool) or not isinstance(spec.min_gpu_mem_gb, int | float):
        return f"min_gpu_mem_gb: expected a number of GB, got {spec.min_gpu_mem_gb!r}"
    for name in spec.nodes:
        if why := _text_problem(name):
            return f"nodes: {why}"
    for pair in spec.env:
        if not (isinstance(pair, tuple) and len(pair) == 2) or any(_text_problem(x) for x in pair):
            return f"env: expected NAME = \"text\" pairs, got {pair!r}"
    for key in OPTIONAL_TEXT:
        value = getattr(spec, key)
        if value is not None and (why := _text_problem(value)):
            return f"{key}: {why}"
    for dep in spec.after:
        if isinstance(dep, bool) or not isinstance(dep, int):
            return f"after: expected job ids, got {dep!r}"
    return None


@dataclass(frozen=True)
class JobSpec:
    name: str
    command: tuple[str, ...]            # torchrun: script + args; command: argv
    kind: str = "torchrun"              # torchrun | command
    nnodes: int = 1
    nproc_per_node: int = 1
    gpus_per_node: int = 1
    min_gpu_mem_gb: float = 0.0
    nodes: tuple[str, ...] = ()         # allowed node names or labels; empty: any
    env: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    priority: int = 0
    after: tuple[int, ...] = ()
    max_retries: int = 0
    checkpoint_dir: str | None = None
    template: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["command"] = list(self.command)
        out["nodes"] = list(self.nodes)
        out["env"] = dict(self.env)
        out["after"] = list(self.after)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        """A stored spec, checked: wrong types raise BadSpec (the store then names the job as damaged)."""
        data = dict(data)
        for key in ("command", "nodes", "after"):
            if not isinstance(data.get(key, []), list):
                raise BadSpec(f"{key}: expected a list, got {data[key]!r}")
        if not isinstance(data.get("env", {}), dict):
            raise BadSpec(f"env: expected a table, got {data['env']!r}")
        data["command"] = tuple(data.get("command", ()))
        data["nodes"] = tuple(data.get("nodes", ()))
        data["env"] = tuple(dict(data.get("env", {})).items())
        data["after"] = tuple(data.get("after", ()))
        known = {f for f in cls.__dataclass_fields__}
        spec = cls(**{k: v for k, v in data.items() if k in known})
        problem = spec_type_problem(spec)
        if problem:
            raise BadSpec(problem)
        return spec


@dataclass(frozen=True)
class NodeRun:
    """What happened on one node of a job."""

    pid: int | None = None
    run_dir: str | None = None
    exit_code: int | None = None


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

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.spec.name, "state": str(self.state), "priority": self.spec.priority,
            "spec": self.spec.to_json(), "submitted_at": self.submitted_at, "started_at": self.started_at,
            "finished_at": self.finished_at, "attempt": self.attempt,
            "placement": {node: list(gpus) for node, gpus in self.placement},
            "rendezvous": self.rendezvous,
            "runs": {node: asdict(run) for node, run in self.runs},
            "reason": self.reason, "diagnosis": self.diagnosis, "cancel_requested": self.cancel_requested,
        }

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
            cancel_requested=bool(data.get("cancel_requested", False)),
        )


def transition(job: Job, to: JobState, *, reason: str = "", now: float | None = None, **changes: Any) -> Job:
    """Every state change goes through here; an illegal one raises IllegalTransition."""
    if to not in TRANSITIONS[job.state]:
        raise IllegalTransition(f"job {job.id} is {job.state}; it cannot become {to}")
    now = time.time() if now is None else now
    if to is JobState.STARTING:
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
        changes.setdefault("cancel_requested", False)
        if job.state.finished:
            changes.setdefault("attempt", 0)
            changes.setdefault("diagnosis", None)
    return replace(job, state=to, reason=reason, **changes)
