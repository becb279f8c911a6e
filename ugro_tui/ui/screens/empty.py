"""The Jobs and Logs views until the queue and the launcher land: a real empty state that says what comes."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Center, Middle
from textual.screen import Screen
from textual.widgets import Footer, Static

from ugro_tui.ui.widgets.health import HealthBar


class _Empty(Screen[None]):
    TITLE = ""
    MESSAGE = ""

    def compose(self) -> ComposeResult:
        yield HealthBar(id="health")
        with Middle(), Center():
            yield Static(self.MESSAGE, classes="empty-state")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(HealthBar).show(self.app.cluster.name, self.app.monitor_state.health(), self.app.dispatch_note)


class LogsScreen(_Empty):
    MESSAGE = "No job logs yet.\n\nPer-rank log panes appear here once ugro launches torchrun jobs."
