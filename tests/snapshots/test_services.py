"""Snapshots of services: the Jobs view with a service in each state, a service's detail with its probes, and the
launch form composing a two-role service."""

from __future__ import annotations

import pytest

from ugro_tui.ui.app import make_app

from ..ui_states import LAB, NOW, service_store, with_state


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
        pilot.app.action_new_job(values, "new service")
        await pilot.pause()

    assert snap_compare(app_for(service_store(tmp_path)), terminal_size=(120, 50), run_before=fill)
