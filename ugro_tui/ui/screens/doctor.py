"""The Doctor view: every preflight check per node, ok / warn / fail, with the fix for the selected one."""

from __future__ import annotations

import asyncio
import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ugro_tui.core.doctor.checks import Check, Report, Status
from ugro_tui.errors import UgroError
from ugro_tui.ui.messages import DoctorCheckDone, DoctorFinished
from ugro_tui.ui.read_only import ReadOnlyAware
from ugro_tui.ui.widgets.health import HealthBar
from ugro_tui.ui.workers import ReportsWorkerFailures

COLUMNS = ("NODE", "CHECK", "RESULT", "DETAIL")
STATUS_COLOUR = {Status.OK: "success", Status.WARN: "warning", Status.FAIL: "error", Status.SKIP: ""}  # skip: dim
STATUS_MARK = {Status.OK: "✓ ok", Status.WARN: "▲ warn", Status.FAIL: "✗ fail", Status.SKIP: "– skip"}


class DoctorScreen(ReadOnlyAware, ReportsWorkerFailures, Screen[None]):
    DEFAULT_CSS = """
    DoctorScreen #doctor-summary { height: 1; padding: 0 1; }
    DoctorScreen #checks { height: 1fr; }
    DoctorScreen #fix { height: 2; padding: 0 1; background: $panel; color: $foreground; }
    """
    BINDINGS = [
        Binding("r", "run(False)", "Run checks", id="doctor.run"),
        Binding("s", "run(True)", "Run + smoke", id="doctor.smoke"),
        Binding("p", "problems", "Problems only", id="doctor.problems"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.checks: list[Check] = []
        self.problems_only = False
        self.running = False

    def compose(self) -> ComposeResult:
        yield HealthBar(id="health")
        yield Static("", id="doctor-summary")
        yield DataTable(id="checks", cursor_type="row", zebra_stripes=True)
        yield Static("", id="fix")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.query_one(HealthBar).show_app()
        report: Report | None = self.app.session.doctor_report
        if report is not None:
            self.checks = list(report.checks)
        self.refresh_view()
        self.query_one(DataTable).focus()
        if report is None and self.app.use_monitor:  # the first visit in a live app: run it, as the user expects
            self.action_run(False)

    # --- running --------------------------------------------------------------------------------------------

    def action_run(self, smoke: bool) -> None:
        if self.running:
            self.notify("the doctor is already running", timeout=2)
            return
        self.running = True
        self.checks = []
        self._started = time.monotonic()
        self._smoke = smoke
        self.refresh_view()
        self.run_doctor(smoke)

    @work(group="doctor", exclusive=True, exit_on_error=False, description="doctor")
    async def run_doctor(self, smoke: bool) -> None:
        """Over the daemon's connections (it also dispatches the smoke job); each check shows as it ends."""
        from ugro_tui.core.daemon import ask

        client = self.app.daemon
        if client is None:
            self.post_message(DoctorFinished(None, "this view follows no ugro daemon: `ugro doctor` runs alone"))
            return
        try:
            report = await asyncio.to_thread(ask.doctor, client, smoke, lambda c: self.post_message(DoctorCheckDone(c)))
        except UgroError as exc:  # one line for the user; the view stays usable
            self.post_message(DoctorFinished(None, str(exc)))
            return
        self.post_message(DoctorFinished(report))

    def on_doctor_check_done(self, message: DoctorCheckDone) -> None:
        self.checks.append(message.check)
        self.refresh_view()

    def on_doctor_finished(self, message: DoctorFinished) -> None:
        self.running = False
        if message.report is not None:
            self.app.session.doctor_report = message.report
            self.checks = list(message.report.checks)  # in node and check order now
        else:
            self.notify(f"doctor: {message.error}", severity="error", timeout=8)
        self.refresh_view()

    # --- drawing --------------------------------------------------------------------------------------------

    def refresh_view(self) -> None:
        counts = {s: sum(1 for c in self.checks if c.status is s) for s in Status}
        theme = self.app.theme_variables
        summary = self.query_one("#doctor-summary", Static)
        if self.running:
            what = "checks and a smoke run" if self._smoke else "checks"
            summary.update(Text(f"running {what} on {len(self.app.cluster.nodes)} node(s)… {len(self.checks)} done",
                                style="bold"))
        elif not self.checks:
            summary.update(Text("r runs every check on every node · s also runs a tiny all-reduce as a job",
                                style="dim"))
        else:
            parts: list[tuple[str, str] | str] = [("doctor: ", "bold")]
            for status in (Status.FAIL, Status.WARN, Status.OK, Status.SKIP):
                parts += [(f"{counts[status]} {status}", theme.get(STATUS_COLOUR[status], "dim") or "dim"), "  "]
            if self.problems_only:
                parts.append(("(problems only: p shows all)", "italic"))
            summary.update(Text.assemble(*parts, no_wrap=True, overflow="ellipsis"))
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear()
        shown = [c for c in self.checks if not self.problems_only or c.status in (Status.WARN, Status.FAIL)]
        self._shown = shown
        previous = None
        for c in shown:
            node = "" if c.node == previous else c.node  # the node once per group reads as a table per node
            previous = c.node
            colour = theme.get(STATUS_COLOUR[c.status], "") or "dim"
            table.add_row(node, c.name, Text(STATUS_MARK[c.status], style=colour),
                          Text(c.detail, no_wrap=True, overflow="ellipsis"))
        if shown:
            table.move_cursor(row=min(max(keep, 0), len(shown) - 1))
        self._show_fix()

    def _show_fix(self) -> None:
        table = self.query_one(DataTable)
        fix = self.query_one("#fix", Static)
        if not self._shown or table.cursor_row >= len(self._shown):
            fix.update("")
            return
        c = self._shown[table.cursor_row]
        text = Text(f"{c.node} · {c.name}: {c.detail}", no_wrap=True, overflow="ellipsis")
        text.append("\n")
        text.append(f"fix: {c.hint}" if c.hint else "no action needed", style="bold" if c.hint else "")
        fix.update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_fix()

    def action_problems(self) -> None:
        self.problems_only = not self.problems_only
        self.refresh_view()
