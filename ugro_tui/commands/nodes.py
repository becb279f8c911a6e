"""`ugro nodes [--check] [--accept-new] [--json]`."""

from __future__ import annotations

import asyncio
import json
import sys
from argparse import Namespace
from pathlib import Path

from ugro_tui.commands.table import DASH, render
from ugro_tui.config import Cluster, parse_node


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


def edit(args: Namespace, path: Path, cluster: Cluster) -> int:
    """`ugro nodes add NAME --host H ...` / `ugro nodes remove NAME`: cluster.toml edited in place."""
    from ugro_tui import config_edit

    if args.nodes_verb == "remove":
        from ugro_tui.core.jobs.store import JobStore

        config_edit.remove_node(path, args.name)
        print(f"removed {args.name} from {path}")
        for job in JobStore().active():
            if job.state.active and any(n == args.name for n, _ in job.placement):
                print(f"ugro: warning: job {job.id} ({job.spec.name}) runs on {args.name}; the dispatcher fails it "
                      "when it reads the new node list (cancel it first to stop its processes there)", file=sys.stderr)
        return 0
    values = {"name": args.name, "host": args.host, "port": args.port, "user": args.user,
              "identity_file": args.identity_file, "python": args.python, "workdir": args.workdir,
              "labels": [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels else None,
              "socket_ifname": args.socket_ifname}
    # Validate the node as it would be saved before connecting anywhere.
    node = parse_node(str(path), len(cluster.nodes), {k: v for k, v in values.items() if v is not None})
    if args.check:
        from ugro_tui.core.check import check_node

        result = asyncio.run(check_node(node, cluster))
        if not result.ok:
            print(f"{node.name} ({node.address}): {result.result}: {result.detail}"
                  + (f" (fingerprint {result.fingerprint})" if result.fingerprint else "")
                  + "; not added", file=sys.stderr)
            return 1
        print(f"{node.name}: connected in {result.seconds:.2f}s")
    config_edit.add_node(path, values)
    print(f"added {node.name} ({node.address}) to {path}")
    return 0


def _node_json(n) -> dict:
    return {"name": n.name, "host": n.host, "port": n.port, "user": n.user, "labels": list(n.labels),
            "python": n.python, "workdir": n.workdir, "socket_ifname": n.socket_ifname,
            "transport": "local" if n.is_local else "ssh"}
