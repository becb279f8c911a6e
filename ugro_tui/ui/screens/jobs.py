"""The Jobs view: the queue and its history, why each job waits, and keys to act on them."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Middle
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from ugro_tui.core.jobs import actions
from ugro_tui.core.jobs.describe import age, placement_text, progress_text, runtime, shape
from ugro_tui.core.jobs.model import Job, JobState
from ugro_tui.core.sessions.watch import reason_of
from ugro_tui.errors import UgroError
from ugro_tui.ui.read_only import ReadOnlyAware
from ugro_tui.ui.shown import when_shown
from ugro_tui.ui.widgets.dialogs import ConfirmScreen
from ugro_tui.ui.widgets.health import HealthBar
from ugro_tui.ui.workers import ReportsWorkerFailures

STATE_COLOUR = {JobState.QUEUED: "primary", JobState.HELD: "secondary", JobState.STARTING: "accent",
                JobState.RUNNING: "success", JobState.SUCCEEDED: "success", JobState.FAILED: "error",
                JobState.CANCELLED: "warning", JobState.PRUNED: "foreground-muted"}
HEALTH_COLOUR = {"starting": "accent", "ready": "success", "unhealthy": "error", "restarting": "warning"}
SORTS = ("id", "priority", "state", "name")
PAGE = 120  # rows made at a time (a tall terminal shows 60): the view opens fast at 10,000 jobs, more load as you go
COLUMNS = ("ID", "NAME", "STATE", "PRI", "SHAPE", "PLACEMENT", "AGE", "RUNTIME", "PROGRESS", "REASON")


class JobsScreen(ReadOnlyAware, ReportsWorkerFailures, Screen[None]):
    DEFAULT_CSS = """
    JobsScreen #jobs { height: 1fr; }
    JobsScreen #why { height: 1; padding: 0 1; background: $panel; color: $foreground; }
    """
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="jobs.filter"),
        Binding("enter", "detail", "Detail", id="jobs.detail"),
        Binding("ctrl+d", "cancel_job", "Cancel", id="jobs.cancel"),
        Binding("h", "hold", "Hold/release", id="jobs.hold"),
        Binding("r", "retry", "Retry", id="jobs.retry"),
        Binding("s", "sort", "Sort", id="jobs.sort"),
        Binding("l", "logs", "Logs", id="jobs.logs"),
        Binding("e", "edit", "Edit as new", id="jobs.edit"),
        Binding("w", "sweep", "Sweep", id="jobs.sweep"),
        Binding("f", "forward", "Forward", id="jobs.forward"),
        Binding("escape", "clear_filter", "Back", id="jobs.back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[Job] = []
        self._rows: list[Job] = []   # the jobs as sorted and filtered; the table has the first of them
        self._cells: list[tuple[Text | str, ...]] = []  # what each loaded row shows, to redraw only what changed
        self._by_id: dict[int, Job] = {}
        self._quick: tuple = ()
        self.sort_by = "id"
        self._service_selected = False  # read by the footer on every refresh: kept, never searched for

    def compose(self) -> ComposeResult:
        yield HealthBar(id="health")
        yield Input(placeholder="filter: name, state, node or reason (esc to clear)", id="filter")
        table: DataTable[Text | str] = DataTable(id="jobs", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("", id="why")
        with Middle(id="empty"), Center():
            yield Static("No jobs yet.\n\nSubmit one with `ugro submit -- train.py`: it shows here with its state, "
                         "where it runs and why it waits.", classes="empty-state")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.query_one(DataTable).focus()
        self.query_one(HealthBar).show_app()
        self.set_interval(max(0.5, self.app.cluster.poll_interval), self.reload)

    def on_screen_resume(self) -> None:
        """Shown (the first time too): what was read already at once, then brought up to date once drawn."""
        if self.app.session.jobs_snapshot is not None:
            self.show_jobs(self.app.session.jobs_snapshot)
        self.call_after_refresh(self.reload)

    @work(group="jobs", exclusive=True, exit_on_error=False, description="read the job store")
    async def reload(self) -> None:
        if not self.is_current:
            return  # another view is shown: its timer has nothing to draw on (a switch back reloads at once)
        jobs = await asyncio.to_thread(self.app.store.all)
        self.app.session.jobs_snapshot = jobs
        self.app.session.store_recovered = await asyncio.to_thread(self.app.store.recovery_notice) is not None
        self.show_jobs(jobs)

    @when_shown
    def show_jobs(self, jobs: list[Job]) -> None:
        words = self.query_one("#filter", Input).value.lower().split()
        quick = (id(jobs), self.sort_by, tuple(words), int(self.app.clock()) // 10)
        if quick == self._quick:
            return  # the very same snapshot, shown the same way
        self._quick = quick
        self.jobs = jobs
        self._by_id = {j.id: j for j in jobs}
        self.query_one(HealthBar).show_app()
        shown = self._sorted(jobs)
        if words:
            shown = [j for j in shown if all(w in self._haystack(j) for w in words)]
        table = self.query_one(DataTable)
        loaded = table.row_count
        if loaded and [j.id for j in shown[:loaded]] == [j.id for j in self._rows[:loaded]]:
            self._update_rows(shown)  # the same rows in the same order: only the cells that changed are redrawn
            self._show_selected()
            return
        keep = table.cursor_row
        table.clear()
        self._rows = shown
        self._cells = []
        self._add_page(max(PAGE, keep + 1))
        table.display = bool(jobs)
        self.query_one("#why").display = bool(jobs)
        self.query_one("#empty").display = not jobs
        if shown:
            table.move_cursor(row=min(keep, len(shown) - 1))
        self._note_selected(self.selected())  # the row under the cursor may be another job now

    def _row(self, j: Job, now: float, theme: dict[str, str]) -> tuple[Text | str, ...]:
        # Names and reasons as Text: a str cell is Rich markup, and `lr[lr=3e-4]` would lose its brackets.
        return (str(j.id), Text(j.spec.name), Text(j.health, style=theme.get(
                HEALTH_COLOUR.get(j.health) or STATE_COLOUR[j.state], "")),
                str(j.spec.priority), shape(j), placement_text(j), age(now - j.submitted_at), runtime(j, now),
                progress_text(j, now),
                Text(f"⚠ {j.warning}", style=theme.get("warning", "")) if j.warning else Text(reason_of(j, now) or "–"))

    @when_shown
    def _add_page(self, count: int = PAGE) -> None:
        """The next rows of the table: only a page is made at a time (the view opens fast at 10,000 jobs), and
        more as the cursor nears the end."""
        table = self.query_one(DataTable)
        now = self.app.clock()
        theme = self.app.theme_variables
        start = table.row_count
        rows = [self._row(j, now, theme) for j in self._rows[start:start + count]]
        self._cells.extend(rows)
        table.add_rows(rows)
        self._say_loaded()

    def _update_rows(self, shown: list[Job]) -> None:
        """Redraw the cells that read differently now (a new state, reason, progress, an age that ticked over)."""
        table = self.query_one(DataTable)
        now = self.app.clock()
        theme = self.app.theme_variables
        for i, job in enumerate(shown[:table.row_count]):
            row = self._row(job, now, theme)
            for column, (old, new) in enumerate(zip(self._cells[i], row, strict=True)):
                if old != new:
                    table.update_cell_at(Coordinate(i, column), new, update_width=True)  # a longer value widens it
            self._cells[i] = row
        self._rows = shown
        self._say_loaded()

    def _say_loaded(self) -> None:
        table = self.query_one(DataTable)
        left = len(self._rows) - table.row_count
        table.border_subtitle = f"{table.row_count} of {len(self._rows)} shown; more load as you scroll" if left else ""

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_detail()  # enter on a row: the table handles the key, so take its message

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The selected job's reason in full on its own line: on a narrow screen the column is cut off."""
        table = self.query_one(DataTable)
        if table.cursor_row >= table.row_count - 10 and table.row_count < len(self._rows):
            self._add_page()
        self._show_selected()

    def _show_selected(self) -> None:
        job = self.selected()
        self._note_selected(job)
        why = self.query_one("#why", Static)
        going = progress_text(job, self.app.clock()) if job else "–"
        said = f"{job.reason or job.state}" + (f" · {going}" if going != "–" else "") + (
            f"; ⚠ {job.warning}" if job.warning else "") if job else ""
        why.update(Text(f"job {job.id}: {said}", no_wrap=True, overflow="ellipsis")
                   if job else "")

    def _note_selected(self, job: Job | None) -> None:
        """`f` comes and goes with the selected job's kind."""
        service = job is not None and job.spec.kind == "service"
        if service != self._service_selected:
            self._service_selected = service
            self.refresh_bindings()

    def _sorted(self, jobs: list[Job]) -> list[Job]:
        order = list(JobState)
        keys = {"id": lambda j: -j.id, "priority": lambda j: (-j.spec.priority, j.id),
                "state": lambda j: (order.index(j.state), -j.id), "name": lambda j: (j.spec.name, j.id)}
        return sorted(jobs, key=keys[self.sort_by])

    @staticmethod
    def _haystack(job: Job) -> str:
        return " ".join([str(job.id), job.spec.name, str(job.state), job.health, job.spec.kind, placement_text(job),
                         job.reason]).lower()

    def selected(self) -> Job | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        job_id = int(str(table.get_row_at(table.cursor_row)[0]))
        return self._by_id.get(job_id)

    def action_edit(self) -> None:
        """The launch form, filled in from this job (like pueue's restart --edit); submitting queues a new job."""
        from ugro_tui.core.jobs.form import from_spec

        job = self.selected()
        if job is not None:
            self.app.action_new_job(from_spec(job.spec), f"new job from job {job.id}")

    def action_logs(self) -> None:
        job = self.selected()
        if job is not None:
            self._open_logs(job.id)

    @work(group="job-actions", exit_on_error=False, description="open a job's logs")
    async def _open_logs(self, job_id: int) -> None:
        job = await asyncio.to_thread(self.app.store.get, job_id)  # the table may be a moment old
        if not job.runs:
            self.notify(f"job {job.id} has not run yet: no logs", severity="warning", timeout=3)
            return
        self.app.session.logs_job = job.id
        self.app.switch_mode("logs")

    def action_sweep(self) -> None:
        job = self.selected()
        if job is None or not job.spec.sweep_id:
            self.notify("not a sweep's trial: `ugro submit --sweep ... --trials N` starts a sweep", timeout=3)
            return
        from ugro_tui.ui.screens.sweep import SweepScreen

        self.app.push_screen(SweepScreen(job.spec.sweep_id))

    def action_sort(self) -> None:
        self.sort_by = SORTS[(SORTS.index(self.sort_by) + 1) % len(SORTS)]
        self.notify(f"sorted by {self.sort_by}", timeout=2)
        self.show_jobs(self.jobs)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.show_jobs(self.jobs)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(DataTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.query_one(DataTable).focus()

    def action_detail(self) -> None:
        job = self.selected()
        if job is not None:
            self._open_detail(job)

    @work(group="job-actions", exit_on_error=False, description="open a job's detail")
    async def _open_detail(self, job: Job) -> None:
        from ugro_tui.core.jobs import events
        from ugro_tui.core.ledger.book import Book
        from ugro_tui.ui.screens.job_detail import JobDetailScreen

        happened = await asyncio.to_thread(events.read, job.id)
        row = await asyncio.to_thread(lambda: Book(reader=True).jobs.get(job.id))  # what its GPUs used, so far
        self.app.push_screen(JobDetailScreen(job, happened, row))

    @work(group="job-actions", exit_on_error=False, description="change a job")
    async def _act(self, verb: str, job: Job) -> None:
        try:  # in a thread: another process may hold the store's lock for a while
            self.notify(await asyncio.to_thread(actions.ACTIONS[verb], self.app.store, job.id), timeout=3)
        except UgroError as exc:
            self.notify(str(exc), severity="error", timeout=5)
        else:
            self.app.kick_daemon()
        self.reload()

    def action_cancel_job(self) -> None:
        job = self.selected()
        if job is None:
            return

        session = job.spec.kind == "session"

        def answered(yes: bool | None) -> None:
            if yes:
                self._act("end" if session else "cancel", job)

        where = f" on {placement_text(job)}" if job.state.active else ""
        ask = "End session" if session else "Cancel job"
        self.app.push_screen(ConfirmScreen(f"{ask} {job.id} ({job.spec.name}){where}?"), answered)

    def action_hold(self) -> None:
        job = self.selected()
        if job is not None:
            self._act("release" if job.state is JobState.HELD else "hold", job)

    def action_retry(self) -> None:
        job = self.selected()
        if job is None:
            return
        if job.state.finished and job.spec.checkpoint_dir and job.ran_on:
            self._retry_from_checkpoint(job)
        else:
            self._act("retry", job)

    @work(group="job-actions", exit_on_error=False, description="offer a job's checkpoints")
    async def _retry_from_checkpoint(self, job: Job) -> None:
        """r on a finished job with checkpoints: pick the one it starts from (the newest is first)."""
        from ugro_tui.ui.screens.checkpoints import SCRATCH, ResumePicker, whole_checkpoints

        try:
            found = await whole_checkpoints(self.app, job)
        except UgroError as exc:  # no node answered, or no daemon: retry as usual; it resumes from what it finds
            self.notify(f"could not list the checkpoints ({exc}); retrying from the newest found at start",
                        severity="warning", timeout=5)
            self._act("retry", job)
            return
        if not found:
            self._act("retry", job)
            return

        def picked(step: int | None) -> None:
            if step is None:
                return
            changes = {"ran_on": ()} if step == SCRATCH else {"resume_step": step}
            why = "retried by the user " + ("from the start" if step == SCRATCH else f"from step {step}")
            self._requeue(job, why, changes)

        self.app.push_screen(ResumePicker(job, found), picked)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`f` is shown only on a service: the footer stays about what the selected job can do."""
        if action == "forward":
            return self._service_selected
        return super().check_action(action, parameters)

    def action_forward(self) -> None:
        job = self.selected()
        if job is None or job.spec.kind != "service":
            self.notify("f forwards a service's port here; select a service (--kind service)", timeout=3)
            return
        self._forward(job)

    @work(group="job-actions", exit_on_error=False, description="forward a service's port")
    async def _forward(self, job: Job) -> None:
        """A local port carried to the service over the daemon's connection to its node, while the app runs."""
        from ugro_tui.core.daemon.client import RemoteForward

        forwards = self.app.session.forwards
        if job.id not in forwards and self.app.daemon is None:
            self.notify("this view follows no ugro daemon: nothing to forward through", severity="error", timeout=6)
            return
        if job.id not in forwards:
            try:
                forwards[job.id] = await asyncio.to_thread(RemoteForward, self.app.daemon, job.id, 0)
            except UgroError as exc:
                self.notify(str(exc), severity="error", timeout=8)
                return
        url = f"http://127.0.0.1:{forwards[job.id].get_port()}/"
        self.app.copy_to_clipboard(url)
        self.notify(f"job {job.id} ({job.spec.name}) is at {url} while ugro runs (copied)", timeout=10)

    @work(group="job-actions", exit_on_error=False, description="queue a job again")
    async def _requeue(self, job: Job, why: str, changes: dict) -> None:
        try:
            await asyncio.to_thread(self.app.store.move, job.id, JobState.QUEUED, reason=why, **changes)
            self.notify(f"{job.id}: queued again, {why.removeprefix('retried by the user ')}", timeout=3)
        except UgroError as exc:
            self.notify(str(exc), severity="error", timeout=5)
        self.reload()
