"""`ugro daemon start|stop|status|restart|run`: the one process per master that owns the runtime."""

from __future__ import annotations

import json
import time
from argparse import Namespace
from pathlib import Path

from ugro_tui.config import Cluster
from ugro_tui.core.daemon import where
from ugro_tui.core.daemon.client import Client, NoDaemon, running, spawn, version_note, wait_until_up
from ugro_tui.errors import UgroError


def _config(cluster: Cluster) -> Path | None:
    return Path(cluster.source).resolve() if cluster.source and Path(cluster.source).is_file() else None


def run(args: Namespace, cluster: Cluster) -> int:
    verb = args.daemon_verb
    if verb == "run":
        from ugro_tui.core.daemon.service import run_foreground

        return run_foreground(cluster, _config(cluster))
    if verb == "status":
        return status(args)
    if verb == "stop":
        return stop()
    if verb == "restart":
        stop()
    return start(cluster)


def start(cluster: Cluster) -> int:
    where.private_folder()
    client = Client()
    try:
        doc = client.status()
    except NoDaemon:
        doc = wait_until_up(spawn(_config(cluster))).status()
        print(f"ugro daemon pid {doc['pid']} started; socket {doc['socket']}, log {where.log_path()}")
        return 0
    print(f"ugro daemon pid {doc['pid']} runs already; socket {doc['socket']}")
    note = version_note(doc)
    if note:
        print(note)
    return 0


def stop(timeout: float = 60.0, quiet: bool = False) -> int:
    """Ask the daemon to stop and wait until it has gone; its jobs keep running on their nodes."""
    client = Client()
    try:
        doc = client.call("POST", "daemon/stop")
    except NoDaemon:
        if not quiet:
            print("no ugro daemon runs")
        return 0
    pid = int(doc["pid"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(pid):
            if not quiet:
                print(f"ugro daemon pid {pid} stopped (running jobs go on; the next daemon follows them)")
            return 0
        time.sleep(0.05)
    raise UgroError(f"the daemon pid {pid} did not stop within {timeout:.0f} s")


def status(args: Namespace) -> int:
    try:
        doc = Client().status()
    except NoDaemon as exc:
        if args.json:
            print(json.dumps({"running": False, "socket": str(where.socket_path())}))
        else:
            print(f"no ugro daemon runs ({exc})")
        return 3
    if args.json:
        print(json.dumps({"running": True, **doc}, indent=2))
        return 0
    print(f"ugro daemon pid {doc['pid']}, version {doc['version']}, up {doc['uptime_s']:.0f} s")
    print(f"  socket {doc['socket']}; config {doc['config'] or '-'}; log {where.log_path()}")
    print(f"  {doc['dispatcher']}; rounds {doc['rounds']}; clients {doc['clients']}")
    print("  connections: " + ", ".join(f"{n} {c}" for n, c in doc["connections"].items()))
    if doc.get("config_problem"):
        print(f"  config: {doc['config_problem']} (the old config is kept)")
    for task in doc["tasks"]:
        error = f"; last error: {task['last_error']}" if task["last_error"] else ""
        print(f"  task {task['name']}: restarts {task['restarts']}{error}")
    note = version_note(doc)
    if note:
        print(note)
    return 0
