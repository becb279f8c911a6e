"""Dialogs and form parts shared by several screens: the confirm dialog, the leave-asking helper, a form field."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from ugro_tui.ui.workers import ReportsWorkerFailures


class ConfirmScreen(ReportsWorkerFailures, ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "Yes", id="confirm.yes"),
                Binding("n,escape", "answer(False)", "No", id="confirm.no")]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Static { width: auto; max-width: 90%; border: round $error; background: $surface; padding: 1 2; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        yield Static(f"{escape(self.question)}\n\n[b]y[/b] yes   [b]n[/b] no")  # a job's name may hold [brackets]

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def leave_asking(screen: Screen, edited: bool, question: str) -> None:
    """Close a form at once, or after a yes when the user typed something into it."""
    if not edited:
        screen.dismiss()
        return

    def answered(yes: bool | None) -> None:
        if yes:
            screen.dismiss()

    screen.app.push_screen(ConfirmScreen(question), answered)


class Field(Horizontal):
    """A labelled row of a form: the label, then the input."""

    DEFAULT_CSS = """
    Field { height: auto; }
    Field > Label { width: 16; padding: 0 1 0 0; color: $foreground-muted; }
    Field > Input, Field > Select, Field > SelectionList, Field > TextArea { width: 1fr; }
    """
