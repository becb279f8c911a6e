"""The selected GPU's processes: pid, user, GPU memory, command."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

from ugro_tui.core.telemetry.model import GpuSample
from ugro_tui.ui.render import DASH, num

COLUMNS = ("PID", "USER", "GPU MEM", "COMMAND")


class ProcessTable(DataTable):
    DEFAULT_CSS = """
    ProcessTable { height: auto; max-height: 8; border-top: solid $panel-lighten-2; }
    """

    def on_mount(self) -> None:
        self.cursor_type = "none"
        self.show(None, None)

    def show(self, node: str | None, gpu: GpuSample | None) -> None:
        if gpu is None:
            rows: list[tuple[str, ...]] = []
            self.border_title = "processes"
        else:
            self.border_title = f"processes on {node} GPU {gpu.index}"
            rows = [(str(p.pid), p.user or DASH, num(p.used_mib, " MiB"), p.command or DASH) for p in gpu.processes]
            rows = rows or [(DASH, DASH, DASH, "no processes")]
        # Widths from these rows alone, set explicitly: DataTable's own measuring depends on what it drew before.
        self.clear(columns=True)
        for i, label in enumerate(COLUMNS):
            self.add_column(label, width=max([len(label), *(cell_len(r[i]) for r in rows)]))
        for row in rows:
            self.add_row(*(Text(cell) for cell in row))  # Text: a str cell is markup, and commands have brackets
