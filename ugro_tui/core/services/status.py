"""A service's own state beside its job's (process alive is the job running; ready is what the probe says), and the
pure rules that move it: probe results, exits and the restart policy."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

HEALTH = ("starting", "ready", "unhealthy", "restarting")
RESTART_POLICIES = ("never", "on-failure", "always")
PROBES_KEPT = 30  # the detail's probe history
BACKOFF_CAP = 60.0
Probe = tuple[float, bool, float | None, str]  # (when, healthy, latency ms or None, error or "")


def backoff(restarts: int) -> float:
    """Seconds before restart number `restarts` (1, 2, 4, ... up to a minute)."""
    return min(BACKOFF_CAP, 2.0 ** max(0, restarts - 1))


@dataclass(frozen=True)
class ServiceStatus:
    health: str = "starting"
    port: int | None = None                       # the head's port on its node
    endpoint: str | None = None                   # node:port, what `ugro forward` reaches
    workers: tuple[tuple[str, int], ...] = ()     # worker node -> its port
    restarts: int = 0
    failures: int = 0                             # failed probes in a row
    probes: tuple[Probe, ...] = ()
    since: float | None = None                    # when `health` last changed
    ready_at: float | None = None                 # this attempt's first healthy probe
    last_error: str = ""
    next_start: float = 0.0                       # a restart waits (backoff) until then
    avoid: tuple[str, ...] = ()                   # nodes that stopped answering: a restart goes elsewhere if it can

    @property
    def last_latency(self) -> float | None:
        return self.probes[-1][2] if self.probes else None

    @property
    def last_probe_at(self) -> float:
        return self.probes[-1][0] if self.probes else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"health": self.health, "port": self.port, "endpoint": self.endpoint,
                "workers": {n: p for n, p in self.workers}, "restarts": self.restarts, "failures": self.failures,
                "probes": [[round(t, 3), ok, None if ms is None else round(ms, 2), err]
                           for t, ok, ms, err in self.probes],
                "since": self.since, "ready_at": self.ready_at, "last_error": self.last_error,
                "next_start": self.next_start, "avoid": list(self.avoid)}

    @classmethod
    def from_json(cls, data: Any) -> ServiceStatus | None:
        if not isinstance(data, dict):
            return None
        health = data.get("health")
        return cls(
            health=health if health in HEALTH else "starting",
            port=_int_or_none(data.get("port")), endpoint=_text_or_none(data.get("endpoint")),
            workers=tuple((str(n), int(p)) for n, p in (data.get("workers") or {}).items()),
            restarts=int(data.get("restarts") or 0), failures=int(data.get("failures") or 0),
            probes=tuple((float(t), bool(ok), None if ms is None else float(ms), str(err))
                         for t, ok, ms, err in (data.get("probes") or ())),
            since=data.get("since"), ready_at=data.get("ready_at"), last_error=str(data.get("last_error") or ""),
            next_start=float(data.get("next_start") or 0.0), avoid=tuple(str(n) for n in data.get("avoid") or ()))


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Verdict:
    """What to do after a probe or an exit: carry on, restart (why) or give up (why)."""

    status: ServiceStatus
    action: str = "keep"   # keep | restart | fail | succeed
    why: str = ""


def after_probe(status: ServiceStatus, spec: Any, started_at: float, now: float, ok: bool, ms: float | None,
                error: str) -> Verdict:
    """One probe's result. While starting, failures do not count; never healthy within the initial delay fails.
    Once it was ready, `health_failures` failures in a row make it unhealthy, and then it restarts if the policy
    allows (with `never` it stays up, unhealthy, and may come back)."""
    probes = (*status.probes, (now, ok, ms, error))[-PROBES_KEPT:]
    status = replace(status, probes=probes, last_error=error if not ok else status.last_error)
    if ok:
        changed = status.health != "ready"
        return Verdict(replace(status, health="ready", failures=0, since=now if changed else status.since,
                               ready_at=status.ready_at or now))
    if status.health == "starting":
        if now - started_at >= spec.health_initial_delay:
            return Verdict(status, "fail", f"never became healthy within {spec.health_initial_delay:g}s "
                                           f"(last probe: {error})")
        return Verdict(status)
    failures = status.failures + 1
    status = replace(status, failures=failures)
    if failures < spec.health_failures:
        return Verdict(status)
    if status.health != "unhealthy":
        status = replace(status, health="unhealthy", since=now)
    if spec.restart == "never":
        return Verdict(status)
    return Verdict(status, "restart", f"unhealthy: {failures} failed probes in a row (last: {error})")


def after_exit(status: ServiceStatus, spec: Any, exits: str, code_ok: bool) -> Verdict:
    """The service's processes ended by themselves: restart, or end (succeeded on a clean exit, else failed)."""
    if spec.restart == "always" or (spec.restart == "on-failure" and not code_ok):
        return Verdict(status, "restart", exits)
    if code_ok:
        return Verdict(status, "succeed", exits)
    return Verdict(status, "fail", f"{exits} (restart policy {spec.restart})")


def restart_or_give_up(status: ServiceStatus, spec: Any, why: str, now: float) -> Verdict:
    """A restart the policy asked for, unless the restarts are used up."""
    if status.restarts >= spec.max_restarts:
        return Verdict(status, "fail", f"gave up after {status.restarts} restart(s): {why}")
    restarts = status.restarts + 1
    return Verdict(replace(status, health="restarting", restarts=restarts, failures=0, since=now, ready_at=None,
                           next_start=now + backoff(restarts)), "restart", why)


HEALTH_PATH_RE = re.compile(r"^/[\x21-\x7e]*$")


def service_problem(spec: Any) -> str | None:
    """The first bad service setting of a spec, as `field: why`, or None (kinds other than service need none)."""
    if spec.kind != "service":
        for key in ("port", "health", "worker_command"):
            if getattr(spec, key):
                return f"{key}: only a service has one (--kind service)"
        return None
    port = spec.port
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        return f"port: expected a port number 1-65535, got {port!r}"
    if spec.health is not None and (not isinstance(spec.health, str) or not HEALTH_PATH_RE.match(spec.health)):
        return f"health: expected a URL path that starts with /, got {spec.health!r}"
    for key in ("health_initial_delay", "health_period", "health_timeout"):
        value = getattr(spec, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            return f"{key}: expected seconds (0 or more), got {value!r}"
    if spec.health_period <= 0 or spec.health_timeout <= 0:
        key = "health_period" if spec.health_period <= 0 else "health_timeout"
        return f"{key}: expected more than 0 seconds, got {getattr(spec, key)!r}"
    if isinstance(spec.health_failures, bool) or not isinstance(spec.health_failures, int) or spec.health_failures < 1:
        return f"health_failures: expected a whole number of 1 or more, got {spec.health_failures!r}"
    if spec.restart not in RESTART_POLICIES:
        return f"restart: expected {', '.join(RESTART_POLICIES)}, got {spec.restart!r}"
    if isinstance(spec.max_restarts, bool) or not isinstance(spec.max_restarts, int) or spec.max_restarts < 0:
        return f"max_restarts: expected a whole number of 0 or more, got {spec.max_restarts!r}"
    if not isinstance(spec.worker_command, tuple) or any(not isinstance(w, str) for w in spec.worker_command):
        return "worker_command: expected the workers' program and its arguments"
    if spec.worker_command and spec.nnodes < 2:
        return "worker_command: workers run on the other nodes; give --nnodes 2 or more"
    return None
