"""A job's checkpoints in the app: listed in the job detail, and offered by `r` on a finished job."""

from __future__ import annotations

import asyncio
import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option

from ugro_tui.core.jobs.checkpoints import Checkpoint, resumable, size_text
from ugro_tui.core.jobs.model import Job
from ugro_tui.errors import UgroError
from ugro_tui.ui.workers import ReportsWorkerFailures

SCRATCH = -1  # the picker's answer for "from the start"


def checkpoint_lines(job: Job, found: list[Checkpoint]) -> Text:
    if not found:
        return Text(f"  checkpoints: none yet in {job.spec.checkpoint_dir}", style="italic")
    text = Text("  checkpoints:\n")
    for c in found:
        metric = "" if c.metric is None else f"  {job.spec.metric} {c.metric:.4g}"
        state = "" if c.complete else "  (incomplete)"
        where = c.node + (f" +{len(c.seen_by)}" if c.seen_by else "")  # nodes sharing the folder see it too
        text.append(f"    {where:10s} {c.name:16s} {size_text(c.bytes):>9s}  "
                    f"{time.strftime('%H:%M:%S', time.localtime(c.mtime))}{metric}{state}\n",
                    style="" if c.complete else "dim")
    return text


class CheckpointList(Static):
    """Fills itself from the job's nodes, once, through the daemon's connections."""

    def __init__(self, job: Job) -> None:
        super().__init__(Text("  checkpoints: looking on the nodes…", style="italic"), id="checkpoints")
        self.job = job

    def on_mount(self) -> None:
        self.load()

    @work(group="checkpoints", exclusive=True, exit_on_error=False, description="list a job's checkpoints")
    async def load(self) -> None:
        try:
            found = await listed(self.app, self.job)
        except UgroError as exc:  # no node answered, or no daemon: the list's problem, said in it
            self.update(Text(f"  checkpoints: could not list them ({exc})", style="italic"))
            return
        self.update(checkpoint_lines(self.job, found))


class ResumePicker(ReportsWorkerFailures, ModalScreen[int | None]):
    """Which checkpoint a retry starts from: the newest whole one, an earlier one, or none."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="resume.cancel")]
    DEFAULT_CSS = """
    ResumePicker { align: center middle; }
    ResumePicker > Vertical { width: 72; max-width: 95%; height: auto; max-height: 80%; border: round $primary;
        background: $surface; padding: 0 1; }
    """

    def __init__(self, job: Job, whole: list[Checkpoint]) -> None:
        super().__init__()
        self.job = job
        self.whole = whole  # newest first, complete on every node of the last attempt

    def compose(self) -> ComposeResult:
        options = []
        for i, c in enumerate(self.whole):
            metric = "" if c.metric is None else f", {self.job.spec.metric} {c.metric:.4g}"
            options.append(Option(f"{c.name} (step {c.step}{metric})" + ("  newest" if i == 0 else ""), id=str(c.step)))
        options.append(Option("from the start, without a checkpoint", id=str(SCRATCH)))
        with Vertical():
            yield Label(Text(f"retry job {self.job.id} from (enter picks, esc cancels):"))
            yield OptionList(*options, id="resume-list", compact=True)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id or SCRATCH))


async def listed(app, job: Job) -> list[Checkpoint]:
    """The job's checkpoints on its nodes, as the daemon lists them."""
    from ugro_tui.core.daemon import ask

    if app.daemon is None:
        raise UgroError("this view follows no ugro daemon")
    return await asyncio.to_thread(ask.checkpoints, app.daemon, job.id)


async def whole_checkpoints(app, job: Job) -> list[Checkpoint]:
    """The job's checkpoints a retry can resume from, newest first."""
    return resumable(job, await listed(app, job))
