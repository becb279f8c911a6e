"""Who uses what: GPUs and GPU memory per user across the cluster, from the owners of GPU processes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ugro_tui.core.telemetry.model import ClusterState, NodeState

UNKNOWN = "?"


@dataclass
class UserUsage:
    user: str
    gpus: set[tuple[str, int]] = field(default_factory=set)  # (node, GPU index)
    gpu_memory_mib: int = 0
    processes: int = 0
    jobs: int = 0  # ugro jobs running as this user (their nodes' SSH user)

    @property
    def nodes(self) -> list[str]:
        return sorted({node for node, _ in self.gpus})

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "gpus": len(self.gpus), "gpu_memory_mib": self.gpu_memory_mib,
                "processes": self.processes, "nodes": self.nodes, "jobs": self.jobs,
                "gpu_list": [f"{node}:{index}" for node, index in sorted(self.gpus)]}


def by_user(state: ClusterState, job_users: Iterable[str] = ()) -> list[UserUsage]:
    """Every user with a GPU process on an online node, or a running ugro job; most GPU memory first.

    `job_users` has one entry per running ugro job and node it runs on (the node's SSH user), counted once per job
    by the caller."""
    users: dict[str, UserUsage] = {}

    def get(name: str) -> UserUsage:
        if name not in users:
            users[name] = UserUsage(name)
        return users[name]

    for node in state.nodes.values():
        if node.state is not NodeState.ONLINE:
            continue  # an offline node's last process list may be long gone
        for gpu in node.gpus:
            for proc in gpu.processes:
                usage = get(proc.user or UNKNOWN)
                usage.gpus.add((node.name, gpu.index))
                usage.gpu_memory_mib += proc.used_mib or 0
                usage.processes += 1
    for name in job_users:
        get(name).jobs += 1
    return sorted(users.values(), key=lambda u: (-u.gpu_memory_mib, -len(u.gpus), u.user))


def job_users(jobs: Iterable[Any], node_users: Mapping[str, str]) -> list[str]:
    """One SSH user per running job (its first node's), for `by_user`."""
    out = []
    for job in jobs:
        placement = getattr(job, "placement", ()) or ()
        if getattr(getattr(job, "state", None), "value", None) == "running" and placement:
            out.append(node_users.get(placement[0][0], UNKNOWN))
    return out


def matches_user(state_node: Any, user: str) -> bool:
    """Whether a node has a GPU process of `user` (the `/user:NAME` filter)."""
    return any(p.user == user for g in state_node.gpus for p in g.processes)
