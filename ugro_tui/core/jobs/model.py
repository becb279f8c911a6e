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
        data = dict(data)
        data["command"] = tuple(data.get("command", ()))
        data["nodes"] = tuple(data.get("nodes", ()))
        data["env"] = tuple(dict(data.get("env", {})).items())
        data["after"] = tuple(int(a) for a in data.get("after", ()))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


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
