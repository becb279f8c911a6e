"""The smoke run: a tiny all-reduce across every node, queued and launched through the normal job path."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from ugro_tui.config import Cluster
from ugro_tui.core.doctor.checks import CLUSTER, Check, Report, Status
from ugro_tui.core.jobs import actions
from ugro_tui.core.jobs.logs import local_copy
from ugro_tui.core.jobs.model import Job, JobSpec, JobState
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.pool import Pool

SCRIPT = (Path(__file__).resolve().parent / "allreduce.py").read_bytes()
SCRIPT_DIR = ".ugro-doctor"
PRIORITY = 1_000_000  # a few seconds' job; let it go before the queue
BLOCKING = ("ssh", "host key", "python", "torch", "torchrun")


def smoke_spec(cluster: Cluster, report: Report) -> JobSpec:
    if cluster.backend == "slurm":  # a real 2-node Slurm job of the shape sbatch --test-only accepted
        shape = next((c.detail for c in report.checks if c.name == "sbatch"), "")
        nnodes = 2 if shape.startswith("--test-only of 2") else 1
        return JobSpec(name="doctor-smoke", command=(f"{SCRIPT_DIR}/allreduce.py",), kind="torchrun", nnodes=nnodes,
                       gpus_per_node=0 if "× 0 GPU" in shape else 1, priority=PRIORITY)
    counts = report.gpu_counts
    every_node_has_gpus = all(counts.get(n.name, 0) > 0 for n in cluster.nodes)
    return JobSpec(name="doctor-smoke", command=(f"{SCRIPT_DIR}/allreduce.py",), kind="torchrun",
                   nnodes=len(cluster.nodes), nproc_per_node=1, gpus_per_node=1 if every_node_has_gpus else 0,
                   nodes=tuple(n.name for n in cluster.nodes), priority=PRIORITY)


async def _install(pool: Pool) -> None:
    await asyncio.gather(*(pool.get(n.name).copy_file(SCRIPT, f"{n.workdir.rstrip('/')}/{SCRIPT_DIR}/allreduce.py")
                           for n in pool.cluster.nodes))


async def _waited(store: JobStore, job_id: int, deadline: float, kick: Callable[[], None]) -> Job:
    """Whoever dispatches runs it (asked at once by `kick`); cancelled when the deadline passes."""
    kick()
    cancelled = False
    while True:
        job = await asyncio.to_thread(store.get, job_id)
        if job.state.finished:
            return job
        if time.time() > deadline and not cancelled:
            await asyncio.to_thread(actions.cancel, store, job_id)
            kick()
            cancelled, deadline = True, time.time() + 15
        elif cancelled and time.time() > deadline:
            return job
        await asyncio.sleep(0.2)


def _result_line(job: Job) -> dict | None:
    for node, _run in job.runs:
        try:
            text = local_copy(job, node).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            _, sep, rest = line.partition("UGRO_SMOKE ")
            if sep:
                try:
                    return json.loads(rest)
                except ValueError:
                    continue
    return None


async def run_smoke(cluster: Cluster, report: Report, *, store: JobStore, pool: Pool, kick: Callable[[], None],
                    timeout: float = 180.0) -> Check:
    """The smoke job's check, run in the daemon: `kick` asks its dispatcher for a round, and the job goes the
    normal way."""
    blocked = sorted({c.node for c in report.checks if c.status is Status.FAIL and c.name in BLOCKING})
    if blocked:
        return Check(CLUSTER, "smoke", Status.FAIL, f"not run: {', '.join(blocked)} failed a check above",
                     "fix those first, then run `ugro doctor --smoke` again")
    await _install(pool)
    [job] = await asyncio.to_thread(store.submit, [smoke_spec(cluster, report)])
    job = await _waited(store, job.id, time.time() + timeout, kick)
    if not job.state.finished:
        return Check(CLUSTER, "smoke", Status.FAIL, f"job {job.id} did not finish in {timeout:.0f}s "
                     f"({job.state}: {job.reason or 'no reason given'})",
                     "is another job holding the GPUs? see `ugro queue`")
    result = _result_line(job)
    if job.state is not JobState.SUCCEEDED or result is None or not result.get("correct"):
        why = job.diagnosis or job.reason or "no result line"
        if result is not None and not result.get("correct"):
            why = "the all-reduce sum was wrong"
        return Check(CLUSTER, "smoke", Status.FAIL, f"job {job.id} {job.state}: {why}",
                     f"see `ugro logs {job.id}`")
    offsets = report.clock_offsets
    first = job.placement[0][0]
    ready_local = result["ready"] - offsets.get(first, 0.0)
    rendezvous_s = max(0.0, ready_local - (job.started_at or ready_local))
    return Check(CLUSTER, "smoke", Status.OK,
                 f"job {job.id}: {result['world']} ranks ({result['backend']}), rendezvous in {rendezvous_s:.1f}s, "
                 f"all-reduce {result['mib']} MiB at {result['busbw_gbps']:.2f} GB/s bus bandwidth")
