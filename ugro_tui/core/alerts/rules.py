"""Which events a cluster's samples and jobs give: pure, so recorded samples test them with a fixed clock.

Jobs: started (each attempt), succeeded, failed, cancelled (a pruned trial too). Nodes: offline when a node that was
online stops answering (not when it is merely stale), online again when it comes back. GPUs: hot at
`gpu_hot_c` or more for HOT_FOR seconds, cleared only below `gpu_hot_c - HOT_HYSTERESIS_C` (a GPU at 84-86 °C does not
flap); idle when a GPU a ugro job holds stays under IDLE_PCT for `idle_minutes`, cleared above IDLE_CLEAR_PCT.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ugro_tui.core.telemetry.model import ClusterState, NodeState

HOT_FOR = 30.0
HOT_HYSTERESIS_C = 3.0
IDLE_PCT = 5.0
IDLE_CLEAR_PCT = 10.0
JOB_EVENTS = {"succeeded": "job-succeeded", "failed": "job-failed", "cancelled": "job-cancelled",
              "pruned": "job-cancelled"}
KINDS = ("job-started", "job-succeeded", "job-failed", "job-cancelled", "node-offline", "node-online", "gpu-hot",
         "gpu-idle", "service-ready", "service-unhealthy", "service-restarted", "gpu-mem-over", "session-ending",
         "session-ended", "job-preempted", "job-resumed", "job-resized", "gpu-yielded", "gpu-unyielded")
SERVICE_TOASTS = ("service-ready", "service-unhealthy", "service-restarted")  # shown in the app, not rung for
TOASTS = (*SERVICE_TOASTS, "session-ended", "job-preempted", "job-resumed")
DOWN = (NodeState.OFFLINE, NodeState.AUTH_FAILED, NodeState.HOST_KEY_MISMATCH, NodeState.UNKNOWN_HOST_KEY)


@dataclass(frozen=True)
class Event:
    id: str          # the same happening always gets the same id: delivery deduplicates by it
    kind: str
    t: float
    message: str
    job_id: int | None = None
    job_name: str | None = None
    node: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.kind, "t": round(self.t, 3), "message": self.message,
                "job_id": self.job_id, "job_name": self.job_name, "node": self.node}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Event:
        job_id = doc.get("job_id")
        return cls(str(doc["id"]), str(doc["event"]), float(doc["t"]), str(doc.get("message") or ""),
                   int(job_id) if isinstance(job_id, int) else None, doc.get("job_name"), doc.get("node"))

    @property
    def bad(self) -> bool:
        """Worth a bell: a failure or an alert, not a job that started or ended well."""
        return self.kind in ("job-failed", "node-offline", "gpu-hot", "gpu-idle", "service-unhealthy", "daemon-error",
                             "ledger-recovered", "session-ending")


def service_events(job: Any) -> list[Event]:
    """A service became ready (once per attempt), unhealthy (each time), or is being restarted (each restart)."""
    status = getattr(job, "service", None)
    if status is None or str(job.state) not in ("running", "queued", "starting") or status.since is None:
        return []
    name, endpoint = job.spec.name, status.endpoint or "?"
    restarted = []
    if status.restarts and status.health != "restarting":  # a restart can go by between two looks: its count stays
        restarted = [Event(f"service-restarted:{job.id}:{status.restarts}", "service-restarted", status.since,
                           f"service {job.id} ({name}) was restarted ({status.restarts}): "
                           f"{status.last_error or 'it stopped'}", job.id, name)]
    if status.health == "ready" and status.ready_at is not None and str(job.state) == "running":
        return restarted + [Event(f"service-ready:{job.id}:{job.attempt}", "service-ready", status.ready_at,
                      f"service {job.id} ({name}) is ready on {endpoint}", job.id, name)]
    if status.health == "unhealthy" and str(job.state) == "running":
        return restarted + [Event(f"service-unhealthy:{job.id}:{job.attempt}:{int(status.since)}", "service-unhealthy",
                      status.since, f"service {job.id} ({name}) is unhealthy: {status.last_error}", job.id, name)]
    if status.health == "restarting":
        return [Event(f"service-restarted:{job.id}:{status.restarts}", "service-restarted", status.since,
                      f"service {job.id} ({name}) {job.reason}", job.id, name)]
    return restarted


def job_events(job: Any, now: float) -> list[Event]:
    """What a job's current state says happened: its attempt started, or it ended."""
    state = str(job.state)
    name = job.spec.name
    out = []
    if state in ("running", *JOB_EVENTS) and job.started_at is not None:
        nodes = ", ".join(n for n, _ in job.placement) or "?"
        out.append(Event(f"job-started:{job.id}:{job.attempt}", "job-started", job.started_at,
                         f"job {job.id} ({name}) started on {nodes}", job.id, name))
    out += service_events(job)
    if state in JOB_EVENTS:
        kind = JOB_EVENTS[state]
        reason = f": {job.reason}" if job.reason else ""
        out.append(Event(f"{kind}:{job.id}:{job.attempt}", kind, job.finished_at or now,
                         f"job {job.id} ({name}) {state}{reason}", job.id, name))
    return out


