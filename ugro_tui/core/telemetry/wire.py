"""A node's status as the daemon pushes it to clients, and back: the first message carries each GPU's history,
later ones only the newest sample (the client appends it to its own rings, as the monitor does)."""

from __future__ import annotations

from collections import deque
from typing import Any

from ugro_tui.core.telemetry.model import GpuSample, HostSample, NodeState, NodeStatus, SlurmAllocation


def to_wire(status: NodeStatus, *, history: bool = False) -> dict[str, Any]:
    doc = status.to_json()
    doc["received_at"] = status.received_at
    if history:
        doc["history"] = {str(i): list(ring) for i, ring in status.history.items()}
        doc["cpu_history"] = list(status.cpu_history)
    return doc


def apply_wire(status: NodeStatus, doc: dict[str, Any]) -> None:
    """Update `status` in place from a pushed document (bad fields are skipped, never raised)."""
    try:
        status.state = NodeState(doc.get("state"))
    except ValueError:
        status.state = NodeState.CONNECTING
    status.error = doc.get("error") if isinstance(doc.get("error"), str) else None
    status.source = doc.get("source") if isinstance(doc.get("source"), str) else None
    status.driver = doc.get("driver") if isinstance(doc.get("driver"), str) else None
    for key in ("sampled_at", "received_at", "next_retry_at"):
        value = doc.get(key)
        setattr(status, key, float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None)
    status.gpus = tuple(GpuSample.from_agent(g) for g in doc.get("gpus") or () if isinstance(g, dict))
    status.host = HostSample.from_agent(doc.get("host"))
    slurm = doc.get("slurm")
    if isinstance(slurm, dict):
        status.slurm = SlurmAllocation(str(slurm.get("state", "")), int(slurm.get("gpus") or 0),
                                       int(slurm.get("gpus_allocated") or 0),
                                       tuple(str(p) for p in slurm.get("partitions") or ()),
                                       str(slurm.get("reason") or ""), slurm.get("live_telemetry") is True)
    rings = doc.get("history")
    if isinstance(rings, dict):  # the whole history: take it as it is
        status.history = {int(i): deque(_floats(v), maxlen=status.history_len) for i, v in rings.items()
                          if str(i).isdecimal() and isinstance(v, list)}
        status.cpu_history = deque(_floats(doc.get("cpu_history") or []), maxlen=status.history_len)
    elif status.state is NodeState.ONLINE and doc.get("sample"):  # a new sample: one more point per ring
        for gpu in status.gpus:
            status.history.setdefault(gpu.index, deque(maxlen=status.history_len)).append(gpu.utilization_pct)
        if status.host is not None:
            if status.cpu_history.maxlen != status.history_len:
                status.cpu_history = deque(status.cpu_history, maxlen=status.history_len)
            status.cpu_history.append(status.host.cpu_pct)


def _floats(values: list[Any]) -> list[float | None]:
    return [float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None for v in values]


def apply_hello(state: Any, hello: dict[str, Any]) -> list[NodeStatus]:
    """Every node of a daemon's hello into a ClusterState (history included); returns the statuses taken."""
    changed = []
    for doc in hello.get("nodes") or ():
        status = node_of(state, doc)
        if status is not None:
            apply_wire(status, doc)
            changed.append(status)
    return changed


def node_of(state: Any, doc: Any) -> NodeStatus | None:
    """The status a pushed document is about; a node the daemon learned of (Slurm's) gets one here too."""
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or not doc["name"]:
        return None
    if doc["name"] not in state.nodes:
        state.nodes[doc["name"]] = NodeStatus(doc["name"], str(doc.get("address") or ""))
    return state.nodes[doc["name"]]
