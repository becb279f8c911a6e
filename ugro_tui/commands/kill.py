"""`ugro kill NODE PID [--signal S]`: signal a process that telemetry lists on one of the node's GPUs."""

from __future__ import annotations

import sys
from argparse import Namespace

from ugro_tui.config import Cluster
from ugro_tui.core.daemon.client import require
from ugro_tui.core.signals import parse_pid, parse_signal
from ugro_tui.errors import UsageError


def run(args: Namespace, cluster: Cluster) -> int:
    signal = parse_signal(args.signal)
    pid = parse_pid(args.pid)
    if args.node not in {n.name for n in cluster.nodes}:
        known = ", ".join(n.name for n in cluster.nodes)
        raise UsageError(f"ugro kill: no node {args.node!r} in {cluster.source} (nodes: {known})")
    daemon = require(cluster, "kill")  # its telemetry says which process is where, its connection sends it
    answer = daemon.call("POST", "daemon/signal", {"node": args.node, "pid": pid, "signal": signal}, timeout=120)
    print(answer["message"], file=sys.stdout if answer["ok"] else sys.stderr)
    return 0 if answer["ok"] else 1
