"""A crash between the two writes of a change of state (history, then active.json) leaves one truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ugro_tui.core.jobs import actions, json_files
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
    monkeypatch.setattr(json_files, "write_atomic", write)  # the store's JSON files (history, active.json)


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
    JobStore(root).take_in()
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


async def test_a_job_that_breaks_its_follow_is_kept_with_the_reason_and_the_others_go_on(tmp_path: Path) -> None:
    """A launcher bug on one job (an exception while following it) stops nothing else; the job says why."""
    from ugro_tui.core.jobs.dispatcher import Dispatcher

    from ..functional.test_queue_cli import LAB, FakeLauncher, online_lab

    class Broken(FakeLauncher):
        async def poll(self, job):
            if job.spec.name == "bad":
                raise KeyError("gpu9")
            return await super().poll(job)

    store = JobStore(tmp_path / "jobs")
    launcher = Broken()
    d = Dispatcher(LAB, store, online_lab(), launcher, clock=lambda: 1000.0)
    [bad] = store.submit([JobSpec("bad", ("x",))])
    await d.tick()
    await d.drain()
    orphan, good = store.submit([JobSpec("orphan", ("x",), after=(bad.id,)), JobSpec("good", ("x",))])
    store.take_in()
    data = json.loads(store.active_path.read_text())
    data["jobs"][str(orphan.id)]["spec"]["after"] = [99]  # a hand-edited store: it runs after a job that never was
    store.active_path.write_text(json.dumps(data))
    for _ in range(3):
        await d.tick()
        await d.drain()
    assert store.get(bad.id).state is JobState.RUNNING and "dispatcher: KeyError" in store.get(bad.id).reason
    assert store.get(orphan.id).state is JobState.FAILED and "does not exist" in store.get(orphan.id).reason
    assert good.id in [j.id for j in launcher.started]  # the other job was placed and started all the same
