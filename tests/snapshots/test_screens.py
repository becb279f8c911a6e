"""Snapshot tests of every screen and state (SVGs under __snapshots__; each was looked at before it was accepted)."""

from __future__ import annotations

import pytest

from ugro_tui.ui.app import make_app

from ..ui_states import LAB, NOW, with_state


def app_for(kind: str = "online"):
    return make_app(LAB, monitor=False, clock=lambda: NOW, state=with_state(kind))


@pytest.mark.parametrize("kind", ["online", "offline", "stale", "auth-failed", "no-driver", "missing-values"])
def test_node_states_80x24(snap_compare, kind: str) -> None:
    assert snap_compare(app_for(kind), terminal_size=(80, 24))


def test_large_250x70(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(250, 70))


@pytest.mark.parametrize("theme", ["ugro-dark", "ugro-light", "ugro-high-contrast"])
def test_themes(snap_compare, theme: str) -> None:
    async def pick(pilot) -> None:
        pilot.app.theme = theme

    assert snap_compare(app_for(), terminal_size=(100, 24), run_before=pick)


def test_help_screen(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(80, 24), press=["question_mark"])


def test_filter(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(80, 24), press=["slash", *"worker"])


def test_selected_gpu_processes(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(80, 24), press=["j"])


def test_jobs_empty_state(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(80, 24), press=["2"])
