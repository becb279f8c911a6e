"""`:events`: the cluster's events, newest first (the same list as `ugro events`)."""

from __future__ import annotations

import asyncio
import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ugro_tui.core.alerts.journal import journal_path, read_events
from ugro_tui.core.alerts.rules import Event
from ugro_tui.ui.workers import ReportsWorkerFailures

DASH = "–"


class EventsScreen(ReportsWorkerFailures, Screen[None]):
    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back", id="events.back")]
    DEFAULT_CSS = """
    EventsScreen > Static { height: 1; background: $panel; padding: 0 1; }
    EventsScreen > DataTable { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self.read_to = 0

    def compose(self) -> ComposeResult:
        yield Static("events: jobs, nodes and GPUs (newest first)", id="events-title")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="events")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.load()
        self.set_interval(1.0, self.load)

    @work(group="events", exclusive=True, exit_on_error=False, description="read the events")
    async def load(self) -> None:
        new, self.read_to = await asyncio.to_thread(read_events, journal_path(), self.read_to)
        if not new and self.events:
            return
        self.events = (self.events + new)[-1000:]
        self.show()

    def show(self) -> None:
        table = self.query_one(DataTable)
        rows = [(time.strftime("%m-%d %H:%M:%S", time.localtime(e.t)), e.kind,
                 DASH if e.job_id is None else str(e.job_id), e.node or DASH, e.message) for e in reversed(self.events)]
        # Widths from the rows, set explicitly: a cleared DataTable keeps the widths of its empty start.
        table.clear(columns=True)
        for i, label in enumerate(("TIME", "EVENT", "JOB", "NODE", "MESSAGE")):
            table.add_column(label, width=max([len(label), *(len(r[i]) for r in rows)]))
        for row, event in zip(rows, reversed(self.events), strict=True):
            table.add_row(row[0], Text(row[1], style="bold red" if event.bad else ""), row[2], Text(row[3]),
                          Text(row[4]))
        count = len(self.events)
        self.query_one("#events-title", Static).update(
            f"events: jobs, nodes and GPUs (newest first) · {count} shown" if count else
            "no events yet: the dispatcher (this app or `ugro scheduler`) writes them as jobs start and end")
