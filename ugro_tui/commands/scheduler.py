"""`ugro scheduler [--until-idle]`, for scripts: the daemon in the foreground, or a dispatcher that runs until
nothing is left to start or follow (itself, or waiting on the daemon that runs)."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from argparse import Namespace
from pathlib import Path

from ugro_tui.config import Cluster, load_cluster
from ugro_tui.core.daemon.client import Client, NoDaemon
from ugro_tui.core.daemon.watchers import file_stamp
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.pool import Pool
from ugro_tui.core.runtime import Runtime
from ugro_tui.core.telemetry.monitor import Monitor
from ugro_tui.errors import ConfigError, UgroError


class DaemonRuns(UgroError):
    exit_code = 2


async def _run(cluster: Cluster, until_idle: bool, path: Path | None) -> int:
    """Dispatch until idle (or for ever). When cluster.toml changes, the node list is read again and telemetry,
    connections and dispatching go on with it (a bad edit is reported and the old list kept)."""
    lock = None
    while True:
        seen = file_stamp(path)
        async with Pool(cluster) as pool, Monitor(cluster, pool=pool) as monitor:
            runtime = Runtime(cluster, JobStore(), monitor.state, pool, "scheduler")
            if lock is not None:
                runtime.lock, runtime.mine = lock, True
            elif not runtime.acquire():
                raise UgroError(f"another dispatcher runs already ({runtime.lock.holder() or 'unknown'}); only one may")
            lock = runtime.lock
            try:
                await monitor.wait_settled(cluster.connect_timeout + 3 * cluster.poll_interval)
                await runtime.run(cluster.poll_interval, until_idle=until_idle,
                                  stop=lambda seen=seen: file_stamp(path) != seen)
            except BaseException:
                runtime.release()
                raise
        if file_stamp(path) == seen:  # idle: done
            lock.release()
            return 0
        try:
            cluster = load_cluster(path)
        except ConfigError as exc:
            print(f"ugro scheduler: {exc}; keeping the node list it had", file=sys.stderr)
        else:
            print(f"ugro scheduler: {path} changed; nodes now {', '.join(n.name for n in cluster.nodes)}",
                  file=sys.stderr)


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
    if args.until_idle:
        if running is not None:
            return _wait_on_daemon(client)
        return asyncio.run(_run(cluster, args.until_idle, path))
    if running is not None:
        raise DaemonRuns(f"a ugro daemon runs already (pid {running['pid']}) and dispatches; only one may")
    from ugro_tui.core.daemon.service import run_foreground

    return run_foreground(cluster, path, level=logging.WARNING)
