"""Placement, a pure function: (waiting jobs, free GPUs per node) -> where each job starts, or why it waits.

The rule: jobs are taken by priority (higher first), then in submission order (FIFO). A job that fits starts,
all-or-nothing across its nodes, on the nodes that fit it most tightly (so big holes stay free for big jobs).
A job that does not fit lets later, smaller jobs start around it (backfill), but only for `starve_after`
seconds: once it has waited that long it *reserves* as many nodes as it needs, those nearest to fitting it
(the most free cards), so nothing new starts there and they drain until it fits; the other nodes stay open to
smaller jobs. Reserved nodes only gain free cards, so the choice moves only to nodes that are nearer still, and
a big job is never starved (jobs finish, its nodes drain, it starts). A job that could never fit on this
cluster reserves nothing and says so. A sharing job that waited that long keeps its memory on the cards with
the most room instead: later jobs cannot take that room, and may still use the rest of the card.

A job that declares its memory per rank (`gpu_mem_gb`) may share cards (sharing.py says what a card has free):
it goes on the cards with the least room that still hold it, so whole cards stay whole for jobs that need them,
and each card's room shrinks by what it declared, so nothing is ever over-committed. A whole-card job takes only
cards with no process and no job on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ugro_tui.config import Cluster
from ugro_tui.core.jobs import preemption, sharing
from ugro_tui.core.jobs.elastic import least_nodes, node_count
from ugro_tui.core.jobs.model import Job, JobState
from ugro_tui.core.jobs.sharing import CardRoom, Holder, declared_mib, gb
from ugro_tui.core.jobs.yields import Yield, yielded
from ugro_tui.core.telemetry.model import ClusterState, NodeState


@dataclass(frozen=True)
class FreeGpu:
    """A card placement may use: whole (no process, no job on it) for any job, and with `room` for sharing jobs
    (None: never shared, e.g. `share_gpus = false`, or held whole)."""

    index: int
    free_mib: int | None
    whole: bool = True
    room: CardRoom | None = None


@dataclass(frozen=True)
class NodeCapacity:
    """One node as placement sees it: its free GPUs now, and how many and how big its GPUs are in all."""

    name: str
    labels: tuple[str, ...] = ()
    free: tuple[FreeGpu, ...] = ()
    gpu_count: int = 0
    gpu_total_mib: int = 0   # the largest GPU's memory, for "could this ever fit"
    headroom_mib: int = 0    # kept free on a shared card
    claims: tuple[tuple[int, str], ...] = ()  # (GPU index, "held by session 7 (name)" / "yielded to ollie")
    held: tuple[tuple[int, int | None], ...] = ()  # (GPU index, memory MiB) of cards whole-card jobs hold
    running: tuple[tuple[int, str], ...] = ()  # (GPU index, "job 12 (urgent)") of the jobs on its cards


@dataclass(frozen=True)
class Decision:
    job_id: int
    placement: tuple[tuple[str, tuple[int, ...]], ...] | None
    reason: str = ""
    reserved: tuple[str, ...] = ()
    preempt: tuple[int, ...] = ()  # running jobs to stop (and requeue) so that this one fits


def job_order(job: Job) -> tuple[int, float, int]:
    return (-job.spec.priority, job.submitted_at, job.id)


def allowed(job: Job, node: NodeCapacity) -> bool:
    wanted = job.spec.nodes
    return not wanted or node.name in wanted or any(label in wanted for label in node.labels)


def _usable(job: Job, gpus: Sequence[FreeGpu]) -> list[FreeGpu]:
    """The cards of one node the job may take, tightest first for a sharing job."""
    need = job.spec.min_gpu_mem_gb * 1024
    share = declared_mib(job.spec)
    if job.spec.gpu_indexes:  # these GPUs of the node (a session started on a chosen card)
        gpus = [g for g in gpus if g.index in job.spec.gpu_indexes]
    if share:
        fits = [g for g in gpus if g.room is not None and g.room.room_mib >= max(share, need)]
        return sorted(fits, key=lambda g: (g.room.room_mib if g.room else 0, g.index))
    return [g for g in gpus if g.whole and (need <= 0 or (g.free_mib is not None and g.free_mib >= need))]


def describe_need(job: Job) -> str:
    s = job.spec
    nodes = f"{node_count(s).replace(':', ' to ')} node{'s' if s.nnodes != 1 else ''}"
    if declared_mib(s):
        on = f" on {nodes}" if s.nnodes != 1 else ""
        return f"needs {gb(declared_mib(s))} on {s.gpus_per_node} GPU{'s' if s.gpus_per_node != 1 else ''}{on}"
    mem = f" ≥ {s.min_gpu_mem_gb:g} GB" if s.min_gpu_mem_gb > 0 else ""
    gpus = f"{s.gpus_per_node} free GPU{'s' if s.gpus_per_node != 1 else ''}"
    return f"needs {nodes} with {gpus}{mem}"


def _need_mib(job: Job, node: NodeCapacity) -> float:
    """The card size the job needs on `node` to ever fit there."""
    share = declared_mib(job.spec)
    return max(job.spec.min_gpu_mem_gb * 1024, share + node.headroom_mib if share else 0)


def could_ever_fit(job: Job, nodes: Sequence[NodeCapacity]) -> bool:
    able = [n for n in nodes if allowed(job, n) and n.gpu_count >= job.spec.gpus_per_node
            and n.gpu_total_mib >= _need_mib(job, n) and n.gpu_count > max(job.spec.gpu_indexes, default=-1)]
    return len(able) >= least_nodes(job.spec)


def _never_reason(job: Job, nodes: Sequence[NodeCapacity], reason: str) -> str:
    largest = max((n for n in nodes if allowed(job, n)), key=lambda n: n.gpu_total_mib, default=None)
    if declared_mib(job.spec) and largest is not None and largest.gpu_total_mib < _need_mib(job, largest):
        return (f"can never fit on this cluster: {reason}; the largest card is {largest.name}'s, "
                f"{gb(largest.gpu_total_mib)} ({gb(largest.headroom_mib)} of it kept free)")
    return f"can never fit on this cluster: {reason}"


def _best_card(job: Job, nodes: Sequence[NodeCapacity], pool: dict[str, list[FreeGpu]]) -> str:
    """A sharing job's wait in numbers: the card with the most room now, and what holds the rest of it."""
    cards = [(g.room.room_mib, n.name, g) for n in nodes if allowed(job, n) for g in pool[n.name]
             if g.room is not None]
    if not cards:
        return "no card may be shared now"
    room, name, card = max(cards, key=lambda c: (c[0], c[1]))
    held = card.room.describe() if card.room else ""
    return f"best: {name}:{card.index} has {gb(room)} free" + (f" ({held})" if held else "")


