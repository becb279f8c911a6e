"""The lifecycle rules both backends share: dependencies, retry or fail, the store merge (a cancel wins), the guard,
and the store's refusal of a change of state that skips the state machine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ugro_tui.core.jobs.async_store import AsyncJobStore
from ugro_tui.core.jobs.dispatcher import Dispatcher
from ugro_tui.core.jobs.model import IllegalTransition, Job, JobSpec, JobState, NodeRun, transition
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.lifecycle import JobGuard, dependencies, merge, retry_or_fail
from ugro_tui.core.telemetry.model import NodeState

from ..functional.test_queue_cli import FakeLauncher, online_lab
from ..ui_states import LAB

S = JobState


def running(job_id: int = 1, **spec: object) -> Job:
    job = Job(job_id, JobSpec("j", ("x",), **spec))  # type: ignore[arg-type]
    job = transition(job, S.STARTING, placement=(("gpu1", (0,)),))
    return dataclasses.replace(transition(job, S.RUNNING), runs=(("gpu1", NodeRun(pid=42)),), trail=())


def test_a_failed_attempt_retries_then_fails() -> None:
    job = running(max_retries=1)
    assert retry_or_fail(job, "gpu1 exited 1", None).state is S.QUEUED
    again = dataclasses.replace(job, attempt=2)
    assert retry_or_fail(again, "gpu1 exited 1", "oom").state is S.FAILED


@pytest.mark.parametrize("how", ["failed", "lost", "retried", "pruned"])
def test_a_cancel_asked_before_the_end_wins_and_keeps_what_else_happened(how: str) -> None:
    job = running(max_retries=3)
    cur = dataclasses.replace(job, cancel_requested=True)  # the user's cancel, stored while the follow looked
    now = {"failed": transition(job, S.FAILED, reason="gpu1 exited 1"),
           "lost": retry_or_fail(job, "node gpu1 lost (unreachable since 10:00:00)", None),
           "retried": transition(job, S.QUEUED, reason="retrying: gpu1 exited 1"),
           "pruned": transition(job, S.PRUNED, reason="pruned: worse than the median")}[how]
    done = merge(cur, now)
    assert done.state is S.CANCELLED and done.reason.startswith("cancelled by the user; ")
    assert done.reason.endswith(now.reason.split(": ", 1)[-1]) and "retrying" not in done.reason
    assert done.finished_at is not None
    assert list(done.trail) == [S.RUNNING, S.CANCELLED]  # the store accepts it: one legal step


def test_a_cancel_known_to_the_follow_ends_cancelled_too() -> None:
    job = dataclasses.replace(running(max_retries=3), cancel_requested=True)
    done = retry_or_fail(job, "node gpu1 lost", None)
    assert done.state is S.CANCELLED and done.reason == "cancelled by the user; node gpu1 lost"


def test_a_success_stands_a_hold_is_kept_and_a_finished_job_stays() -> None:
    job = running()
    ok = transition(job, S.SUCCEEDED, reason="every node exited 0")
    assert merge(dataclasses.replace(job, cancel_requested=True), ok).state is S.SUCCEEDED
    queued = Job(2, JobSpec("q", ("x",)))
    held = transition(queued, S.HELD)
    assert merge(held, dataclasses.replace(queued, reason="waits: busy")).state is S.HELD
    gone = transition(queued, S.CANCELLED)
    assert merge(gone, dataclasses.replace(queued, reason="waits: busy")) is gone


def test_a_retry_forgets_its_predecessors_prune_and_a_running_job_keeps_it() -> None:
    job = running(max_retries=1)
    cur = dataclasses.replace(job, prune="worse than the median")
    assert merge(cur, dataclasses.replace(job, reason="running")).prune == "worse than the median"
    assert merge(cur, transition(job, S.QUEUED, reason="retrying")).prune == ""


def test_the_store_refuses_a_change_of_state_that_skips_transition(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    [job] = store.submit([JobSpec("j", ("x",))])
    with pytest.raises(IllegalTransition, match="cannot become running"):
        store.update(job.id, lambda j: dataclasses.replace(j, state=S.RUNNING))
    with pytest.raises(IllegalTransition, match="cannot become succeeded"):  # two legal steps, one missing
        store.update(job.id, lambda j: transition(transition(j, S.STARTING), S.SUCCEEDED))
    moved = store.update(job.id, lambda j: transition(transition(j, S.STARTING), S.RUNNING))
    assert moved.state is S.RUNNING and moved.trail == ()  # as stored: the next change starts from here
    assert store.update(job.id, lambda j: dataclasses.replace(j, reason="fine")).reason == "fine"


@pytest.mark.parametrize("parent_state", [S.FAILED, S.CANCELLED, S.PRUNED])
async def test_a_job_after_a_parent_that_can_never_succeed_fails_naming_it(tmp_path: Path, parent_state) -> None:
    store = JobStore(tmp_path)
    [parent, child] = store.submit([JobSpec("p", ("x",)), JobSpec("c", ("x",), after=(1,))])
    store.update(parent.id, lambda j: transition(transition(transition(j, S.STARTING), S.RUNNING), parent_state))
    deps = await dependencies(child, {child.id: child}, AsyncJobStore(store))
    assert deps.fail == f"job 1 it runs after was {parent_state}" and not deps.ready
    missing = dataclasses.replace(child, spec=dataclasses.replace(child.spec, after=(99,)))
    assert (await dependencies(missing, {}, AsyncJobStore(store))).fail == "job 99 it runs after does not exist"


async def test_the_guard_keeps_one_jobs_error_its_own(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    [job] = store.submit([JobSpec("j", ("x",))])
    guard = JobGuard(AsyncJobStore(store), "dispatcher")

    async def broken() -> None:
        raise KeyError("boom")

    await guard.run(job.id, broken())
    assert guard.errors == {job.id: "dispatcher: KeyError: 'boom'"} and store.get(job.id).reason == guard.errors[1]

    async def fine() -> None:
        return None

    await guard.run(job.id, fine())
    assert guard.errors == {}


class LosingLauncher(FakeLauncher):
    """Its node is lost; the user's cancel reaches the store while the loss is being handled."""

    def __init__(self, store: JobStore) -> None:
        super().__init__()
        self.store = store

    async def lose(self, job: Job, lost: dict[str, float]) -> Job:
        self.store.update(job.id, lambda j: dataclasses.replace(j, cancel_requested=True, reason="cancel requested"))
        return retry_or_fail(job, f"node {', '.join(lost)} lost", None)


