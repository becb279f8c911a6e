"""Snapshot tests of every screen and state (SVGs under __snapshots__; each was looked at before it was accepted)."""

from __future__ import annotations

import pytest

from ugro_tui.core.jobs.store import JobStore
from ugro_tui.ui.app import make_app

from ..ui_states import (
    LAB,
    NOW,
    doctor_report,
    gpu,
    job_store,
    job_with_logs,
    logs_shown,
    online,
    press_then,
    sweep_store,
    wait_for,
    with_host,
    with_state,
)


def app_for(kind: str = "online", store=None):
    return make_app(LAB, monitor=False, clock=lambda: NOW, state=with_state(kind), store=store)


@pytest.mark.parametrize("kind", ["online", "offline", "stale", "auth-failed", "no-driver", "missing-values"])
def test_node_states_80x24(snap_compare, kind: str) -> None:
    assert snap_compare(app_for(kind), terminal_size=(80, 24))


def test_large_250x70(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(250, 70))


@pytest.mark.parametrize("size", [(175, 45), (240, 60)])
def test_wide_terminals_flow_cards_into_columns_and_show_gpu_names_in_full(snap_compare, size) -> None:
    """Two columns from 160 columns, three from 240; a long model name in full where the card has room."""
    state = online()
    state.nodes["gpu2"].apply_sample({"t": NOW - 1, "source": "nvml", "gpus": [
        gpu(0, "NVIDIA RTX 4000 SFF Ada Generation", 12, 3000, 20475, 45, 40.0, 70.0)]}, NOW - 1)
    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=with_host(state))
    assert snap_compare(app, terminal_size=size)


@pytest.mark.parametrize("size", [(80, 24), (250, 70)])
def test_node_cards_with_host_metrics(snap_compare, size) -> None:
    assert snap_compare(app_for("host"), terminal_size=size)


@pytest.mark.parametrize("theme", ["ugro-dark", "ugro-light", "ugro-high-contrast"])
def test_themes(snap_compare, theme: str) -> None:
    async def pick(pilot) -> None:
        pilot.app.theme = theme

    assert snap_compare(app_for(), terminal_size=(100, 24), run_before=pick)


def test_signal_dialog(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=press_then(["K", "x"]))


def test_signal_dialog_offers_no_job_rank(snap_compare) -> None:
    """A job's rank is listed, greyed and not selectable; the stray notebook beside it is preselected."""
    from ..ui_states import gpu

    state = with_state("online")
    procs = [(3101, "ugro", "python -u train_tiny.py --steps 400", 1500),
             (3377, "ugro", "jupyter-lab --no-browser", 900)]
    sample = gpu(0, "NVIDIA GeForce RTX 5070 Ti", 97, 2700, 12227, 74, 251.0, 300.0, 70, procs=procs)
    sample["processes"][0]["ugro_job"] = 12
    state.nodes["gpu-master"].apply_sample({"t": NOW - 1, "source": "nvml", "gpus": [sample]}, NOW - 1)
    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=state)
    assert snap_compare(app, terminal_size=(80, 24), run_before=press_then(["K"]))


def test_signal_confirm(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=press_then(["K", "enter"]))


def test_read_only_hides_every_change(snap_compare, tmp_path) -> None:
    import dataclasses

    app = make_app(dataclasses.replace(LAB, read_only=True), monitor=False, clock=lambda: NOW,
                   state=with_state("online"), store=job_store(tmp_path))
    assert snap_compare(app, terminal_size=(100, 24), press=["2"])


def test_users_summary(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(80, 24), press=["u"])


def test_filter_by_user(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=press_then(["slash", *"user:ob", "enter"]))


