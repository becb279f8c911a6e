"""The daemon's ledger task: every new sample of every node goes into the ledger, each GPU to the job that holds
it (the store's placements); the ledger is saved every SAVE_EVERY seconds, when a job ends and when the daemon
stops."""

from __future__ import annotations

import asyncio
import getpass
import secrets
import time
from typing import Any

from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.ledger.book import Book
from ugro_tui.core.telemetry.model import NodeState

SAVE_EVERY = 15.0  # `ugro usage` and `ugro show` read the saved files: a running job's figures lag at most this
JOBS_EVERY = 2.0  # seconds between two reads of the store's placements


def held_gpus(store: JobStore) -> dict[tuple[str, int], int]:
    return {(node, gpu): job.id for job in store.active() if job.state.active
            for node, gpus in job.placement for gpu in gpus}


def report_recovery(book: Book) -> None:
    """A ledger file found damaged (and set aside) when the daemon started: an event, as a job store recovery is
    said, so the loss is never silent (`ugro events`, the app's toast, notify_command; the events watcher pushes
    it to clients)."""
    from ugro_tui.core.alerts.journal import Journal
    from ugro_tui.core.alerts.rules import Event

    for line in book.recovered:
        event = Event(f"ledger-recovered-{secrets.token_hex(6)}", "ledger-recovered", time.time(), line)
        Journal().add([event])
    book.recovered.clear()


async def keep_ledger(daemon: Any, book: Book, every: float = 1.0) -> None:
    if book.recovered:
        await asyncio.to_thread(report_recovery, book)
    seen: dict[str, float] = {}
    held: dict[tuple[str, int], int] = {}
    read_at = saved_at = 0.0
    me = getpass.getuser()
    try:
        while True:
            now = time.monotonic()
            if now - read_at >= JOBS_EVERY:
                held, read_at = await asyncio.to_thread(held_gpus, daemon.store), now
                running = set(held.values())
                for job_id, row in book.jobs.items():
                    if row["ended"] is None and job_id not in running:
                        book.ended(job_id, time.time())
                        saved_at = 0.0  # a job that ended: its figures are final, saved at once
            logins = {n.name: n.user or me for n in daemon.cluster.nodes}
            holder = held.get
            for name, status in list(daemon.state.nodes.items()):
                at = status.received_at
                if at is None or at == seen.get(name) or status.state is not NodeState.ONLINE:
                    continue
                seen[name] = at
                book.observe(name, at, status.gpus, lambda n, g, holder=holder: holder((n, g)), logins.get(name, me),
                             status.host.cpu_pct if status.host is not None else None)
            if now - saved_at >= SAVE_EVERY:
                book.prune(time.time())
                await asyncio.to_thread(book.save)
                saved_at = now
            await asyncio.sleep(every)
    finally:
        book.save()
