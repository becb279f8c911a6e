"""Snapshots of services: the Jobs view with a service in each state, a service's detail with its probes, and the
launch form composing a two-role service."""

from __future__ import annotations

import pytest

from ugro_tui.ui.app import make_app

from ..ui_states import LAB, NOW, service_store, showing, wait_for, with_state


def app_for(store):
    return make_app(LAB, monitor=False, clock=lambda: NOW, state=with_state("online"), store=store)


@pytest.mark.parametrize("size", [(80, 24), (160, 30)])
def test_jobs_view_shows_each_service_state(snap_compare, tmp_path, size) -> None:
    assert snap_compare(app_for(service_store(tmp_path)), terminal_size=size, press=["2"])


def test_service_detail_shows_its_probes(snap_compare, tmp_path) -> None:
    # sorted by id, newest first: job 1 (ready, one restart) is the last row
    assert snap_compare(app_for(service_store(tmp_path)), terminal_size=(110, 40),
                        press=["2", "down", "down", "down", "down", "down", "enter"])


def test_launch_form_composes_a_two_role_service(snap_compare, tmp_path) -> None:
    from ugro_tui.core.jobs.form import FormValues

    values = FormValues(name="llama-rpc", kind="service", script="llama-server",
                        args="-m model.gguf --rpc {workers} --port {port}", nnodes="2",
                        service="health=/health worker_command='rpc-server --host {host} --port {port}'")

    async def fill(pilot) -> None:
        from ugro_tui.ui.screens.launch import LaunchScreen

        pilot.app.action_new_job(values, "new service")
        # Every field's change validated (a busy machine takes more than one pause): the form shows these values.
        await wait_for(pilot, lambda: showing(pilot.app, LaunchScreen)
                       and pilot.app.screen.values() == values and pilot.app.screen.result.spec is not None,
                       20, "the form to show the service")
        from textual.widgets import Input

        for field in pilot.app.screen.query(Input):  # a loaded machine catches the cursor mid-blink otherwise
            field.cursor_blink = False
        await pilot.pause()

    assert snap_compare(app_for(service_store(tmp_path)), terminal_size=(120, 50), run_before=fill)


async def test_f_is_offered_only_on_a_service_and_needs_the_daemon(tmp_path) -> None:
    app = app_for(service_store(tmp_path))
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        screen = app.screen
        assert screen.selected().spec.kind == "torchrun"
        assert screen.check_action("forward", ()) is False  # a training job: no `f` in the footer
        for _ in range(5):
            await pilot.press("down")
        assert screen.selected().id == 1 and screen.check_action("forward", ()) is True
        await pilot.press("f")  # this still app follows no daemon: one line says so (the daemon's forward, and
        # the app's through it, are in tests/functional/test_daemon.py)
        await wait_for(pilot, lambda: any("follows no ugro daemon" in n.message for n in app._notifications), 10,
                       "the one line")
        assert not app.session.forwards