async def test_a_cancel_during_a_node_loss_ends_cancelled(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    launcher = LosingLauncher(store)
    clock = [1000.0]
    d = Dispatcher(LAB, store, online_lab(), launcher, clock=lambda: clock[0])
    [job] = store.submit([JobSpec("a", ("x",), nnodes=2, max_retries=2)])
    await d.tick()
    await d.drain()
    assert store.get(job.id).state is S.RUNNING
    gpu1 = d.state.nodes["gpu1"]
    gpu1.state, gpu1.received_at = NodeState.OFFLINE, clock[0]  # telemetry lost it: its last sample was now
    clock[0] += LAB.node_lost_after + 1
    await d.tick()
    await d.drain()
    done = store.get(job.id)
    assert done.state is S.CANCELLED and done.reason == "cancelled by the user; node gpu1 lost", done.reason
    assert d.errors == {}


class NotReadyLauncher(FakeLauncher):
    """The placed node lacks the job's data; the user's cancel arrives while that is found out."""

    def __init__(self, store: JobStore) -> None:
        super().__init__()
        self.store = store

    async def start(self, job: Job) -> Job:
        from ugro_tui.core.sync.service import NotReady

        self.store.update(job.id, lambda j: dataclasses.replace(j, cancel_requested=True, reason="cancel requested"))
        raise NotReady("gpu1 lacks ~/datasets/x")


async def test_a_cancel_during_a_start_that_was_not_ready_is_kept(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    d = Dispatcher(LAB, store, online_lab(), NotReadyLauncher(store), clock=lambda: 1000.0)
    [job] = store.submit([JobSpec("a", ("x",))])
    await d.tick()
    await d.drain()
    assert store.get(job.id).cancel_requested  # queued again without losing the cancel
    await d.tick()
    await d.drain()
    assert store.get(job.id).state is S.CANCELLED
