"""The app as a client of the daemon: live gauges from what the daemon pushes, no SSH connection of its own,
and a daemon killed under it replaced with one reconnect line."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ugro_tui.config import load_cluster
from ugro_tui.core.telemetry.model import NodeState
from ugro_tui.sim.loopback import LoopbackCluster
from ugro_tui.ui.app import make_app

from ..conftest import daemon_lab
from ..helpers import ugro
from ..ui_states import wait_for
from .test_daemon import status
from .test_one_connection import connections

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def config(lab: LoopbackCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with daemon_lab(lab, tmp_path, monkeypatch) as path:
        yield path


async def test_the_app_follows_a_warm_daemon_without_a_connection_of_its_own_and_survives_its_kill(
        config: Path) -> None:
    assert ugro(config, "daemon", "start").returncode == 0
    first = status(config)
    cluster = load_cluster(config)
    from ..helpers import wait

    wait(lambda: all(n == 1 for n in status(config)["connections"].values()), 30, "the daemon's connections")
    app = make_app(cluster)
    assert app.daemon is not None and app.session.dispatch_note == f"dispatch: daemon pid {first['pid']}"
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: all(s.state is NodeState.ONLINE for s in app.monitor_state.nodes.values()),
                       30, "every node online, as the daemon pushes it")
        assert any(s.history for s in app.monitor_state.nodes.values())  # the daemon's history came along
        assert connections(cluster, os.getpid()) == {"node0": 0, "node1": 0, "node2": 0}
        os.kill(first["pid"], signal.SIGKILL)
        await wait_for(pilot, lambda: app.session.dispatch_note.startswith("dispatch: daemon pid")
                       and str(first["pid"]) not in app.session.dispatch_note, 40, "a new daemon, followed")
        # The toast is a message the app handles after the note is set: wait for it, never assume it came.
        await wait_for(pilot, lambda: any("reconnected" in n.message for n in app._notifications), 10,
                       "the reconnected toast")
        messages = [n.message for n in app._notifications]
        assert any("went away" in m for m in messages) and any("reconnected" in m for m in messages), messages
        assert connections(cluster, os.getpid()) == {"node0": 0, "node1": 0, "node2": 0}
        assert app.failures == []
