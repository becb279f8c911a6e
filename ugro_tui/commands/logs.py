"""`ugro logs JOB [--rank N] [--node NAME] [-f]`: a job's output, while it runs and after it ends."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from argparse import Namespace
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ugro_tui.commands.jobs import parse_ids
from ugro_tui.config import Cluster
from ugro_tui.core.daemon.client import Client, connect, require
from ugro_tui.core.jobs.logs import (
    CopyReader,
    LineCarry,
    Source,
    classify_console_line,
    local_dir,
    read_via,
    sync_node,
)
from ugro_tui.core.jobs.model import Job
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.errors import UgroError, UsageError

if TYPE_CHECKING:
    from ugro_tui.core.pool import Pool


def _render(source: Source, line: bytes, args: Namespace) -> bytes | None:
    """A line as printed: `--rank R` gives the rank's bytes as written; otherwise each line says whose it is."""
    rank = source.rank
    if rank is None:
        kind, rank, body = classify_console_line(line)
        if kind == "tee":
            return None  # a copy of a rank's output, which its own file holds exactly
        if kind == "rank":
            line = body
    if args.rank is not None:
        return line if rank == args.rank else None
    if args.node is not None and source.node != args.node:
        return None
    return b"[rank%d]:%s" % (rank, line) if rank is not None else source.node.encode() + b"| " + line


READ_AT_ONCE = 1 << 20  # bytes of one log file read per step


async def follow_logs(store: JobStore, job_id: int, pool: Pool | None, *, rank: int | None = None,
                      node: str | None = None, follow: bool = False) -> AsyncIterator[bytes]:
    """A job's output as `ugro logs` prints it, chunk by chunk; with `follow`, until the job ends (the web API
    streams the same). Without a pool, from the log copies alone: the daemon keeps them current."""
    args = Namespace(rank=rank, node=node)
    job = await asyncio.to_thread(store.get, job_id)
    if not job.runs:
        raise UgroError(f"job {job_id} is {job.state}: it has not run yet, so it has no logs")
    nodes = [n for n, _ in job.runs]
    if node is not None and node not in nodes:
        raise UsageError(f"ugro logs: job {job_id} did not run on {node!r} (it ran on {', '.join(nodes)})")
    lines = LineCarry()
    reader = CopyReader(job, limit=READ_AT_ONCE)  # a long log is read and sent in pieces, never whole
    while True:
        for name, run in job.runs:
            via = read_via(pool.cluster, job, name) if pool is not None else None
            if pool is not None and via in pool and run.run_dir:
                try:
                    await sync_node(pool.get(via), job, name, run.run_dir)
                except Exception as exc:  # an unreachable node: say so, keep the rest going
                    yield f"{name}| (cannot read its log now: {exc})\n".encode()
            # What the copies have beyond what we printed, whoever fetched it (a scheduler follows them too).
            while pieces := await asyncio.to_thread(reader.read_new, name):
                out: list[bytes] = []
                for source, chunk in pieces:
                    for line in lines.feed(source, chunk):
                        text = _render(source, line, args)
                        if text is not None:
                            out.append(text)
                if out:
                    yield b"".join(out)
        if not follow:
            break
        job = await asyncio.to_thread(store.get, job_id)
        if job.state.finished:
            follow = False  # one last sync, then stop
            continue
        await asyncio.sleep(0.5)
    for source, rest in lines.drain():  # a log that ended mid-line: its last bytes still count
        text = _render(source, rest, args)
        if text is not None:
            yield text if rank is not None else text + b"\n"


async def _run(args: Namespace, cluster: Cluster) -> int:
    store = JobStore()
    [job_id] = parse_ids([args.job])
    job = await asyncio.to_thread(store.get, job_id)
    wanted = getattr(args, "attempt", None)
    if (wanted is not None and wanted != job.attempt) or (not job.runs and job.attempt > 0):
        return _print_attempts(job, args, wanted)
    out = sys.stdout.buffer
    # The daemon copies the logs as they grow: read its copies and open no connection. `-f` needs it (started
    # when none answers); without it, the copies are as last fetched, which matters only while the job runs.
    if args.follow:
        await asyncio.to_thread(require, cluster, "logs -f")
        job = await _started(store, job)
    elif not job.state.finished and await asyncio.to_thread(_running, cluster) is None:
        print(f"ugro logs: no ugro daemon runs, so job {job_id}'s log copies are as last fetched "
              "(`ugro daemon start` keeps them current)", file=sys.stderr)
    async for chunk in follow_logs(store, job_id, None, rank=args.rank, node=args.node, follow=args.follow):
        out.write(chunk)
        out.flush()
    return 0


def _running(cluster: Cluster) -> Client | None:
    try:
        return connect(cluster, start=False)
    except UgroError:
        return None


async def _started(store: JobStore, job: Job) -> Job:
    """`-f` on a job that has not run yet waits until it does (or ends without running)."""
    if job.runs or job.state.finished:
        return job
    print(f"ugro logs: job {job.id} is {job.state}; waiting for it to start", file=sys.stderr, flush=True)
    while not job.runs and not job.state.finished:
        await asyncio.sleep(0.5)
        job = await asyncio.to_thread(store.get, job.id)
    return job


def _print_attempts(job: Job, args: Namespace, wanted: int | str | None) -> int:
    """Earlier attempts from their local copies (`--attempt N`, or `all` with a line between attempts)."""
    last = job.attempt
    attempts = list(range(1, last + 1)) if wanted == "all" else [last if wanted is None else int(wanted)]
    if any(a < 1 or a > last for a in attempts):
        raise UsageError(f"ugro logs: job {job.id} has attempts 1-{last}" if last else
                         f"ugro logs: job {job.id} has not run yet, so it has no logs")
    out = sys.stdout.buffer
    for attempt in attempts:
        at = dataclasses.replace(job, attempt=attempt)
        if wanted == "all":
            out.write(f"=== job {job.id} attempt {attempt} ===\n".encode())
        lines, reader = LineCarry(), CopyReader(at)
        for node in sorted(p.stem for p in local_dir(at).glob("*.log")):
            if args.node is not None and node != args.node:
                continue
            for source, chunk in reader.read_new(node):
                for line in lines.feed(source, chunk):
                    text = _render(source, line, args)
                    if text is not None:
                        out.write(text)
        for source, rest in lines.drain():
            text = _render(source, rest, args)
            if text is not None:
                out.write(text if args.rank is not None else text + b"\n")
    out.flush()
    return 0


def run(args: Namespace, cluster: Cluster) -> int:
    try:
        return asyncio.run(_run(args, cluster))
    except KeyboardInterrupt:
        return 130


