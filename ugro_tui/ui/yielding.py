"""Yielded GPUs in the app: the line under a yielded card, the header's note, and `Y` in the Nodes view (yield the
selected GPU to the person at the node, or give it back), through the same actions as `ugro yield`."""

from __future__ import annotations

import asyncio
from typing import Any

from ugro_tui.core.jobs.model import JobState
from ugro_tui.core.jobs.yield_actions import unyield_cards, yield_cards
from ugro_tui.core.jobs.yields import Yield, YieldBook, hits, yielded
from ugro_tui.errors import UgroError


def yield_lines(app: Any) -> tuple[dict[str, dict[int, str]], str]:
    """Per node, GPU index -> "yielded to ollie until 22:40"; and the header's "yielded: node0:0 to ollie"."""
    yields = YieldBook(app.store.root).read()
    idle_s = app.cluster.yield_idle_minutes * 60
    lines: dict[str, dict[int, str]] = {}
    for name, status in app.monitor_state.nodes.items():
        for gpu in status.gpus:
            y = yielded(yields, name, gpu.index)
            if y is not None:
                lines.setdefault(name, {})[gpu.index] = y.describe(idle_s)
    note = ", ".join(f"{y.cards()} to {y.to}" for y in yields)
    return lines, f"yielded: {note}" if note else ""


def ask_yield(screen: Any, node: str, index: int) -> None:
    screen.run_worker(_ask(screen, node, index), group="yield", exclusive=True, exit_on_error=False,
                      description="yield a GPU")


async def _ask(screen: Any, node: str, index: int) -> None:
    from ugro_tui.ui.widgets.dialogs import ConfirmScreen

    app = screen.app
    yields = await asyncio.to_thread(YieldBook(app.store.root).read)
    if yielded(yields, node, index) is not None:
        await _do(screen, unyield_cards, app.cluster, app.store, node, (index,))
        return
    jobs = await asyncio.to_thread(app.store.active)
    card = Yield(node, (index,), "", 0.0)
    stopped = [j for j in jobs if j.state is JobState.RUNNING and not j.spec.preemptible
               and hits(j.placement, [card]) is not None]
    desktop = node in {n.name for n in app.cluster.nodes if n.desktop}
    if desktop and not stopped:
        await _do(screen, yield_cards, app.cluster, app.store, node, (index,))
        return
    why = [] if desktop else [f"{node} is not a desktop (desktop = true marks one in {app.cluster.source})."]
    why += [f"job {j.id} ({j.spec.name}) is not preemptible: it is stopped and fails (its retry policy applies)."
            for j in stopped]

    def answered(yes: bool | None) -> None:
        if yes:
            screen.run_worker(_do(screen, yield_cards, app.cluster, app.store, node, (index,), force=True),
                              group="yield", exit_on_error=False, description="yield a GPU")

    app.push_screen(ConfirmScreen(f"Yield {node}:{index} anyway?\n\n" + "\n".join(why)), answered)


async def _do(screen: Any, action: Any, *args: Any, **kwargs: Any) -> None:
    try:
        said = await asyncio.to_thread(action, *args, **kwargs)
    except (UgroError, OSError) as exc:
        screen.notify(str(exc), severity="error", timeout=8)
        return
    screen.notify(said, timeout=8)
    screen.read_shares()
