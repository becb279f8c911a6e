"""Sharing a card by memory, the one owner of the rule: what a job declares per card, what a card has free for
such jobs, who holds it, and which ranks use more than they declared.

A job that gives `gpu_mem_gb` (per rank) may share a card with other such jobs. What the card has free for one
more is its total, minus what every process on it uses now (the sample's used memory, a foreign notebook's
included), minus what sharing ugro jobs placed there declared but do not use yet, minus a headroom. A card that a
whole-card job holds is never shared; a card with only foreign processes may be, by what they leave free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ugro_tui.core.jobs.model import Job, JobSpec
from ugro_tui.core.telemetry.model import GpuSample

OVER_BY = 1.10      # a rank over its declared memory by more than this share...
OVER_SAMPLES = 3    # ...for this many samples in a row gets a warning (or, enforced, stops the job)


def ranks_per_gpu(spec: JobSpec) -> int:
    if spec.kind != "torchrun" or spec.gpus_per_node <= 0:
        return 1
    return max(1, math.ceil(spec.nproc_per_node / spec.gpus_per_node))


def rank_mib(spec: JobSpec) -> int:
    """What one rank declared, in MiB; 0 for a job that takes whole cards."""
    return 0 if spec.gpu_mem_gb is None else math.ceil(spec.gpu_mem_gb * 1024)


def declared_mib(spec: JobSpec) -> int:
    """What the job declared on each of its cards (its ranks there together); 0: it takes whole cards."""
    return rank_mib(spec) * ranks_per_gpu(spec)


def gb(mib: float) -> str:
    return f"{mib / 1024:.1f} GB"


@dataclass(frozen=True)
class Holder:
    """Something that takes memory on a card: a job ("job 12") or a foreign process ("ollie's python")."""

    what: str
    mib: int
    job: int | None = None
    declared: int = 0   # a sharing job's declared MiB on this card

    def __str__(self) -> str:
        if self.job is None:
            return f"{self.what} {gb(self.mib)}"
        used = f", uses {gb(self.mib)}" if self.mib else ""
        return f"{self.what} holds {gb(self.declared)}{used}"


@dataclass(frozen=True)
class CardRoom:
    """A card as sharing sees it: the MiB a new sharing job may take (after the headroom), and who holds the rest."""

    room_mib: int
    holders: tuple[Holder, ...] = ()
    short_mib: int = 0  # how far the card is from holding what its jobs declared (their processes or others grew)

    def describe(self) -> str:
        return ", ".join(map(str, self.holders))


def process_label(user: str | None, command: str | None) -> str:
    word = (command or "").split()[0].rsplit("/", 1)[-1] if command else "process"
    return f"{user}'s {word}" if user else word


def card_room(gpu: GpuSample, sharers: Iterable[Job], headroom_mib: int) -> CardRoom | None:
    """What `gpu` leaves for one more sharing job, given the sharing jobs placed on it; None when its memory is
    unknown (a card we cannot measure is never shared)."""
    if gpu.memory_total_mib is None or gpu.memory_used_mib is None:
        return None
    sharers = list(sharers)
    ids = {j.id for j in sharers}
    holders: list[Holder] = []
    unused = 0
    for job in sharers:
        declared = declared_mib(job.spec)
        used = sum(p.used_mib or 0 for p in gpu.processes if p.ugro_job == job.id)
        unused += max(0, declared - used)
        holders.append(Holder(f"job {job.id}", used, job.id, declared))
    for p in gpu.processes:
        if p.ugro_job is None or p.ugro_job not in ids:
            holders.append(Holder(process_label(p.user, p.command), p.used_mib or 0))
    left = gpu.memory_total_mib - gpu.memory_used_mib - unused
    return CardRoom(max(0, left - headroom_mib), tuple(sorted(holders, key=lambda h: -max(h.mib, h.declared))),
                    max(0, -left))


def sharers_of(jobs: Iterable[Job], node: str, index: int) -> list[Job]:
    """The active sharing jobs placed on one card."""
    return [j for j in jobs if j.state.active and declared_mib(j.spec)
            and any(n == node and index in gpus for n, gpus in j.placement)]


@dataclass(frozen=True)
class OverUse:
    job_id: int
    node: str
    gpu: int
    pid: int
    used_mib: int
    declared_mib: int

    def __str__(self) -> str:
        return (f"a rank on {self.node}:{self.gpu} (pid {self.pid}) uses {gb(self.used_mib)}, over its declared "
                f"{gb(self.declared_mib)} by more than {round((OVER_BY - 1) * 100)}% for {OVER_SAMPLES} samples")


class OverUseWatch:
    """Counts, per rank, the samples in a row where it used more than its declared memory by over 10%; a rank that
    reaches OVER_SAMPLES is reported once (until it comes back under)."""

    def __init__(self) -> None:
        self._runs: dict[tuple[int, str, int, int], tuple[float, int]] = {}  # rank -> (last sample's time, count)
        self._told: set[tuple[int, str, int, int]] = set()

    def observe(self, node: str, sampled_at: float, gpus: Sequence[GpuSample], jobs: dict[int, Job]
                ) -> list[OverUse]:
        out = []
        seen = set()
        for gpu in gpus:
            for p in gpu.processes:
                job = jobs.get(p.ugro_job) if p.ugro_job is not None else None
                limit = rank_mib(job.spec) if job is not None and job.state.active else 0
                if not limit or p.used_mib is None:
                    continue
                key = (job.id, node, gpu.index, p.pid)
                if p.used_mib <= limit * OVER_BY:
                    self._runs.pop(key, None)
                    self._told.discard(key)
                    continue
                seen.add(key)
                last, count = self._runs.get(key, (0.0, 0))
                if sampled_at > last:
                    count += 1
                self._runs[key] = (sampled_at, count)
                if count >= OVER_SAMPLES and key not in self._told:
                    self._told.add(key)
                    out.append(OverUse(job.id, node, gpu.index, p.pid, p.used_mib, limit))
        for key in [k for k in self._runs if k[1] == node and k not in seen]:
            self._runs.pop(key, None)
            self._told.discard(key)
        return out


def shares(jobs: Iterable[Job]) -> dict[tuple[str, int], tuple[tuple[int, ...], int]]:
    """Per card that sharing jobs hold now: (their ids, the MiB they declared there together)."""
    out: dict[tuple[str, int], tuple[tuple[int, ...], int]] = {}
    for job in jobs:
        mib = declared_mib(job.spec)
        if not job.state.active or not mib:
            continue
        for node, gpus in job.placement:
            for index in gpus:
                ids, total = out.get((node, index), ((), 0))
                out[(node, index)] = ((*ids, job.id), total + mib)
    return out


def annotate(doc: dict, jobs: Iterable[Job]) -> dict:
    """`ugro status --json`: each GPU gets `shared_by` (the sharing jobs' ids) and `declared_mib`."""
    held = shares(jobs)
    for node in doc.get("nodes", []):
        for gpu in node.get("gpus", []):
            ids, mib = held.get((node.get("name"), gpu.get("index")), ((), 0))
            gpu["shared_by"], gpu["declared_mib"] = list(ids), mib
    return doc


def card_lines(jobs: Sequence[Job], node: str, gpus: Sequence[GpuSample]) -> dict[int, str]:
    """The Nodes view's line under each shared card of `node`: who holds what there, declared and used."""
    out = {}
    for gpu in gpus:
        sharers = sharers_of(jobs, node, gpu.index)
        room = card_room(gpu, sharers, 0) if sharers else None
        if room is not None:
            who = [f"job {h.job} {h.mib / 1024:.1f}/{h.declared / 1024:.1f}G" if h.job is not None
                   else f"{h.what} {h.mib / 1024:.1f}G" for h in room.holders]
            out[gpu.index] = f"shared: {' · '.join(who)} · {room.room_mib / 1024:.1f}G free"
    return out


Card = tuple[str, int, int]  # (node, GPU index, total MiB)


def too_big(spec: JobSpec, cards: Sequence[Card], headroom_mib: int) -> str | None:
    """Why a job's declared memory fits no card of the cluster, naming the largest; None when one holds it (or no
    card is known yet: the dispatcher says so once telemetry has them)."""
    need = declared_mib(spec)
    if not need or not cards:
        return None
    node, index, total = max(cards, key=lambda c: (c[2], c[0]))
    if need + headroom_mib <= total:
        return None
    ranks = ranks_per_gpu(spec)
    each = f" ({ranks} ranks per GPU)" if ranks > 1 else ""
    return (f"--gpu-mem {spec.gpu_mem_gb:g}: {gb(need)}{each} is more than any card holds; the largest is "
            f"{node}:{index} with {gb(total)}, {gb(headroom_mib)} of it kept free")


def cards_of(doc: dict) -> list[Card]:
    """The cards in a cluster state's JSON (the daemon's `GET /api/v1/cluster`)."""
    out = []
    for node in doc.get("nodes", []) if isinstance(doc, dict) else []:
        for gpu in node.get("gpus", []) if isinstance(node, dict) else []:
            total = gpu.get("memory_total_mib") if isinstance(gpu, dict) else None
            if isinstance(total, int) and isinstance(node.get("name"), str) and isinstance(gpu.get("index"), int):
                out.append((node["name"], gpu["index"], total))
    return out
