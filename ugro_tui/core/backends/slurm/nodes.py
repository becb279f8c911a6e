"""The Nodes view on Slurm: every Slurm node, its state and GPU allocation from `sinfo --json`, read through the
login node. A Slurm node that is also one of [[nodes]] keeps its live GPU numbers from the agent beside this."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ugro_tui.config import Cluster
from ugro_tui.core.backends.slurm.client import SlurmClient
from ugro_tui.core.telemetry.model import ClusterState, NodeState, NodeStatus, SlurmAllocation
from ugro_tui.core.transport import Transport

EVERY = 5.0  # seconds between sinfo calls at most as often as telemetry polls; Slurm's own view changes slowly


def apply_nodes(state: ClusterState, nodes, login: str, now: float, live: set[str]) -> list[NodeStatus]:
    """Put sinfo's nodes into the cluster state (new ones appended); returns the statuses that changed."""
    changed = []
    for node in nodes:
        alloc = SlurmAllocation(node.state, node.gpus, node.gpus_used, node.partitions, node.reason,
                                live=node.name in live)
        status = state.nodes.get(node.name)
        if status is None:
            status = state.nodes[node.name] = NodeStatus(node.name, f"slurm via {login}")
        if node.name not in live:  # allocation only: Slurm is the sample
            bad = any(w in node.state for w in ("down", "drain", "fail", "inval", "not_responding"))
            status.state = NodeState.ONLINE
            status.error = (f"Slurm: {node.reason}" if node.reason else f"Slurm says {node.state}") if bad else None
            status.received_at = status.sampled_at = now
            status.source = "slurm"
        if status.slurm != alloc:
            status.slurm = alloc
            changed.append(status)
        elif node.name not in live:
            changed.append(status)  # its sample age moves on
    return changed


async def follow_slurm_nodes(cluster: Cluster, state: ClusterState, transport: Callable[[str], Transport],
                             emit: Callable[[NodeStatus], None], clock: Callable[[], float] = time.time) -> None:
    """Until cancelled: sinfo every few seconds; a failure is shown on the login node's card and retried."""
    assert cluster.slurm is not None
    client = SlurmClient(cluster, transport)
    login = state.nodes.get(cluster.slurm.login)
    live = {n.name for n in cluster.nodes}
    while True:
        try:
            nodes = await client.nodes()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # shown, then tried again: never the end of the Nodes view
            if login is not None:
                login.slurm = SlurmAllocation(f"sinfo failed: {exc}", 0, 0)
                emit(login)
        else:
            for status in apply_nodes(state, nodes, cluster.slurm.login, clock(), live):
                emit(status)
        await asyncio.sleep(max(EVERY, cluster.poll_interval))