@dataclass
class Rules:
    gpu_hot_c: float = 85.0
    idle_minutes: float = 10.0
    _hot_since: dict[tuple[str, int], float] = field(default_factory=dict)
    _hot: set[tuple[str, int]] = field(default_factory=set)
    _idle_since: dict[tuple[str, int, int], float] = field(default_factory=dict)
    _idle: set[tuple[str, int, int]] = field(default_factory=set)
    _up: dict[str, bool] = field(default_factory=dict)

    def nodes(self, state: ClusterState, now: float) -> list[Event]:
        out = []
        for name, node in state.nodes.items():
            was = self._up.get(name)
            if node.state is NodeState.ONLINE:
                if was is False:
                    out.append(Event(f"node-online:{name}:{now:.0f}", "node-online", now, f"{name} is back online",
                                     node=name))
                self._up[name] = True
            elif node.state in DOWN and was:  # one that never came up is the doctor's business, not an alert
                why = f": {node.error}" if node.error else ""
                out.append(Event(f"node-offline:{name}:{now:.0f}", "node-offline", now,
                                 f"{name} is {node.state}{why}", node=name))
                self._up[name] = False
        return out

    def gpus(self, state: ClusterState, held: Iterable[tuple[int, str, int, str]], now: float) -> list[Event]:
        """`held`: (job id, node, GPU index, job name) for every GPU a running ugro job holds."""
        out = []
        for name, node in state.nodes.items():
            if node.state is not NodeState.ONLINE:
                continue
            for gpu in node.gpus:
                key = (name, gpu.index)
                temp = gpu.temperature_c
                if temp is not None and temp >= self.gpu_hot_c:
                    since = self._hot_since.setdefault(key, now)
                    if key not in self._hot and now - since >= HOT_FOR:
                        self._hot.add(key)
                        out.append(Event(f"gpu-hot:{name}:{gpu.index}:{since:.0f}", "gpu-hot", now,
                                         f"{name} GPU {gpu.index} at {temp:.0f} °C for {now - since:.0f}s "
                                         f"(alert at {self.gpu_hot_c:g} °C)", node=name))
                elif temp is not None and temp < self.gpu_hot_c - HOT_HYSTERESIS_C:
                    self._hot_since.pop(key, None)
                    self._hot.discard(key)
                elif temp is not None and key not in self._hot:
                    self._hot_since.pop(key, None)  # between the two lines: a new episode needs the full time
        utils = {(n, g.index): g.utilization_pct for n, s in state.nodes.items() if s.state is NodeState.ONLINE
                 for g in s.gpus}
        seen = set()
        for job_id, node_name, index, job_name in held:
            key = (node_name, index, job_id)
            seen.add(key)
            util = utils.get((node_name, index))
            if util is None:
                continue
            if util < IDLE_PCT:
                since = self._idle_since.setdefault(key, now)
                if key not in self._idle and now - since >= self.idle_minutes * 60:
                    self._idle.add(key)
                    out.append(Event(f"gpu-idle:{job_id}:{node_name}:{index}:{since:.0f}", "gpu-idle", now,
                                     f"job {job_id} ({job_name}) holds {node_name} GPU {index} at {util:.0f}% for "
                                     f"{(now - since) / 60:.0f} min", job_id, job_name, node_name))
            elif util >= IDLE_CLEAR_PCT:
                self._idle_since.pop(key, None)
                self._idle.discard(key)
        for key in [k for k in self._idle_since if k not in seen]:  # the job let the GPU go
            self._idle_since.pop(key, None)
            self._idle.discard(key)
        return out
