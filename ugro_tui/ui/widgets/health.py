"""The top line: cluster name and health (nodes healthy/total, GPUs busy/total, memory, mean utilization)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ugro_tui.core.telemetry.model import Health
from ugro_tui.ui.render import num


class HealthBar(Static):
    DEFAULT_CSS = """
    HealthBar { height: 1; background: $panel; color: $foreground; padding: 0 1; }
    """

    def show_app(self) -> None:
        """The running app's cluster, its health now and who dispatches."""
        app = self.app
        note = app.session.dispatch_note  # type: ignore[attr-defined]
        if app.session.store_recovered:  # type: ignore[attr-defined]
            note = f"{note}  STORE RECOVERED (ugro queue --ack-recovery)"
        yielded = getattr(app, "yields_note", "")
        if yielded:
            note = f"{yielded}  {note}"
        if app.cluster.read_only:  # type: ignore[attr-defined]
            note = f"READ-ONLY  {note}"
        self.show(app.cluster.name, app.monitor_state.health(), note)  # type: ignore[attr-defined]

    def show(self, cluster: str, health: Health, dispatcher: str = "") -> None:
        util = num(health.utilization_pct, "%")
        text = Text.assemble(
            ("ugro ", "bold"), (cluster, "bold"), "  ",
            f"nodes {health.nodes_healthy}/{health.nodes_total}", " · ",
            f"GPUs {health.gpus_busy}/{health.gpus_total} busy", " · ",
            f"mem {health.memory_used_gb:.1f}/{health.memory_total_gb:.1f} GB", " · ",
            f"util {util}", (f"  {dispatcher}" if dispatcher else ""),
            no_wrap=True, overflow="ellipsis",
        )
        self.update(text)
