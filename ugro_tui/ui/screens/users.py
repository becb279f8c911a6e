"""`u` in the Nodes view: who uses what across the cluster (GPUs and GPU memory per user, ugro jobs per user)."""

from __future__ import annotations

import getpass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from ugro_tui.core.telemetry.users import by_user, job_users
from ugro_tui.ui.workers import ReportsWorkerFailures


class UsersScreen(ReportsWorkerFailures, ModalScreen[None]):
    BINDINGS = [Binding("escape,q,u", "dismiss", "Close", id="users.close")]
    DEFAULT_CSS = """
    UsersScreen { align: center middle; }
    UsersScreen > Vertical { width: auto; max-width: 95%; height: auto; max-height: 90%; border: round $primary;
                             background: $surface; padding: 0 1; }
    UsersScreen DataTable { height: auto; width: auto; }
    UsersScreen Static { color: $foreground-muted; }
    """

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "who uses what"
            yield DataTable(cursor_type="none", show_cursor=False, id="users")
            yield Static("owners of GPU processes on online nodes · filter: /user:NAME")

    def on_mount(self) -> None:
        self.show()
        self.set_interval(1.0, self.show)

    def show(self) -> None:
        app = self.app
        me = getpass.getuser()
        node_users = {n.name: n.user or me for n in app.cluster.nodes}  # type: ignore[attr-defined]
        jobs = app.session.jobs_snapshot or []  # type: ignore[attr-defined]
        users = by_user(app.monitor_state, job_users(jobs, node_users))  # type: ignore[attr-defined]
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_columns("USER", "GPUS", "GPU MEMORY", "PROCESSES", "UGRO JOBS", "ON")
        for u in users:
            on = ", ".join(f"{node}:{index}" for node, index in sorted(u.gpus)) or "–"
            table.add_row(Text(u.user, style="bold"), str(len(u.gpus)), f"{u.gpu_memory_mib / 1024:.1f} GB",
                          str(u.processes), str(u.jobs), Text(on))
        if not users:
            table.add_row("–", "0", "0.0 GB", "0", "0", "no GPU processes")
