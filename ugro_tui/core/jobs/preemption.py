"""Preemption, pure: which running preemptible jobs of lower priority a waiting job stops so that it fits.

All or nothing, as placement: the jobs already being preempted first (their cards come free anyway), then the
youngest, until the job fits; then any it did not need are let go again, so it stops the fewest. A job chosen in
one round is not chosen again by another job in the same round, so two jobs never preempt one job twice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ugro_tui.core.jobs.model import Job

FreeGpu = Any  # placement's card (placement.py builds the victims; this module never imports it)


@dataclass(frozen=True)
class Victim:
    job_id: int
    name: str
    priority: int
    started_at: float
    cards: tuple[tuple[str, FreeGpu], ...]  # what it gives back: (node, card)
    being: bool = False                      # already being preempted


def choose(job: Job, pool: dict[str, list[FreeGpu]], victims: dict[int, Victim],
           fits: Callable[[dict[str, list[FreeGpu]]], bool]) -> tuple[int, ...]:
    """The fewest, youngest victims of lower priority whose cards make `job` fit; () when none do."""
    lower = sorted((v for v in victims.values() if v.priority < job.spec.priority),
                   key=lambda v: (not v.being, -v.started_at, v.job_id))
    chosen: list[Victim] = []
    for victim in lower:
        chosen.append(victim)
        if fits(with_cards(pool, chosen)):
            break
    else:
        return ()
    for victim in sorted(chosen, key=lambda v: (v.being, v.started_at)):  # let go the oldest it did not need
        rest = [v for v in chosen if v is not victim]
        if rest and fits(with_cards(pool, rest)):
            chosen = rest
    return tuple(sorted(v.job_id for v in chosen))


def with_cards(pool: dict[str, list[FreeGpu]], victims: list[Victim]) -> dict[str, list[FreeGpu]]:
    out = {name: list(cards) for name, cards in pool.items()}
    for victim in victims:
        for node, card in victim.cards:
            out.setdefault(node, []).append(card)
    return out


def reason(waits: str, chosen: tuple[int, ...], victims: dict[int, Victim]) -> str:
    named = ", ".join(f"job {v} ({victims[v].name}, priority {victims[v].priority})" for v in chosen)
    return f"{waits}; preempting {named}: it starts once they have stopped"
