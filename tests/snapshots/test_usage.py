"""The Usage view (`5`): a week of the ledger stacked by user, by node, as cost, and an empty ledger."""

from __future__ import annotations

import dataclasses

import pytest

from ugro_tui.ui.app import make_app

from ..ui_states import LAB, NOW, job_store, ledger_book, wait_for, with_state


def shown(keys: list[str]):
    async def run(pilot) -> None:
        await pilot.press("5")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "book", None) is not None, what="the ledger read")
        await pilot.press(*keys)
        await pilot.pause()
        assert not pilot.app.failures, pilot.app.failures

    return run


@pytest.mark.parametrize(("keys", "size"), [([], (80, 24)), (["b", "c"], (120, 32)), (["s"], (120, 32))])
def test_usage_view(snap_compare, tmp_path, keys: list[str], size: tuple[int, int]) -> None:
    ledger_book()
    priced = dataclasses.replace(LAB, energy_price=0.32, currency="EUR")
    app = make_app(priced, monitor=False, clock=lambda: NOW, state=with_state("online"), store=job_store(tmp_path))
    assert snap_compare(app, terminal_size=size, run_before=shown(keys))


def test_usage_view_with_nothing_recorded(snap_compare, tmp_path) -> None:
    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=with_state("online"), store=job_store(tmp_path))
    assert snap_compare(app, terminal_size=(80, 24), run_before=shown([]))
