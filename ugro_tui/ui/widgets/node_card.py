"""A card per node: name, user@host and state badge on the border; one line per GPU inside."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Group
from rich.text import Text
from textual.widget import Widget

from ugro_tui.core.telemetry.model import NodeState, NodeStatus
from ugro_tui.ui import render
from ugro_tui.ui.shown import when_shown

STYLE_NAMES = ("idle", "busy", "hot", "warm", "empty", "memory", "good", "warn", "bad", "muted")


class NodeCard(Widget):
    DEFAULT_CSS = """
    NodeCard {
        height: auto;
        border: round $foreground 30%;
        border-title-color: $foreground;
        border-title-style: bold;
        padding: 0 1;
    }
    NodeCard.-has-selection { border: round $primary; }
    NodeCard > .node-card--idle { color: $gpu-idle; }
    NodeCard > .node-card--busy { color: $gpu-busy; }
    NodeCard > .node-card--hot { color: $gpu-hot; text-style: bold; }
    NodeCard > .node-card--warm { color: $warning; }
    NodeCard > .node-card--empty { color: $bar-empty; }
    NodeCard > .node-card--memory { color: $secondary; }
    NodeCard > .node-card--good { color: $success; }
    NodeCard > .node-card--warn { color: $warning; text-style: bold; }
    NodeCard > .node-card--bad { color: $error; text-style: bold; }
    NodeCard > .node-card--muted { color: $foreground-muted; }
    """
    COMPONENT_CLASSES = {f"node-card--{name}" for name in STYLE_NAMES}

    def __init__(self, status: NodeStatus, clock: Callable[[], float] = time.time) -> None:
        super().__init__(id=f"node-{status.name}")
        self.status = status
        self.clock = clock
        self.selected_gpu: int | None = None
        self.shared: dict[int, str] = {}  # GPU index -> who shares it (sharing.card_lines), set by the screen
        self.yielded: dict[int, str] = {}  # GPU index -> "yielded to ollie until 22:40", set by the screen
        self._lines = -1

    @when_shown
    def refresh_status(self) -> None:
        text, style = render.badge(self.status, self.clock())
        try:
            colour = self.get_component_rich_style(f"node-card--{style}", partial=True)
        except KeyError:  # mounted, but its CSS not applied yet (a sample at start-up): drawn once it is
            self.call_after_refresh(self.refresh_status)
            return
        self.border_title = Text.assemble((self.status.name, "bold"), "  ", (self.status.address, "dim"))
        self.border_subtitle = Text(text, style=colour)
        self.set_class(self.selected_gpu is not None, "-has-selection")
        lines = self._line_count()
        self.refresh(layout=lines != self._lines)  # a new layout only when the card's height changes
        self._lines = lines

    def _line_count(self) -> int:
        host = 1 if self.status.host is not None else 0
        slurm = 1 if self.status.slurm is not None else 0
        shared = sum((g.index in self.shared) + (g.index in self.yielded) for g in self.status.gpus)
        return max(1, len(self.status.gpus) + shared + host + slurm + (1 if self.status.error else 0))

    def on_mount(self) -> None:
        # After the new theme's CSS is applied, so the badge takes its colours.
        self.watch(self.app, "theme", lambda _: self.call_after_refresh(self.refresh_status), init=False)
        self.call_after_refresh(self.refresh_status)  # mounted by then (a card has no children to wait for)

    def render(self) -> Group:
        styles = {name: self.get_component_rich_style(f"node-card--{name}", partial=True) for name in STYLE_NAMES}
        live = self.status.state is NodeState.ONLINE
        width = max(20, self.content_size.width or 76)
        model_w = render.model_width(width, (g.name for g in self.status.gpus))  # one column for all its lines
        lines: list[Text] = []
        for gpu in self.status.gpus:
            history = self.status.history.get(gpu.index, ())
            line = render.gpu_line(gpu, history, width, styles, selected=gpu.index == self.selected_gpu,
                                   model_w=model_w)
            if not live:  # last known numbers, not live ones
                line.stylize("dim")
            lines.append(line)
            if gpu.index in self.yielded:
                lines.append(Text(render.fit(f"  ↳ {self.yielded[gpu.index]}", width), style=styles["warn"],
                                  no_wrap=True))
            if gpu.index in self.shared:
                lines.append(Text(render.fit(f"  ↳ {self.shared[gpu.index]}", width), style=styles["memory"],
                                  no_wrap=True))
        if self.status.host is not None:
            line = render.host_line(self.status.host, self.status.cpu_history, width, styles, model_w)
            if not live:
                line.stylize("dim")
            lines.append(line)
        if self.status.slurm is not None:
            lines.append(render.slurm_line(self.status.slurm, width, styles))
        if self.status.error:
            style = styles["bad"] if not self.status.gpus or not live else styles["warn"]
            lines.append(Text(render.fit(self.status.error, width), style=style, no_wrap=True))
        if not lines:
            lines.append(Text("waiting for the first sample…", style=styles["muted"]))
        return Group(*lines)
