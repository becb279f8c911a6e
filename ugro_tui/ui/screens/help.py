"""`?`: every key of the app and of the current view."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from ugro_tui.ui.workers import ReportsWorkerFailures


class HelpScreen(ReportsWorkerFailures, ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 64; max-width: 95%; height: auto; max-height: 90%;
        border: round $primary; background: $surface; padding: 0 1; }
    """

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("[b]ugro keys[/b]  (remap by id under \\[keys] in cluster.toml)")
            table: DataTable[str] = DataTable(cursor_type="none", show_cursor=False)
            table.add_columns("KEY", "DOES", "ID")
            for row in self.rows:
                table.add_row(*row)
            yield table
