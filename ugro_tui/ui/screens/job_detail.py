"""A job's detail (enter in the Jobs view): its spec, placement, nodes and events in words; what its GPUs used
(energy, cost, and whether its input starved them); its loss curve beside its GPUs' utilization over time."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ugro_tui.core.jobs.describe import detail, event_lines, node_lines
from ugro_tui.core.jobs.model import Job
from ugro_tui.core.ledger.report import energy_lines
from ugro_tui.ui.widgets.metric_plot import Curve, MetricPlot
from ugro_tui.ui.workers import ReportsWorkerFailures


def gpu_curves(row: dict[str, Any] | None) -> list[Curve]:
    """Each GPU's utilization over the job's history, in minutes from its first point."""
    histories = (row or {}).get("history", {})
    starts = [h.points[0][0] for h in histories.values() if h.points]
    if not starts:
        return []
    first = min(starts)
    return [Curve(key, tuple(((p[0] - first) / 60, p[1]) for p in h.points if p[1] is not None))
            for key, h in sorted(histories.items())]


class JobDetailScreen(ReportsWorkerFailures, ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close", id="detail.close")]
    DEFAULT_CSS = """
    JobDetailScreen { align: center middle; }
    JobDetailScreen > VerticalScroll { width: 100; max-width: 95%; height: auto; max-height: 90%;
        border: round $primary; background: $surface; padding: 0 1; }
    JobDetailScreen #detail-plots { height: 12; }
    JobDetailScreen #detail-plots MetricPlot { width: 1fr; }
    """

    def __init__(self, job: Job, happened: list[tuple[float, str]] | None = None,
                 ledger: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.job = job
        self.happened = happened or []  # the job's events, read by the caller in a thread
        self.ledger = ledger  # its row in the daemon's ledger (GPU use, history), read by the caller

    def text(self) -> Text:
        app: Any = self.app
        return Text("\n".join(detail(self.job) + node_lines(self.job, app.monitor_state)
                              + energy_lines(self.ledger, app.cluster) + event_lines(self.happened)))

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self.text(), id="detail-text")
            loss = [(float(step), value) for step, value, _ in self.job.metric]
            gpus = gpu_curves(self.ledger)
            if loss or gpus:
                with Horizontal(id="detail-plots"):
                    if loss:
                        yield MetricPlot(id="detail-loss", ylabel=self.job.spec.metric, legend=False)
                    if gpus:
                        yield MetricPlot(id="detail-gpus", ylabel="GPU %", xlabel="minutes")
            if self.job.spec.checkpoint_dir:
                from ugro_tui.ui.screens.checkpoints import CheckpointList

                yield CheckpointList(self.job)

    def on_mount(self) -> None:
        for plot in self.query("#detail-loss").results(MetricPlot):
            plot.show([Curve(self.job.spec.metric, tuple((float(s), v) for s, v, _ in self.job.metric))])
        for plot in self.query("#detail-gpus").results(MetricPlot):
            plot.show(gpu_curves(self.ledger))
        if self.job.state.active:  # its nodes' CPU and GPUs, live
            self.set_interval(1.0, lambda: self.query_one("#detail-text", Static).update(self.text()))
