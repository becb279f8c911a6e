"""Plain-text tables for the headless verbs."""

from __future__ import annotations

from collections.abc import Sequence

DASH = "–"  # how every missing value is shown


def render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = []
    for row in (headers, *rows):
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=False)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def fmt(value: float | int | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return DASH
    return f"{value:.{digits}f}{unit}"
