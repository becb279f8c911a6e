"""The daemon's small watchers: what changed in the store and the event journal (pushed to clients), and when
the daemon has nothing left to do (it exits)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ugro_tui.config import Cluster
from ugro_tui.core.alerts.journal import journal_path, read_events
from ugro_tui.core.jobs.store import JobStore

log = logging.getLogger("ugro.daemon")
Publish = Callable[[dict[str, Any]], None]


def file_stamp(path: Path | None) -> tuple[int, int] | None:
    """A file's (mtime, size), None when absent: what a config watcher compares."""
    try:
        st = path.stat() if path else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if st else None


async def watch_jobs(store: JobStore, publish: Publish, every: float = 0.25) -> None:
    """A `jobs` message whenever the store changed (whoever wrote it: the dispatcher, a command, the app)."""
    seen = await asyncio.to_thread(store.stamp)
    while True:
        await asyncio.sleep(every)
        now = await asyncio.to_thread(store.stamp)
        if now != seen:
            publish({"kind": "jobs"})
        seen = now


async def watch_events(publish: Publish, every: float = 0.5) -> None:
    """Each new event of the journal, as it is written."""
    _, offset = await asyncio.to_thread(read_events, journal_path(), 0)
    while True:
        await asyncio.sleep(every)
        new, offset = await asyncio.to_thread(read_events, journal_path(), offset)
        for event in new:
            publish({"kind": "event", "event": event.to_json()})


class Idle(Protocol):
    cluster: Cluster
    store: JobStore
    subscribers: set
    requests: int
    last_activity: float

    def stop(self) -> None: ...


def idle_limit(cluster: Cluster) -> float:
    """[daemon] idle_exit, or UGRO_IDLE_EXIT (the systemd unit sets 0: never)."""
    value = os.environ.get("UGRO_IDLE_EXIT")
    try:
        return max(0.0, float(value)) if value is not None else cluster.daemon.idle_exit
    except ValueError:
        return cluster.daemon.idle_exit


async def watch_idle(daemon: Idle) -> None:
    """Stop the daemon after its idle limit with no client, no unfinished job and no service (0: never)."""
    while True:
        await asyncio.sleep(1.0)
        limit = idle_limit(daemon.cluster)
        if not limit or daemon.subscribers or daemon.requests or await asyncio.to_thread(daemon.store.active):
            daemon.last_activity = time.monotonic()
            continue
        if time.monotonic() - daemon.last_activity >= limit:
            log.info("idle for %.0f s with no client and no job: exiting", limit)
            daemon.stop()
            return


async def watch_until_idle(daemon: Any) -> None:
    """`ugro scheduler --until-idle`: stop after a round that left nothing to start or follow."""
    while not (daemon.rounds and daemon.left == 0):
        await asyncio.sleep(0.1)
    daemon.stop()
