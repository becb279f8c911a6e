"""Placement, a pure function: (waiting jobs, free GPUs per node) -> where each job starts, or why it waits.

The rule: jobs are taken by priority (higher first), then in submission order (FIFO). A job that fits starts,
all-or-nothing across its nodes, on the nodes that fit it most tightly (so big holes stay free for big jobs).
A job that does not fit lets later, smaller jobs start around it (backfill), but only for `starve_after`
seconds: once it has waited that long it *reserves* every node it could use, so nothing new starts there and
those nodes drain until it fits. A job that could never fit on this cluster reserves nothing and says so.
So a big job is never starved (jobs finish, its nodes drain, it starts), and a job that cannot fit blocks
smaller ones for at most `starve_after`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.model import Job
from ugro_tui.core.telemetry.model import ClusterState, NodeState


@dataclass(frozen=True)
class FreeGpu:
    index: int
    free_mib: int | None


@dataclass(frozen=True)
class NodeCapacity:
    """One node as placement sees it: its free GPUs now, and how many and how big its GPUs are in all."""

    name: str
    labels: tuple[str, ...] = ()
    free: tuple[FreeGpu, ...] = ()
    gpu_count: int = 0
    gpu_total_mib: int = 0   # the largest GPU's memory, for "could this ever fit"


@dataclass(frozen=True)
class Decision:
    job_id: int
    placement: tuple[tuple[str, tuple[int, ...]], ...] | None
    reason: str = ""
    reserved: tuple[str, ...] = ()


def job_order(job: Job) -> tuple[int, float, int]:
    return (-job.spec.priority, job.submitted_at, job.id)


def allowed(job: Job, node: NodeCapacity) -> bool:
    wanted = job.spec.nodes
    return not wanted or node.name in wanted or any(label in wanted for label in node.labels)


def _usable(job: Job, gpus: Sequence[FreeGpu]) -> list[FreeGpu]:
    need = job.spec.min_gpu_mem_gb * 1024
    if need <= 0:
        return list(gpus)
    return [g for g in gpus if g.free_mib is not None and g.free_mib >= need]


def describe_need(job: Job) -> str:
    s = job.spec
    mem = f" ≥ {s.min_gpu_mem_gb:g} GB" if s.min_gpu_mem_gb > 0 else ""
    nodes = f"{s.nnodes} node{'s' if s.nnodes != 1 else ''}"
    gpus = f"{s.gpus_per_node} free GPU{'s' if s.gpus_per_node != 1 else ''}"
    return f"needs {nodes} with {gpus}{mem}"


def could_ever_fit(job: Job, nodes: Sequence[NodeCapacity]) -> bool:
    need = job.spec.min_gpu_mem_gb * 1024
    able = [n for n in nodes if allowed(job, n) and n.gpu_count >= job.spec.gpus_per_node
            and (need <= 0 or n.gpu_total_mib >= need)]
    return len(able) >= job.spec.nnodes


def place(waiting: Sequence[Job], nodes: Sequence[NodeCapacity], *, now: float,
          starve_after: float = 600.0) -> list[Decision]:
    """Decide for every waiting job, in priority/FIFO order. Never double-books a GPU."""
    pool = {n.name: list(n.free) for n in nodes}
    order = {n.name: i for i, n in enumerate(nodes)}
    reserved: set[str] = set()
    decisions = []
    for job in sorted(waiting, key=job_order):
        s = job.spec
        home = set(job.ran_on) if s.checkpoint_dir else set()  # a retry goes where its checkpoints are, if free
        fitting = []
        for node in nodes:
            if node.name in reserved or not allowed(job, node):
                continue
            usable = _usable(job, pool[node.name])
            if len(usable) >= s.gpus_per_node:
                fitting.append((node.name not in home, len(usable), order[node.name], node.name, usable))
        if len(fitting) >= s.nnodes:
            chosen = sorted(fitting)[: s.nnodes]                     # its checkpoints' nodes, tightest fit first
            chosen.sort(key=lambda f: f[2])                          # then config order: rank 0 on the first
            placement = []
            for _, _, _, name, usable in chosen:
                gpus = tuple(sorted(g.index for g in usable)[: s.gpus_per_node])
                pool[name] = [g for g in pool[name] if g.index not in gpus]
                placement.append((name, gpus))
            decisions.append(Decision(job.id, tuple(placement)))
            continue
        free_now = len(fitting)
        reason = f"{describe_need(job)}; {free_now} such node{'s' if free_now != 1 else ''} free now"
        if not could_ever_fit(job, nodes):
            decisions.append(Decision(job.id, None, f"can never fit on this cluster: {reason}"))
            continue
        if now - job.submitted_at >= starve_after:
            holding = tuple(n.name for n in nodes if allowed(job, n) and n.name not in reserved)
            reserved.update(holding)
            reason += f"; waited over {starve_after:g}s, so {', '.join(holding)} take no new jobs until it starts"
            decisions.append(Decision(job.id, None, reason, holding))
            continue
        decisions.append(Decision(job.id, None, reason))
    return decisions


def capacity(cluster: Cluster, state: ClusterState, jobs: list[Job]) -> list[NodeCapacity]:
    """Free GPUs per node: online, no process on it (anyone's process makes it busy), not held by a job."""
    taken = {(node, gpu) for job in jobs if job.state.active for node, gpus in job.placement for gpu in gpus}
    out = []
    for node in cluster.nodes:
        status = state.nodes.get(node.name)
        gpus = status.gpus if status is not None else ()
        online = status is not None and status.state is NodeState.ONLINE and status.error is None
        free = tuple(FreeGpu(g.index, g.memory_free_mib) for g in gpus
                     if online and not g.processes and (node.name, g.index) not in taken)
        out.append(NodeCapacity(node.name, node.labels, free, len(gpus),
                                max((g.memory_total_mib or 0 for g in gpus), default=0)))
    return out
