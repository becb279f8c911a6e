"""The selected GPU's processes: pid, user, GPU memory, command."""

from __future__ import annotations

from textual.widgets import DataTable

from ugro_tui.core.telemetry.model import GpuSample
from ugro_tui.ui.render import DASH, num


class ProcessTable(DataTable):
    DEFAULT_CSS = """
    ProcessTable { height: auto; max-height: 8; border-top: solid $panel-lighten-2; }
    """

    def on_mount(self) -> None:
        self.cursor_type = "none"
        self.add_columns("PID", "USER", "GPU MEM", "COMMAND")

    def show(self, node: str | None, gpu: GpuSample | None) -> None:
        self.clear()
        if gpu is None:
            self.border_title = "processes"
            return
        self.border_title = f"processes on {node} GPU {gpu.index}"
        for p in gpu.processes:
            self.add_row(str(p.pid), p.user or DASH, num(p.used_mib, " MiB"), p.command or DASH)
        if not gpu.processes:
            self.add_row(DASH, DASH, DASH, "no processes")
