"""The Sweep view (w on a trial, or the palette): the leaderboard beside the trials' curves, pruned ones dimmed."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ugro_tui.core.jobs import actions
from ugro_tui.core.jobs.leaderboard import Sweep, find
from ugro_tui.core.jobs.model import Job, JobState
from ugro_tui.errors import UgroError
from ugro_tui.ui.read_only import ReadOnlyAware
from ugro_tui.ui.widgets.dialogs import ConfirmScreen
from ugro_tui.ui.widgets.health import HealthBar
from ugro_tui.ui.widgets.metric_plot import Curve, MetricPlot, colours
from ugro_tui.ui.workers import ReportsWorkerFailures

COLUMNS = ("#", "JOB", "PARAMS", "BEST", "AT", "LAST", "STATE", "KWH", "COST")
WIDE = 140  # columns from which the table and the plot sit side by side


def value_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


class SweepScreen(ReadOnlyAware, ReportsWorkerFailures, Screen[None]):
    DEFAULT_CSS = """
    SweepScreen #sweep-header { height: 1; padding: 0 1; background: $panel; }
    SweepScreen #sweep-body { layout: vertical; height: 1fr; }
    SweepScreen #board { height: 1fr; }
    SweepScreen #curves { height: 1fr; min-height: 8; }
    SweepScreen.wide #sweep-body { layout: horizontal; }
    SweepScreen.wide #board { width: 1fr; height: 1fr; }
    SweepScreen.wide #curves { width: 1fr; height: 1fr; }
    """
    BINDINGS = [
        Binding("enter", "logs", "Trial logs", id="sweep.logs"),
        Binding("ctrl+d", "cancel_sweep", "Cancel sweep", id="sweep.cancel"),
        Binding("escape,w", "back", "Back", id="sweep.back"),
    ]

    def __init__(self, sweep_id: str) -> None:
        super().__init__()
        self.sweep_id = sweep_id
        self.sweep: Sweep | None = None
        self._shown: tuple = ()
        self.spent: dict[int, tuple[float, float]] = {}  # kWh and cost per trial, from the daemon's ledger

    def compose(self) -> ComposeResult:
        yield HealthBar(id="health")
        yield Static("", id="sweep-header")
        with Container(id="sweep-body"):
            yield DataTable(id="board", cursor_type="row", zebra_stripes=True)
            yield MetricPlot(id="curves")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#board", DataTable).add_columns(*COLUMNS)
        self.query_one(HealthBar).show_app()
        if self.app.session.jobs_snapshot is not None:
            self.show(self.app.session.jobs_snapshot)
        self.reload()
        self.set_interval(max(0.5, self.app.cluster.poll_interval), self.reload)

    def on_resize(self) -> None:
        self.set_class(self.size.width >= WIDE, "wide")

    @work(group="sweep", exclusive=True, exit_on_error=False, description="read the sweep's trials")
    async def reload(self) -> None:
        from ugro_tui.core.ledger.book import Book
        from ugro_tui.core.ledger.report import job_costs

        jobs = await asyncio.to_thread(self.app.store.all)
        self.app.session.jobs_snapshot = jobs
        sweep = find(jobs, self.sweep_id)
        if sweep is not None:
            ids = [j.id for j in sweep.trials]
            self.spent = await asyncio.to_thread(lambda: job_costs(Book(reader=True), self.app.cluster, ids))
        self.show(jobs)

    def show(self, jobs: list[Job]) -> None:
        sweep = find(jobs, self.sweep_id)
        if sweep is None:
            self.query_one("#sweep-header", Static).update(f"sweep {self.sweep_id}: no trials in the store")
            return
        signature = (tuple((j.id, j.state, j.metric[-1] if j.metric else None) for j in sweep.trials),
                     tuple(sorted(self.spent.items())))
        if signature == self._shown:
            return
        self._shown = signature
        self.sweep = sweep
        self.query_one(HealthBar).show_app()
        states = ", ".join(f"{n} {s}" for s, n in sorted(sweep.counts().items()))
        ran, full = sweep.saved_steps()
        rule = f" · early stop {sweep.early_stop}: {full - ran} trial-steps saved" if sweep.early_stop else ""
        money = self.app.cluster.currency
        spent = (f" · {sum(k for k, _ in self.spent.values()):.3f} kWh, "
                 f"{sum(c for _, c in self.spent.values()):.2f} {money}") if self.spent else ""
        eta = sweep.eta_text(self.app.clock())
        self.query_one("#sweep-header", Static).update(Text(
            f"sweep {sweep.id} {sweep.name} · {len(sweep.trials)} trials: {states}{spent} · "
            f"{sweep.metric} ({sweep.goal} is best){rule}" + (f" · {eta}" if eta else ""),
            no_wrap=True, overflow="ellipsis"))
        board = sweep.leaderboard()
        curves = [Curve(f"job {r.job.id}", tuple((s, v) for s, v, _ in r.job.metric), r.job.state is JobState.PRUNED)
                  for r in board]
        table = self.query_one("#board", DataTable)
        keep = table.cursor_row
        table.clear()
        for place, (row, shade) in enumerate(zip(board, colours(curves), strict=True), 1):
            job = row.job
            dim = "dim" if job.state is JobState.PRUNED else ""
            cells = [Text(c, style=dim) for c in (
                str(place), str(job.id), " ".join(f"{k}={v}" for k, v in job.spec.params) or "–",
                value_text(row.best[1] if row.best else None), "–" if row.best is None else str(row.best[0]),
                "–" if row.last_step is None else str(row.last_step), str(job.state),
                *((f"{self.spent[job.id][0]:.3f}", f"{self.spent[job.id][1]:.2f}") if job.id in self.spent
                  else ("–", "–")))]
            if job.metric:  # the job id in its curve's colour: the key to the plot when it has no room for a legend
                cells[1] = Text.assemble(("● ", "bright_black" if dim else shade), (str(job.id), dim))
            table.add_row(*cells, key=str(job.id))
        if table.row_count:
            table.move_cursor(row=min(keep, table.row_count - 1))
        self.query_one(MetricPlot).show(curves, ylabel=sweep.metric)

    def selected(self) -> Job | None:
        table = self.query_one("#board", DataTable)
        if self.sweep is None or not table.row_count:
            return None
        board = self.sweep.leaderboard()
        return board[table.cursor_row].job if table.cursor_row < len(board) else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_logs()

    def action_logs(self) -> None:
        job = self.selected()
        if job is None:
            return
        if not job.runs:
            self.notify(f"trial {job.id} has not run yet: no logs", severity="warning", timeout=3)
            return
        self.app.session.logs_job = job.id
        self.dismiss()
        self.app.switch_mode("logs")

    def action_back(self) -> None:
        self.dismiss()

    def action_cancel_sweep(self) -> None:
        sweep = self.sweep
        if sweep is None:
            return
        live = [j for j in sweep.trials if not j.state.finished]
        if not live:
            self.notify(f"sweep {sweep.id}: every trial has finished already", timeout=3)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._cancel([j.id for j in live])

        self.app.push_screen(ConfirmScreen(f"Cancel the {len(live)} unfinished trial{'s' if len(live) != 1 else ''} "
                                           f"of sweep {sweep.id}?"), answered)

    @work(group="sweep-actions", exit_on_error=False, description="cancel a sweep")
    async def _cancel(self, ids: list[int]) -> None:
        done = 0
        for job_id in ids:
            try:
                await asyncio.to_thread(actions.cancel, self.app.store, job_id)
                done += 1
            except UgroError:  # it finished meanwhile
                continue
        self.notify(f"sweep {self.sweep_id}: cancel asked for {done} trial{'s' if done != 1 else ''}", timeout=3)
        self.reload()
