"""One failure path for every task of the daemon: a task that raises is logged with its traceback, becomes a
`daemon-error` event, and starts again after a backoff; no task's failure ends the daemon or another task."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ugro_tui.core.alerts.journal import Journal
from ugro_tui.core.alerts.rules import Event

log = logging.getLogger("ugro.daemon")
BACKOFF = (1.0, 2.0, 5.0, 15.0, 30.0)  # seconds before the nth restart; a task that ran a minute starts over


@dataclass
class TaskRecord:
    name: str
    started: float = 0.0
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "restarts": self.restarts, "last_error": self.last_error,
                "last_error_at": self.last_error_at}


class Supervisor:
    def __init__(self, report: Callable[[str], None] | None = None) -> None:
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.records: dict[str, TaskRecord] = {}
        self.report = report  # besides the journal: e.g. the daemon's subscribers

    def start(self, name: str, body: Callable[[], Awaitable[None]], *, restart: bool = True) -> None:
        """Run `body()` as task `name`; when it raises (or, with restart, ends), run it again after a backoff."""
        self.stop_one(name)
        record = self.records.setdefault(name, TaskRecord(name))
        self.tasks[name] = asyncio.create_task(self._keep(record, body, restart), name=f"daemon:{name}")

    async def _keep(self, record: TaskRecord, body: Callable[[], Awaitable[None]], restart: bool) -> None:
        failures = 0
        while True:
            record.started = time.time()
            try:
                await body()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed(record, exc)
                failures = 0 if time.time() - record.started > 60 else failures + 1
            else:
                if not restart:
                    return
                failures = 0
            record.restarts += 1
            await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])

    def failed(self, record: TaskRecord, exc: BaseException) -> None:
        line = f"{type(exc).__name__}: {exc}"
        record.last_error, record.last_error_at = line, time.time()
        log.error("task %s failed: %s\n%s", record.name, line,
                  "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        message = f"daemon task {record.name} failed: {line}; restarting it"
        try:
            Journal().add([Event(f"daemon-error-{secrets.token_hex(6)}", "daemon-error", time.time(), message)])
        except OSError as err:  # a full disk must not stop the task's restart
            log.error("could not record the event: %s", err)
        if self.report is not None:
            self.report(message)

    def stop_one(self, name: str) -> None:
        task = self.tasks.pop(name, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def to_json(self) -> list[dict]:
        return [r.to_json() for r in self.records.values()]
