"""The dispatcher's side of events: each round, look at jobs, nodes and GPUs, write new events, deliver them."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ugro_tui import paths
from ugro_tui.config import AlertsConfig
from ugro_tui.core.alerts.journal import Journal
from ugro_tui.core.alerts.rules import Event, Rules, job_events
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.telemetry.model import ClusterState

NOTIFY_TIMEOUT = 30.0


def notify_env(event: Event) -> dict[str, str]:
    """The event for the notify command, in its environment only: values never pass through a shell."""
    return {"UGRO_EVENT": event.kind, "UGRO_EVENT_ID": event.id, "UGRO_JOB_ID": "" if event.job_id is None else
            str(event.job_id), "UGRO_JOB_NAME": event.job_name or "", "UGRO_NODE": event.node or "",
            "UGRO_MESSAGE": event.message}


def run_notify(command: str, event: Event, log: Path) -> bool:
    """Run the notify command once for the event (argv from shlex, no shell); a failure is logged, never raised."""
    try:
        done = subprocess.run(shlex.split(command), env={**os.environ, **notify_env(event)}, capture_output=True,
                              timeout=NOTIFY_TIMEOUT, stdin=subprocess.DEVNULL)
        problem = None if done.returncode == 0 else (
            f"exit {done.returncode}: {done.stderr.decode('utf-8', 'replace').strip()[-300:]}")
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        problem = str(exc) or type(exc).__name__
    if problem is not None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} notify_command for {event.id}: {problem}\n"
        with open(log, "a", encoding="utf-8") as f:
            f.write(line)
    return problem is None


class AlertService:
    def __init__(self, config: AlertsConfig, store: JobStore, state: ClusterState, *,
                 clock: Callable[[], float] = time.time, root: Path | None = None) -> None:
        self.config = config
        self.store = store
        self.state = state
        self.clock = clock
        self.root = root or paths.state_dir()
        self.rules = Rules(config.gpu_hot_c, config.idle_minutes)
        self.journal: Journal | None = None
        self._delivering: asyncio.Task[None] | None = None

    async def observe(self) -> list[Event]:
        """One round; returns the events written (the store is read in a thread)."""
        now = self.clock()
        telemetry = self.rules.nodes(self.state, now)
        new = await asyncio.to_thread(self._observe_jobs, now, telemetry)
        if self._delivering is None or self._delivering.done():
            self._delivering = asyncio.create_task(asyncio.to_thread(self._deliver), name="alerts:deliver")
        return new

    def _observe_jobs(self, now: float, events: list[Event]) -> list[Event]:
        if self.journal is None:
            self.journal = Journal(self.root)
        active = self.store.active()
        held = [(j.id, node, index, j.spec.name) for j in active if str(j.state) == "running"
                for node, gpus in j.placement for index in gpus]
        events = events + self.rules.gpus(self.state, held, now)
        watching = self.journal.watching
        ids = {j.id for j in active}
        for job in active:
            events += job_events(job, now)
        for job_id in sorted((watching or set()) - ids):
            try:
                events += job_events(self.store.get(job_id), now)
            except Exception:  # noqa: S112 (a job gone from the store has nothing more to say)
                continue
        new = self.journal.add(sorted(events, key=lambda e: e.t))
        self.journal.watch(ids)
        self.journal.save_state()
        return new

    def _deliver(self) -> None:
        journal = self.journal
        if journal is None:
            return
        for event in journal.undelivered():
            if self.config.notify_command:
                run_notify(self.config.notify_command, event, self.root / "notify.log")
            journal.delivered(event)

    async def drain(self) -> None:
        if self._delivering is not None:
            await asyncio.gather(self._delivering, return_exceptions=True)
