"""Elastic torchrun jobs (`--nnodes MIN:MAX`), pure: the node count they are given, the nodes they go on without
when one is lost, and the free nodes they grow onto.

torchrun does the re-forming itself (c10d rendezvous, `--max-restarts`): when a node's agent goes, the others
restart their workers with the nodes left; when a new agent joins under the same rendezvous id, the running ones
restart their workers to take it in. ugro's part is the placement: which nodes the job holds, which node it may
grow onto, and when it is below MIN and so ends its attempt as any job does."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from ugro_tui.core.jobs import events
from ugro_tui.core.jobs.model import Job, JobSpec, JobState

LAST_CALL = 5  # seconds torchrun waits for more nodes once MIN have joined (its default, 30, slows every start)
KEEP_ALIVE = 2  # seconds between an agent's heartbeats; three missed and the others go on without it


def is_elastic(spec: JobSpec) -> bool:
    return spec.nnodes_min > 0


def least_nodes(spec: JobSpec) -> int:
    """The fewest nodes the job starts and goes on with."""
    return spec.nnodes_min or spec.nnodes


def node_count(spec: JobSpec) -> str:
    """`2:3` for an elastic job, `3` otherwise: what torchrun's --nnodes gets and the user reads."""
    return f"{spec.nnodes_min}:{spec.nnodes}" if is_elastic(spec) else str(spec.nnodes)


def without(job: Job, gone: Iterable[str]) -> Job | None:
    """The elastic job going on without the `gone` nodes, or None when it cannot: not elastic, fewer than MIN
    left, or the first node gone (it hosts the rendezvous store, so the group cannot re-form without it)."""
    gone = set(gone)
    if not is_elastic(job.spec) or not job.placement or job.placement[0][0] in gone:
        return None
    placement = tuple((n, g) for n, g in job.placement if n not in gone)
    if len(placement) < job.spec.nnodes_min:
        return None
    return dataclasses.replace(job, placement=placement, runs=tuple((n, r) for n, r in job.runs if n not in gone))


def went_on(job: Job, why: str) -> Job:
    """An elastic job that lost nodes goes on: its reason, its events and the journal (`job-resized`) say with
    which nodes and which WORLD_SIZE. Call it in a thread (it appends to files)."""
    nodes = [n for n, _ in job.placement]
    text = (f"{why}: goes on with {len(nodes)} of {job.spec.nnodes} nodes ({', '.join(nodes)}), WORLD_SIZE "
            f"{len(nodes) * job.spec.nproc_per_node}; torchrun re-forms the group from the newest checkpoint")
    events.tell(job, text, "job-resized")
    return dataclasses.replace(job, reason=f"running on {len(nodes)} of {job.spec.nnodes} nodes ({why})")


def grew(job: Job, node: str) -> Job:
    """An elastic job that took one more node: told as for a loss."""
    nodes = [n for n, _ in job.placement]
    events.tell(job, f"grew onto {node}: {len(nodes)} of {job.spec.nnodes} nodes, WORLD_SIZE "
                     f"{len(nodes) * job.spec.nproc_per_node} at the group's next rendezvous", "job-resized")
    full = len(nodes) >= job.spec.nnodes
    return dataclasses.replace(job, reason="running" if full else f"running on {len(nodes)} of {job.spec.nnodes} "
                                                                  "nodes (grows when a node fits)")


def may_grow(job: Job) -> bool:
    return (is_elastic(job.spec) and job.state is JobState.RUNNING and len(job.placement) < job.spec.nnodes
            and not (job.preempt or job.stop or job.prune or job.cancel_requested))


def grow_choices(jobs: Sequence[Job], free: dict[str, list[tuple[int, int | None]]], allowed: dict[int, set[str]],
                 avoid: set[tuple[int, str]]) -> list[tuple[Job, str, tuple[int, ...]]]:
    """One node per running elastic job below MAX, by priority: the first allowed node it is not on with enough
    whole free GPUs of the memory it asks (`free`: node -> (GPU index, free MiB) left by this round's placements).
    `avoid`: (job, node) pairs not to use yet (what a lost node still runs of the job is swept first)."""
    out = []
    for job in sorted(jobs, key=lambda j: (-j.spec.priority, j.submitted_at, j.id)):
        if not may_grow(job):
            continue
        on = {n for n, _ in job.placement}
        need = job.spec.min_gpu_mem_gb * 1024
        for node, cards in free.items():
            if node in on or node not in allowed.get(job.id, set()) or (job.id, node) in avoid:
                continue
            fit = sorted(i for i, mib in cards if need <= 0 or (mib is not None and mib >= need))
            if len(fit) >= job.spec.gpus_per_node:
                taken = tuple(fit[: job.spec.gpus_per_node])
                free[node] = [c for c in cards if c[0] not in taken]
                out.append((job, node, taken))
                break
    return out
