"""The daemon's one failure path: a task that raises is recorded (traceback in the log, a daemon-error event)
and started again; the others go on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ugro_tui.core.alerts.journal import read_events
from ugro_tui.core.daemon import supervisor as sup
from ugro_tui.core.daemon.supervisor import Supervisor


async def test_a_task_that_raises_is_recorded_and_restarted_and_the_others_go_on(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sup, "BACKOFF", (0.01,))
    runs = 0
    beats = 0
    reported: list[str] = []

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError(f"round {runs} broke")
        await asyncio.Event().wait()

    async def steady() -> None:
        nonlocal beats
        while True:
            beats += 1
            await asyncio.sleep(0.005)

    s = Supervisor(report=reported.append)
    with caplog.at_level(logging.ERROR, logger="ugro.daemon"):
        s.start("flaky", flaky)
        s.start("steady", steady)
        for _ in range(400):
            if runs >= 3:
                break
            await asyncio.sleep(0.01)
        before = beats
        await asyncio.sleep(0.05)
        assert beats > before  # the other task never stopped
    await s.stop()
    assert runs == 3
    record = s.records["flaky"]
    assert record.restarts == 2 and record.last_error == "RuntimeError: round 2 broke"
    assert "Traceback" in caplog.text and "round 1 broke" in caplog.text
    events = [e for e in read_events()[0] if e.kind == "daemon-error"]
    assert [e.message for e in events] == reported == [
        f"daemon task flaky failed: RuntimeError: round {n} broke; restarting it" for n in (1, 2)]
    assert all(e.bad for e in events)
