"""Metric curves with axes and a legend, drawn by textual-plotext: the Sweep view's trials and the Logs view's loss."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual_plotext import PlotextPlot

COLOURS = ("cyan", "green", "magenta", "yellow", "blue", "red")  # ANSI names: the same in plotext and Rich
DIM = "gray"
LEGEND_FROM = 12  # rows: a smaller plot leaves the legend out (the Sweep view colours its table instead)


@dataclass(frozen=True)
class Curve:
    label: str
    points: tuple[tuple[float, float], ...]   # (step, value), or (minutes, value)
    dim: bool = False                       # a pruned trial


def colours(curves: Sequence[Curve]) -> list[str]:
    """Each curve's colour, in order: dimmed ones grey, the others cycling through COLOURS."""
    out, at = [], 0
    for curve in curves:
        if curve.dim:
            out.append(DIM)
        else:
            out.append(COLOURS[at % len(COLOURS)])
            at += 1
    return out


class MetricPlot(PlotextPlot):
    """Several (step, value) curves overlaid; redrawn only when what it shows changes."""

    def __init__(self, *, ylabel: str = "loss", legend: bool = True, labels: bool = True, id: str | None = None,
                 xlabel: str = "step") -> None:
        super().__init__(id=id)
        self.ylabel = ylabel
        self.xlabel = xlabel
        self.legend = legend
        self.labels = labels  # the axes' names, on a row of their own
        self._shown: tuple = ()

    def show(self, curves: Sequence[Curve], ylabel: str | None = None) -> None:
        ylabel = ylabel or self.ylabel
        signature = (ylabel, tuple(curves), self.size.height)
        if signature == self._shown:
            return
        self._shown = signature
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if self.labels:
            plt.xlabel(self.xlabel)
            plt.ylabel(ylabel)
        legend = self.legend and self.size.height >= LEGEND_FROM
        for curve, shade in zip(curves, colours(curves), strict=True):
            finite = [(s, v) for s, v in curve.points if v == v and abs(v) != float("inf")]
            if not finite:
                continue
            steps, values = zip(*finite, strict=True)
            plt.plot(list(steps), list(values), label=curve.label if legend else None, color=shade, marker="braille")
        self.refresh()

    def on_resize(self) -> None:
        if self._shown:  # the legend comes or goes with the height
            ylabel, curves, _ = self._shown
            self._shown = ()
            self.show(curves, ylabel)
