"""A session's settings checks and its state as the daemon follows it (stored with the job, so a new daemon
picks it up where the old one stopped)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WARN_BEFORE = 600.0  # seconds before an idle stop or the end of --hours that the session warns


@dataclass(frozen=True)
class SessionStatus:
    ends_at: float           # when it is given back at the latest (--hours, and each extension)
    active_at: float         # the last time a shell was attached or a process of it used its GPUs
    shells: int = 0          # shells attached now
    warned: str = ""         # "idle" or "time": the warning already given for the coming end
    jupyter_port: int = 0    # JupyterLab's port on the node's loopback, once it said (--jupyter)
    jupyter_token: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"ends_at": self.ends_at, "active_at": self.active_at, "shells": self.shells, "warned": self.warned,
                "jupyter_port": self.jupyter_port, "jupyter_token": self.jupyter_token}

    @classmethod
    def from_json(cls, doc: Any) -> SessionStatus | None:
        if not isinstance(doc, dict):
            return None
        try:
            return cls(float(doc["ends_at"]), float(doc["active_at"]), int(doc.get("shells") or 0),
                       str(doc.get("warned") or ""), int(doc.get("jupyter_port") or 0),
                       str(doc.get("jupyter_token") or ""))
        except (KeyError, TypeError, ValueError):
            return None


def warn_lead(limit_s: float) -> float:
    """How long before an end the warning comes: ten minutes, or half the limit for a short one."""
    return min(WARN_BEFORE, limit_s / 2)


def _positive(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 < value < 1e7


def session_problem(spec: Any) -> str | None:
    """The session settings of a spec, as `field: why`, or None."""
    if not _positive(spec.hours):
        return f"hours: expected a number of hours above 0, got {spec.hours!r}"
    if not _positive(spec.idle_stop_min):
        return f"idle_stop_min: expected a number of minutes above 0, got {spec.idle_stop_min!r}"
    for index in spec.gpu_indexes:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            return f"gpu_indexes: expected GPU indexes (0, 1, ...), got {index!r}"
    if not isinstance(spec.jupyter, bool):
        return f"jupyter: expected true or false, got {spec.jupyter!r}"
    if spec.jupyter and spec.kind != "session":
        return "jupyter: only a session runs JupyterLab (ugro session --jupyter)"
    if spec.gpu_indexes and len(spec.gpu_indexes) != spec.gpus_per_node:
        return f"gpu_indexes: names {len(spec.gpu_indexes)} GPUs; the job asks for {spec.gpus_per_node}"
    if (spec.kind == "session") and (spec.nnodes != 1 or spec.gpus_per_node < 1):
        return "a session holds 1 or more GPUs on one node"
    return None
