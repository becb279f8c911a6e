"""`K` in the Nodes view: pick GPU processes of the node (space), pick the signal, then confirm and send."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, RadioButton, RadioSet, SelectionList
from textual.widgets.selection_list import Selection

from ugro_tui.core.signals import Target
from ugro_tui.ui.render import fit
from ugro_tui.ui.workers import ReportsWorkerFailures

CHOICES = ("TERM", "INT", "KILL")


class SignalScreen(ReportsWorkerFailures, ModalScreen[tuple[list[Target], str] | None]):
    """Answers (targets, signal), or None when left with escape."""

    BINDINGS = [
        Binding("enter", "choose", "Send…", id="signal.send", priority=True),
        Binding("t", "pick('TERM')", "TERM", id="signal.term"),
        Binding("i", "pick('INT')", "INT", id="signal.int"),
        Binding("x", "pick('KILL')", "KILL", id="signal.kill"),
        Binding("escape", "dismiss(None)", "Cancel", id="signal.cancel"),
    ]
    DEFAULT_CSS = """
    SignalScreen { align: center middle; }
    SignalScreen > Vertical { width: 90%; max-width: 110; height: auto; max-height: 90%; border: round $error;
                              background: $surface; padding: 0 1; }
    SignalScreen SelectionList { height: auto; max-height: 10; }
    SignalScreen RadioSet { layout: horizontal; height: auto; width: auto; }
    SignalScreen Label { color: $foreground-muted; }
    """

    def __init__(self, node: str, targets: list[Target], preselect: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.node = node
        self.targets = targets
        free = [t.pid for t in targets if t.ugro_job is None]  # a job's ranks are stopped through the job
        self.preselect = (set(preselect) & set(free)) or set(free[:1])

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"signal GPU processes on {self.node}"
            yield Label("space: select · t/i/x: TERM/INT/KILL · enter: confirm")
            job_w = 8 if any(t.ugro_job is not None for t in self.targets) else 0
            yield SelectionList[int](*(
                Selection(Text(fit(f"{t.pid:>7}  {t.user or '?':<10} GPU {','.join(map(str, t.gpus)):<4} "
                                   f"{f'job {t.ugro_job}' if t.ugro_job is not None else '':<{job_w}}"
                                   f"{t.command or '?'}", 100)),
                          t.pid, t.pid in self.preselect, disabled=t.ugro_job is not None)
                for t in self.targets), id="targets")
            with RadioSet(id="signal"):
                for name in CHOICES:
                    yield RadioButton(name, value=name == "TERM", id=f"sig-{name}")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()

    def action_pick(self, name: str) -> None:
        self.query_one(f"#sig-{name}", RadioButton).value = True

    def chosen_signal(self) -> str:
        pressed = self.query_one(RadioSet).pressed_button
        return str(pressed.label) if pressed is not None else "TERM"

    def action_choose(self) -> None:
        pids = set(self.query_one(SelectionList).selected)
        chosen = [t for t in self.targets if t.pid in pids]
        if not chosen:
            self.notify("select a process with space first", timeout=3)
            return
        self.dismiss((chosen, self.chosen_signal()))
