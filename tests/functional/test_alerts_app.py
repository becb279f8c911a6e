"""The app toasts and rings for failures and alerts that the dispatcher writes, wherever it runs, and lists them."""

from __future__ import annotations

from ugro_tui.core.alerts.journal import Journal
from ugro_tui.core.alerts.rules import Event
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.ui.app import make_app
from ugro_tui.ui.screens.events import EventsScreen

from ..ui_states import wait_for


async def test_a_failure_written_by_another_dispatcher_is_toasted_once_with_a_bell(lab_config, tmp_path) -> None:
    cluster, _ = lab_config
    journal = Journal()
    journal.add([Event("job-failed:1:1", "job-failed", 1.0, "job 1 (old) failed: before the app started", 1)])
    app = make_app(cluster, store=JobStore(tmp_path / "state"))  # no daemon: the journal is read all the same
    rings = []
    app.bell = lambda: rings.append(1)  # type: ignore[method-assign]
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app._events_offset is not None, what="the app to look at the events")
        journal.add([Event("job-succeeded:2:1", "job-succeeded", 2.0, "job 2 (ok) succeeded", 2),
                     Event("job-failed:3:1", "job-failed", 3.0, "job 3 (train) failed: gpu1 exited 1", 3),
                     Event("gpu-hot:gpu1:0:5", "gpu-hot", 5.0, "gpu1 GPU 0 at 88 °C for 30s", node="gpu1")])
        bad = {"job 3 (train) failed: gpu1 exited 1", "gpu1 GPU 0 at 88 °C for 30s"}
        # A toast is a message the app handles after the bell rang: wait for both, never assume one came with it.
        await wait_for(pilot, lambda: len(rings) == 2 and bad <= {n.message for n in app._notifications},
                       what="two bells and their toasts")
        messages = [n.message for n in app._notifications]
        assert not any("before the app started" in m or "succeeded" in m for m in messages)
        await pilot.pause(1.5)
        assert len(rings) == 2  # each once
        app.action_events()
        await wait_for(pilot, lambda: isinstance(app.screen, EventsScreen) and len(app.screen.events) == 4,
                       what="the events list")
        assert app.screen.events[-1].kind == "gpu-hot"
