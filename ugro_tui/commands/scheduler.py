"""`ugro scheduler [--until-idle]`, for scripts: the daemon in the foreground; with `--until-idle`, until nothing
is left to start or follow (itself, or waiting on the daemon that runs)."""

from __future__ import annotations

import logging
import time
from argparse import Namespace
from pathlib import Path

from ugro_tui.config import Cluster
from ugro_tui.core.daemon.client import Client, NoDaemon, wait_until_up
from ugro_tui.errors import UgroError


class DaemonRuns(UgroError):
    exit_code = 2


def _wait_on_daemon(client: Client) -> int:
    """Until the daemon has run two whole rounds after this call and the last left nothing to start or follow."""
    client.call("POST", "daemon/kick")
    first = client.status()["rounds"]
    while True:
        doc = client.status()
        if doc["rounds"] >= first + 2 and doc["left"] == 0:
            return 0
        time.sleep(0.1)


def run(args: Namespace, cluster: Cluster) -> int:
    path = Path(cluster.source).resolve() if cluster.source and Path(cluster.source).is_file() else None
    client = Client()
    try:
        running = client.status()
    except NoDaemon:
        running = None
    if args.until_idle and running is not None:
        return _wait_on_daemon(client)
    if running is not None:
        raise DaemonRuns(f"a ugro daemon runs already (pid {running['pid']}) and dispatches; only one may")
    from ugro_tui.core.daemon.service import AlreadyRunning, run_foreground

    try:  # the daemon itself, in the foreground; with --until-idle it stops once nothing is left to do
        return run_foreground(cluster, path, level=logging.WARNING, until_idle=args.until_idle)
    except AlreadyRunning as exc:  # one started between our look and our claim: wait on it instead
        if args.until_idle:
            return _wait_on_daemon(wait_until_up(None))
        raise DaemonRuns(str(exc)) from None
