"""Metric curves with axes and a legend, drawn by textual-plotext: the Sweep view's trials and the Logs view's loss."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual_plotext import PlotextPlot

COLOURS = ("cyan", "green", "magenta", "yellow", "blue", "red", "orange", "white")
DIM = "gray"


@dataclass(frozen=True)
class Curve:
    label: str
    points: tuple[tuple[int, float], ...]   # (step, value)
    dim: bool = False                       # a pruned trial


class MetricPlot(PlotextPlot):
    """Several (step, value) curves overlaid; redrawn only when what it shows changes."""

    def __init__(self, *, ylabel: str = "loss", legend: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self.ylabel = ylabel
        self.legend = legend
        self._shown: tuple = ()

    def show(self, curves: Sequence[Curve], ylabel: str | None = None) -> None:
        ylabel = ylabel or self.ylabel
        signature = (ylabel, tuple(curves))
        if signature == self._shown:
            return
        self._shown = signature
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.xlabel("step")
        plt.ylabel(ylabel)
        colour = 0
        for curve in curves:
            finite = [(s, v) for s, v in curve.points if v == v and abs(v) != float("inf")]
            if not finite:
                continue
            if curve.dim:
                shade = DIM
            else:
                shade, colour = COLOURS[colour % len(COLOURS)], colour + 1
            steps, values = zip(*finite, strict=True)
            plt.plot(list(steps), list(values), label=curve.label if self.legend else None, color=shade,
                     marker="braille")
        self.refresh()
