"""`ugro kill NODE PID [--signal S]`: signal a process that telemetry lists on one of the node's GPUs."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from argparse import Namespace

from ugro_tui.config import Cluster
from ugro_tui.core.daemon.actions import signal_process
from ugro_tui.core.daemon.client import connect
from ugro_tui.core.pool import Pool
from ugro_tui.core.signals import parse_pid, parse_signal
from ugro_tui.core.telemetry.monitor import Monitor
from ugro_tui.errors import UsageError


async def _kill(cluster: Cluster, name: str, pid: int, signal: str) -> int:
    """No daemon: its rule (`signal_process`) over telemetry and a connection of our own to that node."""
    one = dataclasses.replace(cluster, nodes=(cluster.node(name),))
    async with Pool(one) as pool, Monitor(one, pool=pool) as monitor:
        await monitor.wait_settled(cluster.connect_timeout + 3 * cluster.poll_interval)
        answer = await signal_process(one, monitor.state, pool, {"node": name, "pid": pid, "signal": signal})
    print(answer["message"], file=sys.stdout if answer["ok"] else sys.stderr)
    return 0 if answer["ok"] else 1


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
