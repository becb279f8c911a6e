"""The job state machine and the store: atomic, locked, unique ids, history, corrupt files set aside."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from ugro_tui.core.jobs.model import IllegalTransition, Job, JobSpec, JobState, transition
from ugro_tui.core.jobs.store import JobStore, StoreError, UnknownJob

S = JobState


def spec(name: str = "train", **kw) -> JobSpec:
    return JobSpec(name=name, command=("train.py", "--lr", "3e-4"), **kw)


@pytest.mark.parametrize(("start", "to"), [(S.QUEUED, S.RUNNING), (S.QUEUED, S.SUCCEEDED), (S.HELD, S.RUNNING),
                                           (S.SUCCEEDED, S.FAILED), (S.CANCELLED, S.RUNNING), (S.HELD, S.HELD)])
def test_illegal_transitions_are_refused(start: JobState, to: JobState) -> None:
    with pytest.raises(IllegalTransition, match=f"is {start}; it cannot become {to}"):
        transition(Job(1, spec(), start), to)


def test_a_run_through_the_states() -> None:
    job = Job(7, spec(), submitted_at=100.0)
    job = transition(job, S.STARTING, placement=(("gpu1", (0,)),), now=110.0)
    assert (job.attempt, job.started_at) == (1, 110.0)
    job = transition(transition(job, S.RUNNING), S.FAILED, reason="gpu1 exited 1", now=120.0)
    assert job.finished_at == 120.0
    again = transition(job, S.QUEUED)
    assert again.placement == () and again.finished_at is None and again.attempt == 0


def test_json_round_trip_keeps_args_as_given() -> None:
    job = Job(3, spec(env=(("A", "1"),), after=(1, 2), nodes=("worker",)), placement=(("gpu1", (0, 1)),))
    again = Job.from_json(json.loads(json.dumps(job.to_json())))
    assert again == job and again.to_json()["spec"]["command"] == ["train.py", "--lr", "3e-4"]


def test_submit_get_update_and_history(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    [a, b] = store.submit([spec("a"), spec("b", after=())])
    assert (a.id, b.id) == (1, 2)
    [c] = store.submit([spec("c", after=(1,))], hold=True)
    assert c.state is S.HELD and store.get(3).spec.after == (1,)
    store.move(1, S.CANCELLED, reason="no longer needed")
    assert [j.id for j in store.active()] == [2, 3]  # finished jobs leave active.json
    assert store.get(1).state is S.CANCELLED and store.get(1).reason == "no longer needed"
    store.move(1, S.QUEUED)  # retry brings it back
    assert 1 in {j.id for j in store.active()} and len(store.all()) == 3
    with pytest.raises(UnknownJob):
        store.get(99)
    with pytest.raises(UnknownJob, match="--after: no job 42"):
        store.submit([spec(after=(42,))])


def test_history_is_chunked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ugro_tui.core.jobs import store as store_module

    monkeypatch.setattr(store_module, "CHUNK", 20)  # the rule, not 500 fsynced writes
    store = JobStore(tmp_path)
    jobs = store.submit([spec(f"j{i}") for i in range(store_module.CHUNK + 3)])
    for job in jobs:
        store.move(job.id, S.CANCELLED)
    assert len(list((tmp_path / "history").glob("*.json"))) == 2
    assert [j.id for j in store.all()] == [j.id for j in jobs]
    assert store.get(jobs[-1].id).state is S.CANCELLED


def _submit_many(root: str, count: int, out) -> None:
    store = JobStore(Path(root))
    out.put([store.submit([spec(f"p{i}")])[0].id for i in range(count)])


def test_ids_are_unique_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_submit_many, args=(str(tmp_path), 25, out)) for _ in range(4)]
    for p in procs:
        p.start()
    ids = [i for _ in procs for i in out.get(timeout=60)]
    for p in procs:
        p.join(timeout=60)
    assert sorted(ids) == list(range(1, 101))
    assert len(JobStore(tmp_path).all()) == 100


def test_a_corrupt_file_with_no_previous_generation_is_set_aside_and_the_user_told(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.submit([spec("keep")])
    store.previous_path.unlink(missing_ok=True)
    (tmp_path / "active.json").write_text('{"jobs": {"1": {"id": 1, "spe')
    with pytest.raises(StoreError) as info:
        store.active()
    message = str(info.value)
    assert "unreadable" in message and "kept as" in message
    aside = list(tmp_path.glob("active.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text().startswith('{"jobs"')  # nothing lost
    [job] = store.submit([spec("after the repair")])
    assert job.id == 2  # job 1 lives on in the set-aside file: its id is never handed out again


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.submit([spec()])
    store.move(1, JobState.HELD)  # a write of active.json, which takes the submitted job in
    data = json.loads((tmp_path / "active.json").read_text())
    data["meta"]["1"]["schema"] = 99
    (tmp_path / "active.json").write_text(json.dumps(data))
    with pytest.raises(StoreError, match="newer ugro"):
        store.active()


def test_the_files_are_tinydb_databases(tmp_path: Path) -> None:
    from tinydb import Query

    store = JobStore(tmp_path)
    store.submit([spec("a"), spec("b", priority=5)])
    store.move(1, JobState.HELD)  # submitted jobs are in active.json from its next write on
    db = store.tinydb()
    assert {d["name"] for d in db.table("jobs").all()} == {"a", "b"}
    assert db.table("jobs").search(Query().priority == 5)[0]["id"] == 2
    assert db.table("meta").all()[0]["schema"] == 1


def test_a_corrupt_active_file_is_recovered_from_its_previous_generation(tmp_path: Path) -> None:
    """A half-written active.json: the queue goes on from the generation before it, and says so until told."""
    store = JobStore(tmp_path)
    store.submit([spec("one")])
    store.move(1, JobState.HELD)
    store.submit([spec("two")])
    store.move(2, JobState.HELD)  # the last write: it took job 2 in
    (tmp_path / "active.json").write_text('{"jobs": {"1": {"id": 1, "spe')
    fresh = JobStore(tmp_path)
    # The generation before lacks job 2's submit and hold; the submit log it was taken in from has the job.
    assert [(j.spec.name, j.state) for j in fresh.active()] == [("one", JobState.HELD), ("two", JobState.QUEUED)]
    assert len(list(tmp_path.glob("active.json.corrupt-*"))) == 1
    notice = fresh.recovery_notice()
    assert notice and "recovered" in notice and "ack-recovery" in notice
    [job] = fresh.submit([spec("three")])
    assert job.id == 3  # the id counter never goes back (next_id lives beside the file)
    assert JobStore(tmp_path).recovery_notice() == notice  # said every time...
    fresh.acknowledge_recovery()
    assert JobStore(tmp_path).recovery_notice() is None  # ...until acknowledged


def test_a_submit_appends_a_line_and_the_next_write_takes_it_in(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.submit([spec("a")])
    store.move(1, S.HELD)  # a write of active.json
    before = (tmp_path / "active.json").read_bytes()
    [b] = store.submit([spec("b", after=(1,))])
    assert (tmp_path / "active.json").read_bytes() == before  # the queue is not rewritten for a submit
    assert json.loads((tmp_path / "submitted.jsonl").read_text())["id"] == b.id
    assert [j.spec.name for j in JobStore(tmp_path).active()] == ["a", "b"]  # every reader sees it at once
    store.take_in()
    assert str(b.id) in json.loads((tmp_path / "active.json").read_text())["jobs"]
    assert not (tmp_path / "submitted.jsonl").exists() and (tmp_path / "submitted.prev.jsonl").exists()
    with pytest.raises(UnknownJob, match="--after: no job 9"):
        store.submit([spec("c", after=(9,))])  # never handed out


def test_a_torn_line_from_a_killed_submit_is_skipped_and_ids_never_repeat(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.submit([spec("a")])
    with (tmp_path / "submitted.jsonl").open("ab") as f:
        f.write(b'{"id": 2, "spec": {"na')  # killed mid-append: never acknowledged
    (tmp_path / "next_id").unlink()  # and the counter lost too
    [b] = store.submit([spec("b")])
    assert b.id == 2  # 2 was never acknowledged; the log's last whole job was 1
    assert [(j.id, j.spec.name) for j in JobStore(tmp_path).active()] == [(1, "a"), (2, "b")]


def test_the_newest_page_is_read_without_the_older_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ugro_tui.core.jobs import store as store_module

    monkeypatch.setattr(store_module, "CHUNK", 5)
    store = JobStore(tmp_path)
    jobs = store.submit([spec(f"j{i}") for i in range(13)])
    for job in jobs[:12]:
        store.move(job.id, S.CANCELLED)
    parsed: list[Path] = []
    fresh = JobStore(tmp_path)
    real = fresh._chunk_docs
    monkeypatch.setattr(fresh, "_chunk_docs", lambda chunk: parsed.append(chunk) or real(chunk))
    recent = fresh.recent(4)
    assert [p.name for p in parsed] == ["000003.json", "000002.json"]  # 2 + 5 finished: enough, 000001 unread
    assert [j.id for j in recent] == list(range(6, 14))


def test_the_parse_and_the_encoding_are_reused_but_never_trusted_past_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store reads its own write without parsing it again and encodes only the documents that changed; a write
    that failed leaves what it read as it was, and another process's write is read afresh."""
    import ugro_tui.core.jobs.json_files as json_files

    store = JobStore(tmp_path)
    store.submit([JobSpec(f"j{i}", ("x.py",)) for i in range(3)])
    store.take_in()
    raw = (tmp_path / "active.json").read_bytes()
    assert raw == json.dumps(json.loads(raw), separators=(",", ":")).encode()  # byte for byte as json.dumps writes
    encoded = []
    real_dumps = json_files.json.dumps
    monkeypatch.setattr(json_files.json, "dumps", lambda doc, **kw: encoded.append(doc) or real_dumps(doc, **kw))
    monkeypatch.setattr(json_files.json, "loads", lambda raw: pytest.fail("read its own write again"))
    store.update(2, lambda j: transition(j, JobState.HELD))
    assert [d.get("id") for d in encoded if "id" in d] == [2]  # jobs 1 and 3 were not encoded again
    assert {j.id: j.state for j in store.active()}[2] is JobState.HELD
    monkeypatch.undo()

    def fail(path: Path, data: bytes, **_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json_files, "write_atomic", fail)
    with pytest.raises(OSError):
        store.update(1, lambda j: transition(j, JobState.HELD))
    monkeypatch.undo()
    assert {j.id: j.state for j in store.active()} == {1: JobState.QUEUED, 2: JobState.HELD, 3: JobState.QUEUED}
    JobStore(tmp_path).update(3, lambda j: transition(j, JobState.HELD))  # another process
    assert {j.id: j.state for j in store.active()}[3] is JobState.HELD
    assert json.loads((tmp_path / "active.json").read_bytes())["jobs"]["3"]["state"] == "held"