def place(waiting: Sequence[Job], nodes: Sequence[NodeCapacity], *, now: float,
          starve_after: float = 600.0, running: Sequence[Job] = ()) -> list[Decision]:
    """Decide for every waiting job, in priority/FIFO order. Never double-books a GPU, never over-commits a card.
    A job that does not fit may preempt `running` preemptible jobs of lower priority (preemption.py)."""
    pool = {n.name: list(n.free) for n in nodes}
    all_victims = _victims(running, nodes)
    victims = dict(all_victims)
    order = {n.name: i for i, n in enumerate(nodes)}
    reserved: set[str] = set()
    decisions = []
    # Jobs of one shape that did not fit: the next of that shape does not either, until a placement or a
    # reservation changes what is free (a queue of 1,000 trials costs a few shapes, not 1,000 searches).
    unfit: dict[tuple, tuple[str, bool]] = {}
    for job in sorted(waiting, key=job_order):
        s = job.spec
        home = set(job.ran_on) if s.checkpoint_dir else set()  # a retry goes where its checkpoints are, if free
        share = declared_mib(s)
        shape = (s.nnodes, s.nnodes_min, s.gpus_per_node, share, s.min_gpu_mem_gb, s.nodes, tuple(sorted(home)),
                 s.gpu_indexes, bool(job.preempt))
        known = unfit.get(shape)
        if known is None:
            fitting = _fitting(job, nodes, pool, reserved, home, order)
            if len(fitting) >= least_nodes(s):  # an elastic job starts on MIN, and takes up to MAX
                decisions.append(Decision(job.id, _take(job, fitting, pool)))
                unfit.clear()
                continue
            known = unfit[shape] = (_wait_reason(job, nodes, pool, len(fitting)), could_ever_fit(job, nodes))
        reason, ever = known
        if not ever:
            decisions.append(Decision(job.id, None, _never_reason(job, nodes, reason.split(";")[0])))
            continue
        if s.priority > min((v.priority for v in victims.values()), default=s.priority):
            chosen = preemption.choose(job, pool, victims, lambda p, j=job, h=home: len(
                _fitting(j, nodes, p, reserved, h, order)) >= least_nodes(j.spec))
            if chosen:
                trial = preemption.with_cards(pool, [victims.pop(vid) for vid in chosen])
                for name, gpus in _take(job, _fitting(job, nodes, trial, reserved, home, order), trial):
                    pool[name] = [g for g in pool[name] if g.index not in gpus]  # kept for it while they stop
                unfit.clear()
                decisions.append(Decision(job.id, None, preemption.reason(reason, chosen, all_victims),
                                          preempt=chosen))
                continue
        if now - job.submitted_at >= starve_after and share:
            kept = _keep_room(job, nodes, pool, reserved, share)
            unfit.clear()
            where = ", ".join(f"{n}:{g}" for n, g in kept) or "no card"
            decisions.append(Decision(job.id, None, f"{reason}; waited over {starve_after:g}s, so {where} "
                                                    f"keep{'s' if len(kept) == 1 else ''} {gb(share)} for it"))
            continue
        if now - job.submitted_at >= starve_after:
            holding = _hold(job, nodes, pool, reserved)
            reserved.update(holding)
            unfit.clear()
            reason += f"; waited over {starve_after:g}s, so {', '.join(holding)} take no new jobs until it starts"
            decisions.append(Decision(job.id, None, reason, holding))
            continue
        decisions.append(Decision(job.id, None, reason))
    return decisions


