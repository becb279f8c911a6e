"""The app never freezes on the job store, and every worker's failure reaches its one handler."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

from textual.screen import Screen

import ugro_tui.ui
from ugro_tui.core.jobs.model import JobSpec
from ugro_tui.core.jobs.store import JobStore, StoreError
from ugro_tui.ui.app import make_app
from ugro_tui.ui.screens.jobs import JobsScreen
from ugro_tui.ui.screens.nodes import NodesScreen
from ugro_tui.ui.workers import ReportsWorkerFailures

from ..ui_states import LAB, NOW, with_state


def test_every_screen_routes_its_workers_failures() -> None:
    """Worker.StateChanged does not bubble: a screen that does not route it hides its workers' failures."""
    screens = []
    for info in pkgutil.walk_packages(ugro_tui.ui.__path__, "ugro_tui.ui."):
        module = importlib.import_module(info.name)
        screens += [c for _, c in inspect.getmembers(module, inspect.isclass)
                    if issubclass(c, Screen) and c.__module__ == module.__name__]
    assert len(screens) >= 9
    assert [c.__name__ for c in screens if not issubclass(c, ReportsWorkerFailures)] == []


def test_every_screen_with_a_key_that_changes_something_obeys_read_only() -> None:
    from textual.binding import Binding

    from ugro_tui.ui.read_only import CHANGES, ReadOnlyAware

    def changes(cls: type) -> bool:
        for binding in getattr(cls, "BINDINGS", ()):
            action = binding.action if isinstance(binding, Binding) else binding[1]
            if action.split("(")[0] in CHANGES or action == "run(True)":
                return True
        return False

    screens = []
    for info in pkgutil.walk_packages(ugro_tui.ui.__path__, "ugro_tui.ui."):
        module = importlib.import_module(info.name)
        screens += [c for _, c in inspect.getmembers(module, inspect.isclass)
                    if issubclass(c, Screen) and c.__module__ == module.__name__ and changes(c)]
    assert len(screens) >= 6
    assert [c.__name__ for c in screens if not issubclass(c, ReadOnlyAware)] == []


class BrokenStore(JobStore):
    """Reads fine once (the app's preload), then every read fails the way a damaged store does."""

    calls = 0

    def all(self):
        self.calls += 1
        if self.calls > 1:
            raise StoreError("active.json: cannot read the job store: Permission denied")
        return super().all()


async def test_a_failing_screen_worker_is_reported_once(tmp_path: Path) -> None:
    store = BrokenStore(tmp_path / "jobs")
    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=with_state("online"), store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        deadline = time.monotonic() + 30
        while not app.failures and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert isinstance(app.screen, JobsScreen)
        # Every failed read is said once, in one line (the view's timer tries again each interval: on a loaded
        # machine a second read may have failed by now, and is said once too).
        assert set(app.failures) == {"read the job store: active.json: cannot read the job store: Permission denied"}
        assert 1 <= len(app.failures) <= store.calls - 1


def hold_lock(path: Path) -> subprocess.Popen[str]:
    """Another process holding the store's lock until its stdin is closed (never for a fixed time)."""
    code = ("import fcntl, sys\nf = open(sys.argv[1], 'a')\nfcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\nsys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def held_now(store: JobStore) -> bool:
    return any(j.state.value == "held" for j in JobStore(store.root).active())


async def press_timed(pilot, table, rounds: int = 3) -> list[float]:
    took = []
    for _ in range(rounds):
        for key, row in (("down", 1), ("up", 0)):
            started = time.monotonic()
            await pilot.press(key)
            assert table.cursor_row == row
            took.append(time.monotonic() - started)
            await pilot.pause(0.1)
    return sorted(took)


async def test_keys_are_answered_while_another_process_holds_the_store(tmp_path: Path) -> None:
    """A hold (h) waits on the lock another process holds; keys still answer meanwhile, and the hold goes
    through once the lock is let go."""
    store = JobStore(tmp_path / "jobs")
    store.submit([JobSpec("big", ("x.py",), nnodes=5)])  # never fits: the dispatcher writes its reason
    store.submit([JobSpec("wide", ("x.py",), nnodes=4)])  # neither starts: nothing is launched
    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=with_state("online"), store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        table = app.screen.query_one("DataTable")
        deadline = time.monotonic() + 5
        while table.row_count < 2 and time.monotonic() < deadline:
            await pilot.pause(0.05)
        holder = hold_lock(store.lock_path)
        try:
            await pilot.press("h")  # hold the selected job: a store write, waiting for the lock
            # Blocked, a key would wait for as long as the lock is held: here, until the keys were answered.
            locked = await asyncio.wait_for(press_timed(pilot, table), 30)
            await pilot.press("1")  # and a view switch: the app is not waiting on the lock
            assert isinstance(app.screen, NodesScreen)
            assert holder.poll() is None and not held_now(store), "the hold went through with the lock held"
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait()
        assert len(locked) == 6, locked
        deadline = time.monotonic() + 5

        def held() -> list[int]:
            return [j.id for j in store.active() if j.state.value == "held"]

        while not held() and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert len(held()) == 1, app.failures  # the hold went through once the lock was free


async def test_a_sample_arriving_as_the_app_closes_is_dropped() -> None:
    """Telemetry posts samples until its worker is cancelled; one handled after the last screen went (seen once
    in a full run) must not raise."""
    from ugro_tui.ui.messages import NodeUpdated

    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=with_state("online"))
    async with app.run_test(size=(80, 24)):
        pass
    assert not app.screen_stack
    app.on_node_updated(NodeUpdated(app.monitor_state.nodes["gpu1"]))  # nothing to update, nothing raised