def test_events_list(snap_compare, monkeypatch) -> None:
    import time

    from ugro_tui.core.alerts.journal import Journal
    from ugro_tui.core.alerts.rules import Event

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    Journal().add([
        Event("job-started:6:1", "job-started", NOW - 1800, "job 6 (sweep-lr5) started on gpu-master, gpu1, gpu2", 6,
              "sweep-lr5"),
        Event("node-offline:gpu2:1", "node-offline", NOW - 900, "gpu2 is offline: connection refused", node="gpu2"),
        Event("job-failed:2:1", "job-failed", NOW - 900, "job 2 (sweep-lr1) failed: gpu1 exited 1", 2, "sweep-lr1"),
        Event("gpu-hot:gpu-master:0:1", "gpu-hot", NOW - 60, "gpu-master GPU 0 at 86 °C for 30s (alert at 85 °C)",
              node="gpu-master"),
    ])

    async def open_events(pilot) -> None:
        pilot.app.action_events()
        await wait_for(pilot, lambda: len(getattr(pilot.app.screen, "events", ())) == 4, what="the events")

    try:
        assert snap_compare(app_for(), terminal_size=(100, 24), run_before=open_events)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_help_screen(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(80, 24), press=["question_mark"])


def test_filter(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=press_then(["slash", *"worker"]))


def test_selected_gpu_processes(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(80, 24), press=["j"])


def test_jobs_empty_state(snap_compare, tmp_path) -> None:
    assert snap_compare(app_for(store=JobStore(tmp_path)), terminal_size=(80, 24), press=["2"])


@pytest.mark.parametrize("size", [(80, 24), (160, 40)])
def test_jobs_mixed(snap_compare, tmp_path, size) -> None:
    assert snap_compare(app_for(store=job_store(tmp_path)), terminal_size=size, press=["2"])


def test_jobs_thousand(snap_compare, tmp_path) -> None:
    assert snap_compare(app_for(store=job_store(tmp_path, 1000)), terminal_size=(120, 30), press=["2"])


def test_job_detail(snap_compare, tmp_path) -> None:
    assert snap_compare(app_for(store=job_store(tmp_path)), terminal_size=(100, 30), press=["2", "down", "enter"])


def test_running_job_detail_shows_its_nodes_cpu(snap_compare, tmp_path) -> None:
    assert snap_compare(app_for("host", store=job_store(tmp_path)), terminal_size=(110, 30),
                        press=["2", "down", "down", "enter"])


def test_cancel_confirm(snap_compare, tmp_path) -> None:
    assert snap_compare(app_for(store=job_store(tmp_path)), terminal_size=(100, 30), press=["2", "ctrl+d"])


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
def test_logs_view(snap_compare, tmp_path, size) -> None:
    store, _ = job_with_logs(tmp_path)

    async def open_logs(pilot) -> None:
        await pilot.press("2", "l")
        await wait_for(pilot, lambda: logs_shown(pilot.app), what="the panes to fill")

    assert snap_compare(app_for(store=store), terminal_size=size, run_before=open_logs)


def test_logs_view_without_a_job(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(80, 24), press=["3"])


def test_doctor_not_run_yet(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(80, 24), press=["4"])


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
def test_doctor_report(snap_compare, size) -> None:
    app = app_for()
    app.session.doctor_report = doctor_report()
    assert snap_compare(app, terminal_size=size, press=["4"])


def test_doctor_problems_only(snap_compare) -> None:
    app = app_for()
    app.session.doctor_report = doctor_report()
    assert snap_compare(app, terminal_size=(80, 24), press=["4", "p", "down"])


@pytest.mark.parametrize("size", [(80, 24), (160, 45)])
def test_node_editor_add(snap_compare, size) -> None:
    assert snap_compare(app_for(), terminal_size=size, run_before=press_then(["N", *"gpu1", "tab", *"a;b"]))


def test_node_editor_edit(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=press_then(["j", "E"]))


@pytest.mark.parametrize("size", [(80, 24), (160, 45)])
def test_sweep_view(snap_compare, tmp_path, size) -> None:
    from ugro_tui.ui.screens.sweep import SweepScreen

    async def open_sweep(pilot) -> None:
        await pilot.press("2")
        await wait_for(pilot, lambda: pilot.app.session.jobs_snapshot is not None, what="the jobs")
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SweepScreen) and pilot.app.screen.sweep is not None,
                       what="the sweep view")
        await pilot.pause()

    assert snap_compare(app_for(store=sweep_store(tmp_path)), terminal_size=size, run_before=open_sweep)


def test_jobs_of_a_sweep_keep_their_names_brackets(snap_compare, tmp_path) -> None:
    """A trial is named `lr-search[lr=...]`: shown as text, not read as markup that swallows the brackets."""
    assert snap_compare(app_for(store=sweep_store(tmp_path)), terminal_size=(100, 24), press=["2"])