def _victims(running: Sequence[Job], nodes: Sequence[NodeCapacity]) -> dict[int, preemption.Victim]:
    """The running jobs that may be preempted: preemptible, holding whole cards."""
    held = {(n.name, i): mib for n in nodes for i, mib in n.held}
    out = {}
    for job in running:
        if not job.spec.preemptible or job.state is not JobState.RUNNING or declared_mib(job.spec):
            continue
        cards = tuple((node, FreeGpu(g, held[(node, g)])) for node, gpus in job.placement for g in gpus
                      if (node, g) in held)
        if cards:
            out[job.id] = preemption.Victim(job.id, job.spec.name, job.spec.priority, job.started_at or 0.0, cards,
                                              bool(job.preempt))
    return out


def _fitting(job: Job, nodes: Sequence[NodeCapacity], pool: dict[str, list[FreeGpu]], reserved: set[str],
             home: set[str], order: dict[str, int]) -> list[tuple]:
    """The nodes the job could start on now, each with the cards it would take."""
    s = job.spec
    share = declared_mib(s)
    fitting = []
    for node in nodes:
        if node.name in reserved or not allowed(job, node):
            continue
        usable = _usable(job, pool[node.name])
        if len(usable) >= s.gpus_per_node:
            usable = usable[: s.gpus_per_node] if share else usable
            tight = sum(g.room.room_mib for g in usable if g.room) if share else len(usable)
            fitting.append((node.name not in home, tight, order[node.name], node.name, usable))
    return fitting


