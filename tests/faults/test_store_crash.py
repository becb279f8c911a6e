"""A crash between the two writes of a change of state (history, then active.json) leaves one truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ugro_tui.core.jobs import actions
from ugro_tui.core.jobs import store as store_module
from ugro_tui.core.jobs.model import JobSpec, JobState
from ugro_tui.core.jobs.store import JobStore

pytestmark = pytest.mark.faults


class Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


def crash_after_first_write(monkeypatch: pytest.MonkeyPatch) -> None:
    real = store_module.write_atomic
    writes: list[Path] = []

    def write(path: Path, payload: bytes) -> None:
        real(path, payload)
        writes.append(path)
        if len(writes) == 1:
            raise Crash(path)

    monkeypatch.setattr(store_module, "write_atomic", write)


def views(root: Path, job_id: int) -> dict[str, object]:
    """What every reader sees after the crash: get, all (ugro queue), active (the dispatcher)."""
    store = JobStore(root)
    return {"get": store.get(job_id).state, "all": next(j.state for j in store.all() if j.id == job_id),
            "dispatchable": any(j.id == job_id for j in store.active())}


@pytest.mark.parametrize("change", ["cancel", "succeed", "fail"])
def test_a_finish_killed_between_its_writes_is_finished_for_every_reader(tmp_path: Path, monkeypatch, change):
    root = tmp_path / "jobs"
    store = JobStore(root)
    [job] = store.submit([JobSpec("j", ("x.py",))])
    if change != "cancel":
        store.move(job.id, JobState.STARTING, placement=(("n", (0,)),))
        store.move(job.id, JobState.RUNNING)
    crash_after_first_write(monkeypatch)
    with pytest.raises(Crash):
        if change == "cancel":
            actions.cancel(store, job.id)
        else:
            store.move(job.id, JobState.SUCCEEDED if change == "succeed" else JobState.FAILED)
    monkeypatch.undo()
    want = {"cancel": JobState.CANCELLED, "succeed": JobState.SUCCEEDED, "fail": JobState.FAILED}[change]
    assert views(root, job.id) == {"get": want, "all": want, "dispatchable": False}
    # The next write repairs the file: the stale copy leaves active.json.
    JobStore(root).submit([JobSpec("k", ("x.py",))])
    assert str(job.id) not in json.loads((root / "active.json").read_text())["jobs"]


def test_a_retry_killed_between_its_writes_did_not_happen_for_any_reader(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "jobs"
    store = JobStore(root)
    [job] = store.submit([JobSpec("j", ("x.py",))])
    actions.cancel(store, job.id)
    crash_after_first_write(monkeypatch)
    with pytest.raises(Crash):
        actions.retry(store, job.id)  # not acknowledged: the user saw no "queued again"
    monkeypatch.undo()
    assert views(root, job.id) == {"get": JobState.CANCELLED, "all": JobState.CANCELLED, "dispatchable": False}
    actions.retry(JobStore(root), job.id)  # and it can be retried again, once
    assert views(root, job.id) == {"get": JobState.QUEUED, "all": JobState.QUEUED, "dispatchable": True}
