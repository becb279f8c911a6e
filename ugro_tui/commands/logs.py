"""`ugro logs JOB [--rank N] [--node NAME] [-f]`: a job's output, while it runs and after it ends."""

from __future__ import annotations

import asyncio
import sys
from argparse import Namespace

from ugro_tui.commands.jobs import parse_ids
from ugro_tui.config import Cluster
from ugro_tui.core.jobs.logs import CopyReader, RankDemux, sync_node
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.transport import make_transport
from ugro_tui.errors import UgroError, UsageError


def _wanted(key: str, args: Namespace, node: str) -> bool:
    if args.rank is not None:
        return key == f"rank{args.rank}"
    if args.node is not None:
        return node == args.node
    return True


async def _run(args: Namespace, cluster: Cluster) -> int:
    store = JobStore()
    [job_id] = parse_ids([args.job])
    job = store.get(job_id)
    if not job.runs:
        raise UgroError(f"job {job_id} is {job.state}: it has not run yet, so it has no logs")
    nodes = [n for n, _ in job.runs]
    if args.node is not None and args.node not in nodes:
        raise UsageError(f"ugro logs: job {job_id} did not run on {args.node!r} (it ran on {', '.join(nodes)})")
    transports = {n: make_transport(cluster.node(n), cluster) for n in nodes if n in {x.name for x in cluster.nodes}}
    demux = RankDemux(max_lines=1)  # we print as we go: nothing needs to be kept
    out = sys.stdout

    def emit(node: str, text: str) -> None:
        for key, body in demux.feed(node, text):
            if _wanted(key, args, node):
                line = body if args.rank is not None else (f"[{key}]:{body}" if key.startswith("rank") else
                                                             f"{node}| {body}")
                out.write(line + "\n")
        out.flush()

    reader = CopyReader(job)
    try:
        while True:
            for node, run in job.runs:
                if node in transports and run.run_dir:
                    try:
                        await sync_node(transports[node], job, node, run.run_dir)
                    except Exception as exc:  # an unreachable node: say so, keep the rest going
                        out.write(f"{node}| (cannot read its log now: {exc})\n")
                # What the copy has beyond what we printed, whoever fetched it (a scheduler follows it too).
                emit(node, reader.read_new(node))
            if not args.follow:
                break
            job = store.get(job_id)
            if job.state.finished:
                args.follow = False  # one last sync, then stop
                continue
            await asyncio.sleep(0.5)
    finally:
        await asyncio.gather(*(t.close() for t in transports.values()), return_exceptions=True)
    for node in nodes:
        emit(node, demux.flush(node))
    return 0


def run(args: Namespace, cluster: Cluster) -> int:
    try:
        return asyncio.run(_run(args, cluster))
    except KeyboardInterrupt:
        return 130