def _take(job: Job, fitting: list[tuple], pool: dict[str, list[FreeGpu]]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """All or nothing: the nodes that fit it best, its cards taken out of the pool (or their room shrunk)."""
    s = job.spec
    share = declared_mib(s)
    chosen = sorted(fitting, key=lambda f: f[:3])[: s.nnodes]  # its checkpoints' nodes, tightest first
    chosen.sort(key=lambda f: f[2])                            # then config order: rank 0 on the first
    placement = []
    for _, _, _, name, usable in chosen:
        if share:
            gpus = tuple(sorted(g.index for g in usable))
            pool[name] = [_taken(g, job.id, share) if g.index in gpus else g for g in pool[name]]
        else:
            gpus = tuple(sorted(g.index for g in usable)[: s.gpus_per_node])
            pool[name] = [g for g in pool[name] if g.index not in gpus]
        placement.append((name, gpus))
    return tuple(placement)


def _hold(job: Job, nodes: Sequence[NodeCapacity], pool: dict[str, list[FreeGpu]], reserved: set[str]
          ) -> tuple[str, ...]:
    """The nodes a whole-card job that waited too long holds: as many as it needs, those nearest to fitting it
    (the most whole cards free now), in config order; the others stay open to smaller jobs."""
    able = [n for n in nodes if allowed(job, n) and n.name not in reserved and n.gpu_count >= job.spec.gpus_per_node
            and n.gpu_total_mib >= _need_mib(job, n)]
    ranked = sorted(able, key=lambda n: -sum(g.whole for g in pool[n.name]))
    chosen = {n.name for n in ranked[: least_nodes(job.spec)]}
    return tuple(n.name for n in nodes if n.name in chosen)


def _keep_room(job: Job, nodes: Sequence[NodeCapacity], pool: dict[str, list[FreeGpu]], reserved: set[str],
               share: int) -> list[tuple[str, int]]:
    """A sharing job that waited too long keeps its memory on the cards nearest to holding it (the most room), so
    later jobs cannot take that room while those cards drain; the rest of each card stays open to them."""
    ranked = []
    for node in nodes:
        if node.name in reserved or not allowed(job, node) or node.gpu_total_mib < _need_mib(job, node):
            continue
        cards = sorted((g for g in pool[node.name] if g.room is not None), key=lambda g: -g.room.room_mib)
        if len(cards) >= job.spec.gpus_per_node:
            chosen = cards[: job.spec.gpus_per_node]
            ranked.append((-sum(g.room.room_mib for g in chosen if g.room), node.name, chosen))
    kept = []
    for _, name, chosen in sorted(ranked)[: job.spec.nnodes]:
        indexes = {g.index for g in chosen}
        pool[name] = [_taken(g, job.id, share) if g.index in indexes else g for g in pool[name]]
        kept += [(name, i) for i in sorted(indexes)]
    return kept


def _claimed(job: Job, nodes: Sequence[NodeCapacity]) -> str:
    """The cards the job could use that people hold (sessions, yields), named: no job's end frees them."""
    held = [f"{n.name}:{i} is {what}" for n in nodes if allowed(job, n) for i, what in n.claims
            if not job.spec.gpu_indexes or i in job.spec.gpu_indexes]
    return "; " + ", ".join(held[:3]) + (f" (+{len(held) - 3} more)" if len(held) > 3 else "") if held else ""


def _waits_for(job: Job, nodes: Sequence[NodeCapacity]) -> str:
    """A preempted job's wait: the running jobs on the cards it may use (the one that preempted it, mostly)."""
    if not job.preempt:
        return ""
    on: dict[str, list[str]] = {}
    for n in nodes:
        if allowed(job, n):
            for i, who in n.running:
                on.setdefault(who, []).append(f"{n.name}:{i}")
    named = [f"{who} on {', '.join(cards)}" for who, cards in list(on.items())[:3]]
    return f"; waits for {', '.join(named)}" if named else ""


def _wait_reason(job: Job, nodes: Sequence[NodeCapacity], pool: dict[str, list[FreeGpu]], free_now: int) -> str:
    such = f"{free_now} such node{'s' if free_now != 1 else ''}"
    if not declared_mib(job.spec):
        return f"{describe_need(job)}; {such} free now{_claimed(job, nodes)}{_waits_for(job, nodes)}"
    if job.spec.nnodes > 1:
        return f"{describe_need(job)}; {such} now; {_best_card(job, nodes, pool)}"
    return f"{describe_need(job)}; {_best_card(job, nodes, pool)}"


def _taken(card: FreeGpu, job_id: int, mib: int) -> FreeGpu:
    """A card after a sharing job was placed on it (or kept room on it) this round: no longer whole, its room
    smaller by the job's share."""
    room = card.room or CardRoom(0)
    return FreeGpu(card.index, card.free_mib, whole=False, room=CardRoom(
        max(0, room.room_mib - mib), (*room.holders, Holder(f"job {job_id}", 0, job_id, mib))))


def capacity(cluster: Cluster, state: ClusterState, jobs: list[Job], yields: Sequence[Yield] = ()
             ) -> list[NodeCapacity]:
    """The cards placement may use, per online node. Whole: no process on it (anyone's process makes it busy) and
    no job placed there. Shared: not held by a whole-card job, on a node that shares, with what it has free. A
    yielded card is neither, and no job is preempted to get it."""
    active = [j for j in jobs if j.state.active]
    whole_held = {(node, gpu) for job in active if not declared_mib(job.spec)
                  for node, gpus in job.placement for gpu in gpus}
    placed = {(node, gpu) for job in active for node, gpus in job.placement for gpu in gpus}
    headroom = round(cluster.gpu_mem_headroom_gb * 1024)
    claims: dict[str, list[tuple[int, str]]] = {}
    running: dict[str, list[tuple[int, str]]] = {}
    for job in active:
        for node, gpus in job.placement if job.spec.kind != "session" else ():
            running.setdefault(node, []).extend((g, f"job {job.id} ({job.spec.name})") for g in gpus)
        if job.spec.kind == "session":
            for node, gpus in job.placement:
                claims.setdefault(node, []).extend((g, f"held by session {job.id} ({job.spec.name})") for g in gpus)
    idle_s = cluster.yield_idle_minutes * 60
    out = []
    for node in cluster.nodes:
        status = state.nodes.get(node.name)
        gpus = status.gpus if status is not None else ()
        online = status is not None and status.state is NodeState.ONLINE and status.error is None
        mine = claims.get(node.name, [])
        gone = set()
        for g in gpus:
            y = yielded(yields, node.name, g.index)
            if y is not None:
                gone.add(g.index)
                mine.append((g.index, y.describe(idle_s)))
        free = []
        for g in gpus if online else ():
            if (node.name, g.index) in whole_held or g.index in gone:
                continue
            whole = not g.processes and (node.name, g.index) not in placed
            room = sharing.card_room(g, sharing.sharers_of(active, node.name, g.index), headroom) \
                if node.share_gpus else None
            if whole or room is not None:
                free.append(FreeGpu(g.index, g.memory_free_mib, whole, room))
        held = tuple((g.index, g.memory_total_mib) for g in gpus
                     if (node.name, g.index) in whole_held and g.index not in gone) if online else ()
        out.append(NodeCapacity(node.name, node.labels, tuple(free), len(gpus),
                                max((g.memory_total_mib or 0 for g in gpus), default=0), headroom, tuple(mine), held,
                                tuple(running.get(node.name, ()))))
    return out
