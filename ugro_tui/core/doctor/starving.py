"""A data loader starving its GPUs: during a run, the node's CPU saturated while the job's GPUs there idle.

Judged on telemetry's recent history (the app's, or the samples `ugro doctor` gathers while it runs), so one busy
second is not a verdict."""

from __future__ import annotations

from collections.abc import Iterable
from statistics import fmean
from typing import Any

from ugro_tui.core.doctor.checks import Check, Status
from ugro_tui.core.telemetry.model import ClusterState, NodeState

CPU_SATURATED = 90.0   # % of all the node's cores
GPU_STARVED = 40.0     # % mean utilization of the job's GPUs on that node
WINDOW = 10            # the last samples looked at
CHECK = "cpu"


def _recent(values: Iterable[float | None]) -> list[float]:
    return [v for v in list(values)[-WINDOW:] if v is not None]


def starved(cpu: list[float], util: list[float]) -> tuple[float, float] | None:
    """(CPU mean, GPU mean) when the CPU was saturated while the GPUs idled, else None: the one rule, for the
    doctor's live look and a job's history."""
    if not cpu or not util:
        return None
    cpu_mean, util_mean = fmean(cpu), fmean(util)
    return (cpu_mean, util_mean) if cpu_mean >= CPU_SATURATED and util_mean < GPU_STARVED else None


HINT = "more DataLoader workers (num_workers), pin_memory, faster or local storage, or less CPU work per batch"


def starving_checks(state: ClusterState, jobs: Iterable[Any]) -> list[Check]:
    """A warning per node where a running job's GPUs idle while the CPU is saturated; nothing when no job runs."""
    out = []
    for job in jobs:
        if str(job.state) != "running":
            continue
        for node_name, gpus in job.placement:
            node = state.nodes.get(node_name)
            if node is None or node.state is not NodeState.ONLINE or node.host is None:
                continue
            found = starved(_recent(node.cpu_history), [u for g in gpus for u in _recent(node.history.get(g, ()))])
            if found is not None:
                cpu_mean, util_mean = found
                out.append(Check(node_name, CHECK, Status.WARN,
                                 f"CPU {cpu_mean:.0f}% of {node.host.cores or '?'} cores while job {job.id} "
                                 f"({job.spec.name})'s GPUs here average {util_mean:.0f}%",
                                 f"the GPUs wait for data: {HINT}"))
    return out
