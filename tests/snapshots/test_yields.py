"""Snapshots of yielded GPUs: the node card's line and the header's note for a desktop's card yielded to ob's
process, and `Y` on a node that is no desktop asking before it yields."""

from __future__ import annotations

import dataclasses

from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.jobs.yields import Yield, YieldBook, take
from ugro_tui.ui.app import make_app

from ..ui_states import LAB, NOW, online, press_then, wait_for

DESKTOP = dataclasses.replace(LAB, nodes=tuple(dataclasses.replace(n, desktop=n.name == "gpu1") for n in LAB.nodes))


def yielded_store(root) -> JobStore:
    store = JobStore(root)
    YieldBook(store.root).change(lambda ys: take(ys, Yield("gpu1", (0,), "ob", NOW - 60, auto=True,
                                                           why="ob's torchrun took 4.8 GB on gpu1:0")))
    return store


def test_a_desktops_card_yielded_to_its_owner(snap_compare, tmp_path) -> None:
    app = make_app(DESKTOP, monitor=False, clock=lambda: NOW, state=online(DESKTOP), store=yielded_store(tmp_path))

    async def shown(pilot) -> None:
        await wait_for(pilot, lambda: getattr(pilot.app, "yields_note", ""), what="the yields read")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=press_then([], shown))


def test_y_on_a_node_that_is_no_desktop_asks_first(snap_compare, tmp_path) -> None:
    app = make_app(DESKTOP, monitor=False, clock=lambda: NOW, state=online(DESKTOP), store=JobStore(tmp_path))

    async def asked(pilot) -> None:
        await wait_for(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmScreen", what="the confirm")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=press_then(["Y"], asked))
