"""The Jobs view at a size: a page of rows made at a time, filter and sort over every job, and a change in the store
redraws the cells that read differently without rebuilding the table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from textual.widgets import DataTable

from ugro_tui.core.jobs.model import JobSpec
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.ui.app import make_app
from ugro_tui.ui.screens.jobs import PAGE, JobsScreen

from ..ui_states import LAB, NOW, online, wait_for


def many(root: Path, count: int) -> JobStore:
    store = JobStore(root)
    names = ["needle", *(f"trial-{i}" for i in range(2, count + 1))]  # the oldest job has a name of its own
    store.submit([JobSpec(name, ("x.py",)) for name in names], now=NOW - 60)
    return store


async def test_a_change_redraws_its_cells_and_keeps_the_rows(tmp_path: Path) -> None:
    store = many(tmp_path / "jobs", 3 * PAGE)
    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=online(), store=store)
    async with app.run_test(headless=True, size=(160, 40)) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen) and app.screen.query_one(DataTable).row_count,
                       what="the rows")
        screen = app.screen
        table = screen.query_one(DataTable)
        assert table.row_count == PAGE  # a page, not 360 rows
        keys = [row.key for row in table.ordered_rows]
        newest = 3 * PAGE
        store.update_active({newest: lambda j: dataclasses.replace(j, reason="needs 9 GPUs; 0 such nodes free now")})
        screen.reload()
        await wait_for(pilot, lambda: "needs 9 GPUs" in str(table.get_row_at(0)[-1]), what="the new reason")
        assert [row.key for row in table.ordered_rows] == keys  # the same rows: only that cell was redrawn
        reason = table.ordered_columns[-1]
        assert reason.content_width >= len("needs 9 GPUs; 0 such nodes free now")  # widened to show it whole
        # Filter and sort see every job, not the page made so far.
        await pilot.press("slash", *"needle")
        await wait_for(pilot, lambda: table.row_count and str(table.get_row_at(0)[1]) == "needle",
                       what="the oldest job, found by the filter")
        assert table.row_count == 1
        await pilot.press("escape")
        await pilot.press("down", "down")
        assert int(str(table.get_row_at(table.cursor_row)[0])) == newest - 2
        assert screen.selected().id == newest - 2
