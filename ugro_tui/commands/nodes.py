"""`ugro nodes [--check] [--accept-new] [--json]`."""

from __future__ import annotations

import asyncio
import json
from argparse import Namespace

from ugro_tui.commands.table import DASH, render
from ugro_tui.config import Cluster


def run(args: Namespace, cluster: Cluster) -> int:
    if not args.check:
        if args.json:
            print(json.dumps({"nodes": [_node_json(n) for n in cluster.nodes]}, indent=2))
            return 0
        rows = [(n.name, n.address, "local" if n.is_local else "ssh", ",".join(n.labels) or DASH, n.python,
                 n.workdir) for n in cluster.nodes]
        print(render(("NODE", "ADDRESS", "VIA", "LABELS", "PYTHON", "WORKDIR"), rows))
        return 0
    from ugro_tui.core.check import check_cluster

    results = asyncio.run(check_cluster(cluster, accept_new=args.accept_new))
    if args.json:
        print(json.dumps({"nodes": [{"name": r.node, "address": r.address, "result": r.result,
                                     "seconds": round(r.seconds, 3), "detail": r.detail,
                                     "fingerprint": r.fingerprint} for r in results]}, indent=2))
    else:
        rows = [(r.node, r.address, r.result, f"{r.seconds:.2f}s", r.detail) for r in results]
        print(render(("NODE", "ADDRESS", "RESULT", "TIME", "DETAIL"), rows))
    return 0 if all(r.ok for r in results) else 1


def _node_json(n) -> dict:
    return {"name": n.name, "host": n.host, "port": n.port, "user": n.user, "labels": list(n.labels),
            "python": n.python, "workdir": n.workdir, "socket_ifname": n.socket_ifname,
            "transport": "local" if n.is_local else "ssh"}
