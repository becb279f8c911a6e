"""The Usage view (`5`): energy or cost per day, stacked by user or by node, and the jobs that used the most,
from the daemon's ledger (saved every 15 s and when a job ends)."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual_plotext import PlotextPlot

from ugro_tui.core.ledger.book import Book
from ugro_tui.core.ledger.meter import Usage
from ugro_tui.core.ledger.report import daily, top_jobs
from ugro_tui.ui.widgets.health import HealthBar
from ugro_tui.ui.widgets.metric_plot import COLOURS
from ugro_tui.ui.workers import ReportsWorkerFailures

SPANS = (7, 30, 90)  # days
READ_EVERY = 15.0  # seconds: the daemon saves the ledger as often
TOP = 8


class UsageScreen(ReportsWorkerFailures, Screen[None]):
    DEFAULT_CSS = """
    UsageScreen #usage-summary { height: 1; padding: 0 1; }
    UsageScreen #usage-plot { height: 1fr; min-height: 8; }
    UsageScreen #top-jobs { height: auto; max-height: 10; }
    """
    BINDINGS = [
        Binding("b", "by", "By user/node", id="usage.by"),
        Binding("c", "cost", "Energy/cost", id="usage.cost"),
        Binding("s", "span", "7/30/90 days", id="usage.span"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.by = "user"
        self.show_cost = False
        self.span = SPANS[0]
        self.book: Book | None = None
        self.names: dict[int, str] = {}

    def compose(self) -> ComposeResult:
        yield HealthBar(id="health")
        yield Static("", id="usage-summary")
        yield PlotextPlot(id="usage-plot")
        yield DataTable(id="top-jobs", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(HealthBar).show_app()
        self.query_one(DataTable).add_columns("JOB", "NAME", "USER", "GPU-H", "KWH", "COST", "ENERGY FROM")
        self.read_ledger()
        self.set_interval(READ_EVERY, self.read_ledger)

    @work(group="usage", exclusive=True, exit_on_error=False, description="read the ledger")
    async def read_ledger(self) -> None:
        self.book = await asyncio.to_thread(lambda: Book(reader=True))
        jobs = self.app.session.jobs_snapshot  # type: ignore[attr-defined]
        if jobs is None:  # the Jobs view has not read the store yet
            jobs = await asyncio.to_thread(self.app.store.all)  # type: ignore[attr-defined]
        self.names = {j.id: j.spec.name for j in jobs}
        self.show()

    def action_by(self) -> None:
        self.by = "node" if self.by == "user" else "user"
        self.show()

    def action_cost(self) -> None:
        self.show_cost = not self.show_cost
        self.show()

    def action_span(self) -> None:
        self.span = SPANS[(SPANS.index(self.span) + 1) % len(SPANS)]
        self.show()

    def show(self) -> None:
        if self.book is None:
            return
        cluster, now = self.app.cluster, self.app.clock()  # type: ignore[attr-defined]
        since = now - (self.span - 1) * 86400
        days, energy, cost = daily(self.book, cluster, self.by, since, now)
        series = cost if self.show_cost else energy
        total_kwh = sum(sum(v) for v in energy.values())
        total_cost = sum(sum(v) for v in cost.values())
        warning = self.app.theme_variables.get("warning", "") or "bold"
        summary = Text.assemble(
            (f"last {self.span} days ", "bold"), f"{total_kwh:.2f} kWh · ",
            (f"{total_cost:.2f} {cluster.currency}", "bold"),
            f" · {'cost' if self.show_cost else 'energy'} by {self.by}")
        if not cluster.energy_price and not any(n.energy_price for n in cluster.nodes):
            summary.append(" · no price: set energy_price", style=warning)
        for line in self.book.recovered:
            summary.append(f" · {line}", style=warning)
        self.query_one("#usage-summary", Static).update(summary)
        self._plot(days, series, cluster.currency)
        self._table(top_jobs(self.book, cluster, since, TOP))

    def _plot(self, days: list[str], series: dict[str, list[float]], currency: str) -> None:
        widget = self.query_one(PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        size = 1 if len(days) <= 10 else 7  # 30 or 90 days: a bar per week (a day's bar would be 2 columns wide)
        starts = list(range(0, len(days), size))
        labels = [days[i][5:] for i in starts]  # MM-DD, a week's first day
        series = {k: [sum(v[i:i + size]) for i in starts] for k, v in series.items()}
        keys = sorted(series, key=lambda k: -sum(series[k]))
        if keys:
            plt.stacked_bar(labels, [series[k] for k in keys], labels=keys,
                            color=[COLOURS[i % len(COLOURS)] for i in range(len(keys))])
        else:
            plt.bar(labels, [0.0] * len(labels))
            plt.ylim(0, 1)
            plt.title("nothing recorded yet: the daemon's ledger fills as GPUs are sampled")
        plt.ylabel(f"{currency if self.show_cost else 'kWh'} per {'day' if size == 1 else 'week'}")
        widget.refresh()

    def _table(self, rows: list[tuple[int, str, Usage, float]]) -> None:
        table = self.query_one(DataTable)
        table.clear()
        money = self.app.cluster.currency  # type: ignore[attr-defined]
        for job_id, user, usage, cost in rows:
            table.add_row(str(job_id), self.names.get(job_id, "–"), user, f"{usage.gpu_seconds / 3600:.2f}",
                          f"{usage.wh / 1000:.3f}", f"{cost:.2f} {money}", usage.energy_source)
        if not rows:
            table.add_row("–", "no job recorded in the span", "", "", "", "", "")
