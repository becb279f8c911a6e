"""`ugro kill NODE PID [--signal S]`: signal a process that telemetry lists on one of the node's GPUs."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from argparse import Namespace

from ugro_tui.config import Cluster
from ugro_tui.core.daemon.client import connect
from ugro_tui.core.signals import find_target, owning_job, parse_pid, parse_signal, send_signal
from ugro_tui.core.telemetry.model import NodeState
from ugro_tui.core.telemetry.monitor import Monitor
from ugro_tui.errors import UgroError, UsageError


async def _kill(cluster: Cluster, name: str, pid: int, signal: str) -> int:
    node = cluster.node(name)
    one = dataclasses.replace(cluster, nodes=(node,))
    async with Monitor(one) as monitor:
        await monitor.wait_settled(cluster.connect_timeout + 3 * cluster.poll_interval)
        status = monitor.state.nodes[name]
        if status.state is not NodeState.ONLINE:
            raise UgroError(f"{name} is {status.state}: {status.error or 'no sample yet'}; nothing was sent")
        target = find_target(status, pid)
        job = owning_job(target)
        if job is not None:
            raise UsageError(f"pid {pid} on {name} is a rank of ugro job {job}; stop the job with "
                             f"`ugro cancel {job}` (a job's ranks are never signalled one by one)")
        result = await send_signal(monitor.transports[name], target, signal, node.user)
    print(result.message, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def run(args: Namespace, cluster: Cluster) -> int:
    signal = parse_signal(args.signal)
    pid = parse_pid(args.pid)
    if args.node not in {n.name for n in cluster.nodes}:
        known = ", ".join(n.name for n in cluster.nodes)
        raise UsageError(f"ugro kill: no node {args.node!r} in {cluster.source} (nodes: {known})")
    daemon = connect(cluster)  # the daemon's telemetry says which process is where, its connection sends it
    if daemon is None:
        return asyncio.run(_kill(cluster, args.node, pid, signal))
    answer = daemon.call("POST", "daemon/signal", {"node": args.node, "pid": pid, "signal": signal}, timeout=120)
    print(answer["message"], file=sys.stdout if answer["ok"] else sys.stderr)
    return 0 if answer["ok"] else 1
