"""When a waiting job may start: the running jobs end at their ETAs (progress.py), in that order, and the first
moment their cards would let placement's own rule start the job is its estimate. Jobs ahead of it in the queue
take the cards they would get first. One running job without an ETA among those it waits for makes it unknown.
Recomputed each dispatcher round; it is said as an estimate, rounded to the minute."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from ugro_tui.core.jobs.describe import clock_time
from ugro_tui.core.jobs.model import Job
from ugro_tui.core.jobs.placement import FreeGpu, NodeCapacity, place
from ugro_tui.core.jobs.sharing import CardRoom

LIMIT = 50  # waiting jobs estimated per round, in queue order (placement tries each once per freed job)


def _with_freed(caps: Sequence[NodeCapacity], freed: set[tuple[str, int]], taken: set[tuple[str, int]]
                ) -> list[NodeCapacity]:
    """The nodes as they would be with `freed` cards free again, less the free ones `taken` by jobs ahead."""
    out = []
    for cap in caps:
        free = {g.index: g for g in cap.free if (cap.name, g.index) not in taken}
        for node, index in freed:
            if node == cap.name:
                room = max(0, cap.gpu_total_mib - cap.headroom_mib)
                free[index] = FreeGpu(index, cap.gpu_total_mib, whole=True, room=CardRoom(room))
        out.append(dataclasses.replace(cap, free=tuple(free[i] for i in sorted(free))))
    return out


def start_estimates(waiting: Sequence[Job], running: Sequence[Job], caps: Sequence[NodeCapacity], now: float
                    ) -> dict[int, str]:
    """job id -> `starts ≈ 14:20 (estimate)` or `start unknown (job 12 has no ETA)`, for the first LIMIT waiting
    jobs (in the order given: placement's) that a running job's end would let start."""
    # (when, whose, cards): the running jobs' ends, soonest first, those with no ETA last.
    ends = sorted(((j.progress.eta() if j.progress else None, j.id, {(n, g) for n, gpus in j.placement for g in gpus})
                   for j in running if j.placement), key=lambda e: (e[0] is None, e[0] or 0.0, e[1]))
    taken: set[tuple[str, int]] = set()  # cards free now that jobs ahead will have taken
    out: dict[int, str] = {}
    for job in list(waiting)[:LIMIT]:
        freed: set[tuple[str, int]] = set()
        blind: list[str] = []  # the jobs it waits for that have no ETA
        for k, (eta, whose, cards) in enumerate(ends):
            freed |= cards
            blind += [str(whose)] if eta is None and cards else []
            still = set().union(*(c for _, _, c in ends[k + 1:]))  # a shared card is free once all its jobs end
            [decision] = place([job], _with_freed(caps, freed - still, taken), now=now, starve_after=float("inf"))
            if decision.placement is None:
                continue
            if eta is None:
                jobs = f"job {blind[0]} has" if len(blind) == 1 else f"jobs {', '.join(blind)} have"
                out[job.id] = f"start unknown ({jobs} no ETA)"
                break
            out[job.id] = f"starts ≈ {clock_time(math.ceil(max(now, eta) / 60) * 60, now)} (estimate)"
            mine = {(n, g) for n, gpus in decision.placement for g in gpus}
            taken |= mine
            ends = [(e, w, c - mine) for e, w, c in ends] + [(None, job.id, mine)]  # its cards, until it ends
            break
    return out
