"""Turning GPU samples into one line of text: bars, sparkline, numbers. Pure, so it is tested without a screen."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text

from ugro_tui.core.telemetry.model import (
    GpuSample,
    HostSample,
    NodeState,
    NodeStatus,
    SlurmAllocation,
    byte_rate,
    short_model,
)

DASH = "–"
SPARKS = "▁▂▃▄▅▆▇█"
HOT_C = 80.0
WARM_C = 70.0


@dataclass(frozen=True)
class GpuLook:
    """How a GPU reads at a glance; the glyph carries the meaning without colour."""

    kind: str   # idle | busy | hot
    glyph: str


def look(gpu: GpuSample) -> GpuLook:
    if gpu.temperature_c is not None and gpu.temperature_c >= HOT_C:
        return GpuLook("hot", "▲")
    if gpu.busy:
        return GpuLook("busy", "●")
    return GpuLook("idle", "○")


def fit(text: str, width: int) -> str:
    """Cut with an ellipsis, never silently."""
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def bar(fraction: float | None, width: int) -> tuple[str, str]:
    """(filled, empty) parts of a bar; a missing value is an empty bar."""
    if width <= 0:
        return "", ""
    if fraction is None:
        return "", "░" * width
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled, "░" * (width - filled)


def sparkline(values: Iterable[float | None], width: int, top: float = 100.0) -> str:
    points = list(values)[-width:] if width > 0 else []
    chars = [" " if v is None else SPARKS[min(len(SPARKS) - 1, int(max(0.0, v) / top * (len(SPARKS) - 1) + 0.5))]
             for v in points]
    return "".join(chars).rjust(width)


def num(value: float | None, unit: str = "", digits: int = 0) -> str:
    return DASH if value is None else f"{value:.{digits}f}{unit}"


def _with_sparkline(out: Text, history: Iterable[float | None], width: int, accent: Style) -> Text:
    """The rest of the line is the history, when four cells or more are left."""
    spark_w = width - out.cell_len - 1
    if spark_w >= 4:
        out.append(" ")
        out.append(sparkline(history, spark_w), accent)
    out.truncate(width, overflow="ellipsis")
    return out


SPARK_MIN = 4  # cells of history a card keeps when a long GPU name takes room (the sparkline's own least)


def model_width(width: int, names: Iterable[str | None] = ()) -> int:
    """The model column of a card `width` cells wide: 12 (9 when narrow), or as long as its longest GPU name
    (`RTX 4000 SFF Ada Generation`) where the room beside the bars and numbers allows, keeping some history."""
    base = 12 if width >= 70 else 9
    longest = max((len(short_model(n)) for n in names), default=0)
    util_w = 10 if width >= 90 else 6
    fixed = 36 + 2 * util_w + 1 + SPARK_MIN  # glyph, index, both bars and the numbers (gpu_line), then history
    return max(base, min(longest, width - fixed))


def gpu_line(gpu: GpuSample, history: Iterable[float | None], width: int, styles: Mapping[str, Style],
             selected: bool = False, model_w: int | None = None) -> Text:
    """One GPU in `width` cells: glyph, index, model, utilization bar, memory bar, temperature, power, sparkline."""
    kind = look(gpu)
    accent = styles.get(kind.kind, Style())
    empty = styles.get("empty", Style())
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append(f"{'▶' if selected else ' '}{kind.glyph} ", accent)
    out.append(f"{gpu.index:<2}")
    model_w = model_w or model_width(width)
    out.append(f"{fit(short_model(gpu.name), model_w):<{model_w}} ")
    util_w = 10 if width >= 90 else 6
    frac = None if gpu.utilization_pct is None else gpu.utilization_pct / 100
    full, rest = bar(frac, util_w)
    out.append(full, accent)
    out.append(rest, empty)
    out.append(f" {num(gpu.utilization_pct, '%'):>4} ")
    mem_frac = None
    if gpu.memory_used_mib is not None and gpu.memory_total_mib:
        mem_frac = gpu.memory_used_mib / gpu.memory_total_mib
    full, rest = bar(mem_frac, util_w)
    out.append(full, styles.get("memory", accent))
    out.append(rest, empty)
    used = None if gpu.memory_used_mib is None else gpu.memory_used_mib / 1024
    total = None if gpu.memory_total_mib is None else gpu.memory_total_mib / 1024
    out.append(f" {num(used, '', 1):>4}/{num(total, 'G', 0):<3} ")
    temp_style = styles.get("hot") if kind.kind == "hot" else (
        styles.get("warm") if (gpu.temperature_c or 0) >= WARM_C else None)
    out.append(f"{num(gpu.temperature_c, '°C'):>5}", temp_style or Style())
    out.append(f" {num(gpu.power_w):>3}/{num(gpu.power_limit_w, 'W'):<4}")
    return _with_sparkline(out, history, width, accent)


CPU_BUSY = 90.0


def host_line(host: HostSample, history: Iterable[float | None], width: int, styles: Mapping[str, Style],
              model_w: int | None = None) -> Text:
    """The node as a machine, under its GPUs and in the same columns: CPU bar, RAM bar, network, CPU sparkline."""
    accent = styles.get("warn" if (host.cpu_pct or 0) >= CPU_BUSY else "busy", Style())
    empty = styles.get("empty", Style())
    muted = styles.get("muted", Style())
    model_w = model_w or model_width(width)
    util_w = 10 if width >= 90 else 6
    out = Text(no_wrap=True, overflow="ellipsis")
    cores = f" ×{host.cores}" if host.cores else ""
    out.append(f"   {fit('CPU' + cores, 2 + model_w):<{2 + model_w}} ", muted)
    full, rest = bar(None if host.cpu_pct is None else host.cpu_pct / 100, util_w)
    out.append(full, accent)
    out.append(rest, empty)
    out.append(f" {num(host.cpu_pct, '%'):>4} ")
    full, rest = bar(None if host.mem_pct is None else host.mem_pct / 100, util_w)
    out.append(full, styles.get("memory", accent))
    out.append(rest, empty)
    used = None if host.mem_used_mib is None else host.mem_used_mib / 1024
    total = None if host.mem_total_mib is None else host.mem_total_mib / 1024
    out.append(f" {num(used, '', 1):>4}/{num(total, 'G', 0):<3} ")
    out.append(f"↓{byte_rate(host.net_rx_bps):>4} ↑{byte_rate(host.net_tx_bps):>4}")
    if host.net_loopback_only:
        out.append(" lo", muted)
    if width - out.cell_len >= 10 and host.load1 is not None:
        out.append(f" load {host.load1:.1f}", muted)
    return _with_sparkline(out, history, width, accent)


BADGES = {
    NodeState.CONNECTING: ("…", "connecting"),
    NodeState.ONLINE: ("●", "online"),
    NodeState.STALE: ("◌", "stale"),
    NodeState.OFFLINE: ("✕", "offline"),
    NodeState.AUTH_FAILED: ("⚠", "auth failed"),
    NodeState.HOST_KEY_MISMATCH: ("⚠", "host key changed"),
    NodeState.UNKNOWN_HOST_KEY: ("⚠", "unknown host key"),
}


def slurm_line(alloc: SlurmAllocation, width: int, styles: dict[str, Style]) -> Text:
    """A Slurm node's allocation: its state, GPUs held by jobs out of its GPUs, partitions."""
    used = styles["busy"] if alloc.gpus_used else styles["idle"]
    line = Text.assemble(("slurm ", styles["muted"]), (f"{alloc.state:<9} ", styles["muted"]),
                         "GPUs ", (f"{alloc.gpus_used}/{alloc.gpus}", used), " allocated",
                         (f"  {','.join(alloc.partitions)}" if alloc.partitions else "", styles["muted"]),
                         ("" if alloc.live else "  (allocation only)", styles["muted"]))
    line.truncate(width, overflow="ellipsis")
    line.no_wrap = True
    return line


def badge(node: NodeStatus, now: float) -> tuple[str, str]:
    """(text, style name) of a node's state badge, with retry countdown or sample age."""
    if node.source == "slurm" and node.slurm is not None:  # a Slurm node known from sinfo only
        bad = any(w in node.slurm.state for w in ("down", "drain", "fail", "inval", "not_responding"))
        return f"{'⚠' if bad else '●'} {node.slurm.state}", "bad" if bad else "good"
    if node.state is NodeState.ONLINE and node.error and not node.gpus:
        return "⚠ no driver", "bad"
    glyph, words = BADGES[node.state]
    text = f"{glyph} {words}"
    if node.state is NodeState.OFFLINE and node.next_retry_at is not None:
        text += f" · retry {max(0, round(node.next_retry_at - now))}s"
    elif node.state in (NodeState.ONLINE, NodeState.STALE) and node.received_at is not None:
        text += f" · {age(now - node.received_at)}"
    style = {NodeState.ONLINE: "good", NodeState.CONNECTING: "muted", NodeState.STALE: "warn"}.get(node.state, "bad")
    return text, style


def age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"
