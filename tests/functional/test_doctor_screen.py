"""The Doctor view on the real loopback cluster: r runs every check, rows arrive, the fix follows the cursor."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from ugro_tui.config import load_cluster
from ugro_tui.core.daemon.client import Client
from ugro_tui.sim.loopback import LoopbackCluster
from ugro_tui.ui.app import UgroApp, make_app
from ugro_tui.ui.screens.doctor import DoctorScreen

from ..conftest import daemon_on


async def test_r_runs_the_doctor_and_shows_each_check(lab: LoopbackCluster, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    text = lab.cluster_toml(sim=[(["RTX 4070"], "nvml")] * 3)
    # node2 points at a python that does not exist: its row must say so, with the setting to fix.
    text = text.replace(f'python = "{sys.executable}"\nworkdir = "{lab.root / "work" / "node2"}"',
                        f'python = "/nonexistent/python3"\nworkdir = "{lab.root / "work" / "node2"}"')
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    with daemon_on(path, monkeypatch):  # the app asks the daemon, over its connections
        await doctor_view(make_app(load_cluster(path), monitor=False, daemon=Client()))


async def doctor_view(app: UgroApp) -> None:
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("4", "r")
        screen = app.screen
        assert isinstance(screen, DoctorScreen)
        for _ in range(300):
            await asyncio.sleep(0.1)
            if not screen.running:
                break
        assert not screen.running and app.session.doctor_report is not None
        checks = {(c.node, c.name): c for c in app.session.doctor_report.checks}
        assert checks[("node0", "rendezvous")].status == "ok"
        assert checks[("node2", "python")].status == "fail"
        assert "/nonexistent/python3" in checks[("node2", "python")].hint
        table = screen.query_one(DataTable)
        assert table.row_count == len(app.session.doctor_report.checks)
        await pilot.press("p")  # problems only: the python failure is among them
        shown = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
        assert "python" in shown and "ssh" not in shown
        row = shown.index("python")
        table.move_cursor(row=row)
        await pilot.pause()
        fix = str(screen.query_one("#fix", Static).render())
        assert "node2 · python" in fix and "fix:" in fix
