"""The Logs view: one pane per global rank (a page of them at a time), node panes, the loss curve."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Awaitable

from rich.cells import cell_len
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Grid, Middle, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Log, Static

from ugro_tui.core.jobs.describe import age, placement_text
from ugro_tui.core.jobs.logs import CopyReader, RankDemux, Source, local_dir
from ugro_tui.core.jobs.model import Job
from ugro_tui.ui.shown import when_shown
from ugro_tui.ui.widgets.health import HealthBar
from ugro_tui.ui.widgets.metric_plot import Curve, MetricPlot
from ugro_tui.ui.workers import ReportsWorkerFailures

MAX_LINES = 5000  # per pane: memory stays bounded however long the run
FOLLOW_EVERY = 0.2  # seconds between reads of the copies while a job runs
REFILL = 1000     # lines a pane gets back when (re)drawn by a page change or a wrap toggle, so keys stay quick


class PaneLog(Log):
    """Textual's Log, measuring new lines' width on the event loop instead of in a thread worker: that worker
    reaches the app through the widget's parents, so a pane removed by a page change while it ran crashed the
    app (NoActiveAppError). Writes come in batches of at most REFILL lines, so this stays quick."""

    def _update_size(self, updates: int, lines: list[str]) -> None:
        if lines:
            self._update_maximum_width(updates, max(cell_len(self._process_line(line)) for line in lines))


class Pane(Vertical):
    """A titled log pane for one rank or one node."""

    DEFAULT_CSS = """
    Pane { border: round $foreground 30%; height: 1fr; }
    Pane:focus-within { border: round $primary; }
    Pane > Log { height: 1fr; scrollbar-size-vertical: 1; }
    """

    def __init__(self, key: str, title: str, lines: list[str]) -> None:
        super().__init__()  # no id: a page change mounts new panes while the old ones are still leaving
        self.key = key
        self.border_title = title
        self.output = PaneLog(max_lines=MAX_LINES, auto_scroll=True)
        self._initial = lines

    def compose(self) -> ComposeResult:
        yield self.output

    def on_mount(self) -> None:
        self.output.write_lines(self._initial)
        self._initial = []
        # Kept at the bottom as lines arrive and as the pane is resized (the loss plot, a page change), until the
        # user scrolls up; back at the bottom, it follows again. auto_scroll alone lost the bottom on a resize.
        self.output.anchor()


class LogsScreen(ReportsWorkerFailures, Screen[None]):
    AUTO_FOCUS = None  # keys reach the screen's bindings until the user focuses a pane (tab)
    DEFAULT_CSS = """
    LogsScreen #job-header { height: 1; padding: 0 1; background: $panel; }
    LogsScreen #loss { height: 6; margin: 0 1; }
    LogsScreen #panes { grid-size: 2; grid-gutter: 0; height: 1fr; }
    LogsScreen #search { dock: bottom; height: 3; }
    """
    BINDINGS = [
        Binding("right_square_bracket", "page(1)", "Next panes", id="logs.next"),
        Binding("left_square_bracket", "page(-1)", "Prev panes", id="logs.prev"),
        Binding("w", "wrap", "Wrap", id="logs.wrap"),
        Binding("a", "attempt", "Attempt", id="logs.attempt", show=False),  # in ? help; the footer is full
        Binding("slash", "search", "Search", id="logs.search"),
        Binding("escape", "close_search", "Back", id="logs.back", show=False),
        Binding("tab", "focus_next", "Next pane", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.job: Job | None = None
        self.demux = RankDemux(max_lines=MAX_LINES)
        self.page = 0
        self.wrap = False
        self._pending: dict[str, list[str]] = {}
        self._opened: int | None = None
        self.attempt: int | None = None  # an earlier attempt shown instead of the latest
        self._losses_shown = 0

    def compose(self) -> ComposeResult:
        yield HealthBar(id="health")
        yield Static("", id="job-header")
        loss = MetricPlot(id="loss", legend=False, labels=False)
        loss.tooltip = "loss of the lowest rank, parsed from `step N loss X` lines"
        yield loss
        yield Grid(id="panes")
        with Middle(id="no-job"), Center():
            yield Static("No job selected.\n\nPress 2 for the Jobs view, pick a job that has run, then press l.",
                         classes="empty-state")
        yield Input(placeholder="search this pane (enter: next match, esc: close)", id="search", disabled=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#search", Input).display = False
        self.set_focus(None)  # keys go to the screen until a pane is focused (tab) or / opens the search
        self.set_interval(0.1, self._flush)  # batch lines into one write per pane per frame
        self.set_interval(0.5, self._draw_loss)
        self._open(self.app.session.logs_job)

    def on_screen_resume(self) -> None:
        if self.app.session.logs_job != self._opened:
            self._open(self.app.session.logs_job)

    def _open(self, job_id: int | None, attempt: int | None = None) -> None:
        """Show a job's logs: its latest attempt, followed live, or an earlier one from its copies."""
        if job_id != self._opened:
            attempt = None
        self._opened = job_id
        self.attempt = attempt
        self.workers.cancel_group(self, "logs")
        self.job = None
        self.demux = RankDemux(max_lines=MAX_LINES)
        self._losses_shown = 0
        self.query_one("#loss", MetricPlot).show([])
        self.page = 0
        grid = self.query_one("#panes", Grid)
        removed = grid.remove_children()
        self.query_one("#no-job").display = job_id is None
        grid.display = job_id is not None
        self.query_one("#loss").display = False  # until the job reports a loss
        self.query_one(HealthBar).show_app()
        if job_id is not None:
            self.follow(job_id, removed)

    def _layout(self) -> tuple[int, int]:
        """(columns, panes per page) for this terminal: a 2x2 grid on a laptop, up to 4x2 on a big screen."""
        cols = 4 if self.size.width >= 200 else (3 if self.size.width >= 150 else 2)
        rows = 2 if self.size.height >= 20 else 1
        return cols, cols * rows

    def _keys(self) -> list[tuple[str, str]]:
        ranks = [(f"rank{r}", f"rank {r}") for r in sorted(self.demux.ranks)]
        nodes = [(f"node:{n}", f"{n} (torchrun)") for n in sorted(self.demux.nodes)]
        return ranks + nodes

    @when_shown
    def _show_page(self) -> None:
        cols, per_page = self._layout()
        keys = self._keys()
        pages = max(1, -(-len(keys) // per_page))
        self.page %= pages
        wanted = keys[self.page * per_page:(self.page + 1) * per_page]
        grid = self.query_one("#panes", Grid)
        grid.styles.grid_size_columns = min(cols, max(1, len(wanted)))
        have = [p.key for p in grid.query(Pane)]
        if have == [k for k, _ in wanted]:
            return
        grid.remove_children()
        grid.mount_all(Pane(key, f"{title}  ({self.page + 1}/{pages})" if pages > 1 else title,
                            self._format(self._buffer(key))) for key, title in wanted)

    def _fill(self, panes: list[Pane]) -> None:
        for pane in panes:
            pane.output.write_lines(self._format(self._buffer(pane.key)))

    def _buffer(self, key: str) -> list[str]:
        if key.startswith("rank"):
            stream = self.demux.ranks.get(int(key[4:]))
        else:
            stream = self.demux.nodes.get(key.split(":", 1)[1])
        if not stream:
            return []
        lines = stream.lines
        return list(itertools.islice(lines, max(0, len(lines) - REFILL), None))

    def _format(self, lines: list[str]) -> list[str]:
        if not self.wrap:
            return lines
        width = max(20, (self.size.width // max(1, self._layout()[0])) - 4)
        # Hard wrap at the pane width: log lines are not prose, and slicing keeps the key quick under a flood.
        return [line[i:i + width] for line in lines for i in range(0, max(1, len(line)), width)]

    @work(group="logs", exclusive=True, exit_on_error=False, description="follow a job's rank logs")
    async def follow(self, job_id: int, removed: Awaitable[None] | None = None) -> None:
        if removed is not None:  # the last job's panes are gone first: its keys must not take this job's lines
            await removed
        store = self.app.store
        job = await asyncio.to_thread(store.get, job_id)
        self.job = job
        if self.attempt is not None and self.attempt != job.attempt:  # an earlier attempt: its copies, once
            earlier = dataclasses.replace(job, attempt=self.attempt)
            reader = CopyReader(earlier)
            nodes = await asyncio.to_thread(lambda: sorted(p.stem for p in local_dir(earlier).glob("*.log")))
            for node in nodes:
                for source, chunk in await asyncio.to_thread(reader.read_new, node):
                    self._take(source, chunk)
            self._take_rest()
            self._header(job)
            return
        reader = CopyReader(job)
        for turn in itertools.count(1):
            for node, _run in job.runs:
                # What the daemon's log copies gained (it follows every running job's ranks).
                for source, chunk in await asyncio.to_thread(reader.read_new, node):
                    self._take(source, chunk)
            self._flush()  # what was read shows now, not at the next tick of the flush timer
            self._header(job)
            if job.state.finished:
                self._take_rest()
                return
            await asyncio.sleep(FOLLOW_EVERY)
            if turn % 4:
                continue  # the copies often (a new line shows well within a second), the job itself less often
            job = await asyncio.to_thread(store.get, job_id)
            if job.attempt != reader.job.attempt:
                reader = CopyReader(job)  # a retry writes new copies
            self.job = job

    @when_shown
    def _take_rest(self) -> None:
        shown = {p.key for p in self.query(Pane)}
        for key, line in self.demux.flush():  # a log that ended mid-line
            if key in shown:
                self._pending.setdefault(key, []).append(line)

    def action_attempt(self) -> None:
        """The next attempt of a retried job (1, 2, ... then the latest again, followed live)."""
        job = self.job
        if job is None or job.attempt < 2:
            self.notify("this job has one attempt", timeout=2)
            return
        current = self.attempt or job.attempt
        nxt = current % job.attempt + 1
        self._open(job.id, None if nxt == job.attempt else nxt)
        self.notify(f"attempt {nxt} of {job.attempt}", timeout=2)

    @when_shown
    def _take(self, source: Source, data: bytes) -> None:
        known = len(self._keys())
        panes = {p.key: p for p in self.query(Pane)}
        for key, line in self.demux.feed(source, data):
            if key in panes:  # panes made now take their lines from the demux buffer instead
                self._pending.setdefault(key, []).append(line)
        pane = panes.get(source.pane)
        if pane is not None:  # a progress bar being drawn (\r) shows in the pane's bottom border until its line ends
            pane.border_subtitle = self.demux.live.get(source.pane, "")
        if len(self._keys()) != known:
            self._show_page()

    @when_shown
    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for pane in self.query(Pane):
            lines = pending.get(pane.key)
            if lines:
                pane.output.write_lines(self._format(lines))

    @when_shown
    def _draw_loss(self) -> None:
        """At most twice a second: a plot is dearer to draw than a line."""
        if self.demux.losses and len(self.demux.losses) != self._losses_shown:
            self._losses_shown = len(self.demux.losses)
            plot = self.query_one("#loss", MetricPlot)
            plot.display = True
            plot.show([Curve("loss", tuple(self.demux.losses)[-500:])])

    @when_shown
    def _header(self, job: Job) -> None:
        now = time.time()
        elapsed = age((job.finished_at or now) - job.started_at) if job.started_at else "–"
        last = self.demux.losses[-1] if self.demux.losses else None
        loss = f" · step {last[0]} loss {last[1]:.4g}" if last else ""
        attempt = f" · attempt {self.attempt or job.attempt}/{job.attempt}" if job.attempt > 1 else ""
        self.query_one("#job-header", Static).update(Text(
            f"job {job.id} {job.spec.name} [{job.state}]{attempt} · {elapsed} · {placement_text(job)}{loss}",
            no_wrap=True, overflow="ellipsis"))

    def action_page(self, step: int) -> None:
        self.page += step
        self._show_page()

    def action_wrap(self) -> None:
        self.wrap = not self.wrap
        for pane in self.query(Pane):
            pane.output.clear()
        self._fill(list(self.query(Pane)))
        self.notify("wrap on" if self.wrap else "wrap off", timeout=2)

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.display = True
        box.disabled = False
        box.focus()

    def action_close_search(self) -> None:
        box = self.query_one("#search", Input)
        box.display = False
        box.disabled = True  # so it never takes the keys meant for the view
        box.value = ""

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Jump to the next line matching the search in the first pane that has it (the focused one first)."""
        text = event.value.lower()
        if not text:
            return
        panes = list(self.query(Pane))
        focused = [p for p in panes if p.has_focus_within]
        for pane in focused + [p for p in panes if p not in focused]:
            log = pane.output
            lines = log.lines
            start = int(log.scroll_y) + 1
            for offset in range(len(lines)):
                i = (start + offset) % max(1, len(lines))
                if text in lines[i].lower():
                    log.auto_scroll = False
                    log.release_anchor()  # stay on the match while lines arrive
                    log.scroll_to(y=i, animate=False)
                    self.notify(f"{pane.border_title}: line {i + 1}", timeout=2)
                    return
        self.notify(f"no line has {event.value!r}", severity="warning", timeout=2)
