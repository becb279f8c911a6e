"""What a user does to yield a node's GPUs, the same from the CLI and the app: yield them, give them back. The
daemon's next round acts on it (yield_watch.py): the jobs there make way, and nothing new is placed there."""

from __future__ import annotations

import getpass
import time

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.model import Job, JobState
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.jobs.yields import Yield, YieldBook, give_back, hits, take
from ugro_tui.errors import UsageError


def check_node(cluster: Cluster, node: str, gpus: tuple[int, ...], force: bool) -> None:
    """A node that does not exist, a GPU it does not have, or (without --force) a node that is not a desktop."""
    names = [n.name for n in cluster.nodes]
    if node not in names:
        raise UsageError(f"no node {node!r} in {cluster.source} (nodes: {', '.join(names)})")
    config = cluster.node(node)
    if not config.desktop and not force:
        raise UsageError(f"{node} is not a desktop (desktop = true in its [[nodes]] table); --force yields it anyway")
    count = len(config.sim.gpus) if config.sim is not None else None
    if count is not None and any(g >= count for g in gpus):
        raise UsageError(f"{node} has {count} GPU{'s' if count != 1 else ''} (0-{count - 1}); "
                         f"no GPU {max(gpus)}")


def affected(jobs: list[Job], y: Yield) -> list[str]:
    """What the yield does to each running job on its cards, in the user's words."""
    out = []
    for job in jobs:
        if job.state is not JobState.RUNNING or hits(job.placement, [y]) is None:
            continue
        name = f"job {job.id} ({job.spec.name})"
        if job.spec.preemptible:
            out.append(f"{name} is preempted (requeued, resuming from its checkpoint)")
        elif y.force:
            out.append(f"{name} is stopped (it fails; its retry policy applies)")
        else:
            out.append(f"{name} is not preemptible and runs on (--force stops it)")
    return out


def yield_cards(cluster: Cluster, store: JobStore, node: str, gpus: tuple[int, ...] = (), *,
                span_s: float | None = None, force: bool = False, to: str | None = None,
                now: float | None = None) -> str:
    check_node(cluster, node, gpus, force)
    now = time.time() if now is None else now
    who = to or cluster.node(node).user or getpass.getuser()
    new = Yield(node, gpus, who, now, until=now + span_s if span_s else None, force=force, why="by hand")
    YieldBook(store.root).change(lambda ys: take(ys, new))
    said = affected(store.active(), new)
    return f"{new.cards()} {new.describe(cluster.yield_idle_minutes * 60)}; " + \
        ("; ".join(said) if said else "no job runs there") + "; nothing new is placed there"


def unyield_cards(cluster: Cluster, store: JobStore, node: str, gpus: tuple[int, ...] = ()) -> str:
    if node not in {n.name for n in cluster.nodes}:
        raise UsageError(f"no node {node!r} in {cluster.source}")
    before, after = YieldBook(store.root).change(lambda ys: give_back(ys, node, gpus))
    if before == after:
        return f"nothing of {node} is yielded"
    back = f"{node}:{','.join(map(str, gpus))}" if gpus else node
    return f"{back} is back in the queue"
