"""The job store: TinyDB files under $XDG_STATE_HOME/ugro/jobs, safe for many processes at once.

- `active.json` holds jobs that are not finished, plus the id counter and the schema version. A submit appends
  its jobs to `submitted.jsonl` (inbox.py) and the next write of active.json takes them in, so a submit costs a
  line however many jobs wait or have finished.
- `history/NNNNNN.json` hold finished jobs, at most CHUNK per file; only the newest chunk is ever rewritten.
- Every write is atomic (temp file, fsync, rename, fsync of the folder) and every read-modify-write holds an
  exclusive lock on `jobs.lock`, so the TUI, `ugro submit` and `ugro scheduler` never corrupt each other.
- A file that cannot be read is set aside (renamed `*.corrupt-<time>`) and the user is told; it is never reset
  silently.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from tinydb import TinyDB

from ugro_tui import paths
from ugro_tui.atomic import write_atomic
from ugro_tui.core.jobs import events
from ugro_tui.core.jobs.identity import read_or_make
from ugro_tui.core.jobs.inbox import Inbox
from ugro_tui.core.jobs.json_files import AtomicJSONStorage, Corrupt, Encoded, version
from ugro_tui.core.jobs.model import Job, JobSpec, JobState, check_moved, transition
from ugro_tui.core.jobs.recovery import RecoveryNotes
from ugro_tui.errors import UgroError

SCHEMA = 1
_HISTORY_KEY_RE = re.compile(rb'"(\d+)":\{"id":')  # a job's key in a chunk as write_atomic stores it (compact JSON)
CHUNK = 500


class StoreError(UgroError):
    exit_code = 2


class UnknownJob(UgroError):
    exit_code = 2


class JobStore(RecoveryNotes):
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or paths.state_dir() / "jobs"
        self.history_dir = self.root / "history"
        self.active_path = self.root / "active.json"
        self.lock_path = self.root / "jobs.lock"
        self.counter_path = self.root / "next_id"
        self.identity_path = self.root / "store-id"
        self._identity: str | None = None
        self._chunk_cache: dict[Path, tuple[tuple[int, int, int], list[Job]]] = {}
        self._doc_cache: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}
        self._held = threading.local()
        self._id_cache: dict[Path, tuple[tuple[int, int, int], frozenset[int]]] = {}
        self.damaged: list[str] = []  # jobs in active.json that could not be read, as of the last active()
        self.inbox = Inbox(self.root / "submitted.jsonl")
        self._active_seen: tuple[tuple[int, int, int], dict[str, Any]] | None = None  # active.json, by version
        self._parsed: dict[str, tuple[dict[str, Any], Job]] = {}  # id -> (its document, the Job made from it)
        self._encoded = Encoded()  # active.json's documents as last written

    # --- files ---------------------------------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        if getattr(self._held, "lock", False):  # re-entered (a recovery inside a write): this thread holds it
            yield
            return
        self.history_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._held.lock = True
            try:
                yield
            finally:
                self._held.lock = False
                fcntl.flock(lock, fcntl.LOCK_UN)

    def tinydb(self, path: Path | None = None) -> TinyDB:
        """The same files through TinyDB's API, for ad-hoc queries (read them; write through this class)."""
        return TinyDB(path or self.active_path, storage=AtomicJSONStorage)

    def _read(self, path: Path) -> dict[str, dict[str, Any]]:
        try:
            return AtomicJSONStorage(path).read() or {}
        except Corrupt as exc:
            if path == self.active_path:
                recovered = self._recover(str(exc))
                if recovered is not None:
                    return recovered
            self._set_aside(path, str(exc))
        except OSError as exc:
            raise StoreError(f"{path}: cannot read the job store: {exc.strerror}") from None
        return {}

    @property
    def previous_path(self) -> Path:
        return self.active_path.with_name("active.json.prev")

    def _write_active(self, data: dict[str, Any]) -> None:
        """Write active.json, keeping the generation before it (a hard link: no copy) to recover from."""
        if self.active_path.exists():
            link = self.previous_path.with_name(f".active.json.prev.{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            os.link(self.active_path, link)
            os.replace(link, self.previous_path)
        AtomicJSONStorage(self.active_path).write(data, self._encoded)
        key = version(self.active_path)  # what was written is the next read's parse (10,000 jobs: 180 ms)
        self._active_seen = (key, data) if key is not None else None
        self.inbox.rotate()  # its jobs are in active.json now (every writer read them in: _writable)

    def _writable(self) -> dict[str, Any]:
        """active.json as a writer changes it (under the lock): with the jobs submitted since its last write. A
        copy of the parse the readers share, down to the table (writers replace documents, never edit them)."""
        data = dict(self._active_data())
        table = data["jobs"] = dict(data.get("jobs") or {})
        for key, doc in self.inbox.docs().items():
            table.setdefault(key, doc)  # a crash between a take-in and the log's rotation: active.json's wins
        self._drop_finished(table)
        return data

    def take_in(self) -> None:
        """Write active.json with the jobs submitted since its last write (the dispatcher does, each round)."""
        with self.locked():
            if self.inbox.docs():
                self._write_active(self._writable())

    def stamp(self) -> tuple:
        """Every file the store's jobs are read from, by inode, size and mtime: what a watcher compares."""
        return tuple((str(p), v) for p in (self.active_path, self.inbox.path, *self._chunks()) if (v := version(p)))

    def _recover(self, why: str) -> dict[str, Any] | None:
        """active.json is damaged: set it aside and go on from the generation before it, saying so until the
        user acknowledges it (`ugro queue --ack-recovery`). None when there is no good previous generation."""
        try:
            previous = AtomicJSONStorage(self.previous_path).read()
        except (Corrupt, OSError):
            return None
        if previous is None:
            return None
        table = previous.setdefault("jobs", {})
        for key, doc in self.inbox.previous_docs().items():  # jobs the damaged generation had taken in
            table.setdefault(key, doc)
        with self.locked():
            try:
                AtomicJSONStorage(self.active_path).read()
                return None  # another process recovered it meanwhile: read it again
            except Corrupt:
                pass
            except OSError:
                return None
            aside = self.active_path.with_name(f"active.json.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(self.active_path, aside)
            write_atomic(self.active_path, json.dumps(previous, separators=(",", ":")).encode())
            note = {"at": time.time(), "why": why, "aside": str(aside),
                    "jobs": sorted(int(k) for k in (previous.get("jobs") or {}) if k.isdecimal())}
            write_atomic(self.recovery_path, json.dumps(note).encode())
        return previous

    def _set_aside(self, path: Path, why: str) -> None:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        raise StoreError(f"{path}: the job store was unreadable ({why}); it was kept as {aside} and a new one "
                         "will be started. Jobs in it are not lost: the file can be inspected or repaired by hand")

    def _chunks(self) -> list[Path]:
        if not self.history_dir.is_dir():
            return []
        return sorted(p for p in self.history_dir.glob("*.json"))

    def _check_schema(self, data: dict[str, dict[str, Any]]) -> None:
        schema = (data.get("meta") or {}).get("1", {}).get("schema", SCHEMA)
        if schema > SCHEMA:
            raise StoreError(f"{self.active_path}: made by a newer ugro (schema {schema}); upgrade ugro to read it")

    # --- reads (no lock: every file is replaced atomically) ---------------------------------------------------

    def active(self) -> list[Job]:
        """Unfinished jobs. A job also found in history is finished: a change of state writes history first, so
        a crash between the two writes leaves one truth (history's) for every reader. A job whose stored form is
        damaged (a hand-edited file, wrong types) is left out and named in `damaged`; the rest go on."""
        finished = self._history_ids()
        jobs, damaged = [], []
        for key, doc in self._active_table().items():
            if key.isdecimal() and int(key) in finished:
                continue
            try:
                jobs.append(self._job(key, doc))
            except (KeyError, ValueError, TypeError, AttributeError, UgroError) as exc:
                damaged.append(f"job {key}: {exc}")
        self.damaged = damaged
        return jobs

    def _active_data(self) -> dict[str, Any]:
        """active.json, parsed once per version of the file (and not at all after this store wrote it)."""
        key = version(self.active_path)
        if key is None or self._active_seen is None or self._active_seen[0] != key:
            data = self._read(self.active_path)
            self._check_schema(data)
            self._active_seen = (key, data) if key is not None else None
            return data
        return self._active_seen[1]

    def _active_table(self) -> dict[str, dict[str, Any]]:
        """id -> document of active.json and of the jobs submitted since."""
        table = dict(self._active_data().get("jobs") or {})
        for k, doc in self.inbox.docs().items():
            table.setdefault(k, doc)
        return table

    def _job(self, key: str, doc: dict[str, Any]) -> Job:
        """The Job of a stored document, made once per content: 10,000 waiting jobs are not type-checked again
        on every read, only those that changed."""
        seen = self._parsed.get(key)
        if seen is not None and (seen[0] is doc or seen[0] == doc):
            return seen[1]
        job = Job.from_json(doc)
        self._parsed[key] = (doc, job)
        return job

    def _drop_finished(self, table: dict[str, Any]) -> None:
        """Under the lock, before a write: copies left in active.json by a crash between the two writes of a
        finish leave it (history wins, as every reader already sees it)."""
        finished = self._history_ids()
        for stale in [k for k in table if k.isdecimal() and int(k) in finished]:
            table.pop(stale)

    def _history_ids(self) -> set[int]:
        """Every id in history, read from the chunks' keys without parsing their jobs (each chunk once per
        version of its file): `ugro submit` and the dispatcher ask this on every call."""
        ids: set[int] = set()
        for chunk in self._chunks():
            key = version(chunk)
            if key is None:
                continue
            cached = self._id_cache.get(chunk)
            if cached is None or cached[0] != key:
                found = frozenset(int(m) for m in _HISTORY_KEY_RE.findall(chunk.read_bytes()))
                self._id_cache[chunk] = cached = (key, found)
            ids |= cached[1]
        return ids

    def all(self) -> list[Job]:
        """Every job, oldest first."""
        jobs: dict[int, Job] = {}
        for chunk in self._chunks():
            for job in self._chunk_jobs(chunk):
                jobs[job.id] = job
        for job in self.active():
            # A crash between archiving and removing leaves a finished copy in history: history wins.
            jobs.setdefault(job.id, job)
        return sorted(jobs.values(), key=lambda j: j.id)

    def recent(self, finished: int) -> list[Job]:
        """The unfinished jobs and at least the newest `finished` finished ones, oldest first: a first page,
        read without parsing the older history chunks."""
        jobs = {j.id: j for j in self.active()}
        done: list[Job] = []
        for chunk in reversed(self._chunks()):
            done += self._chunk_jobs(chunk)
            if len(done) >= finished:
                break
        return sorted({**{j.id: j for j in done}, **jobs}.values(), key=lambda j: j.id)

    def all_json(self) -> list[dict[str, Any]]:
        """Every job as stored (the `ugro queue --json` shape), oldest first, without building Job objects."""
        docs: dict[int, dict[str, Any]] = {}
        for chunk in self._chunks():
            for key, doc in self._chunk_docs(chunk).items():
                docs[int(key)] = doc
        for key, doc in self._active_table().items():
            docs.setdefault(int(key), doc)
        return [docs[k] for k in sorted(docs)]

    def _chunk_docs(self, chunk: Path) -> dict[str, dict[str, Any]]:
        """A history chunk's documents, read once per version of the file (the daemon's `ugro queue --json`)."""
        key = version(chunk)
        cached = self._doc_cache.get(chunk)
        if cached is None or cached[0] != key:
            self._doc_cache[chunk] = cached = (key, self._read(chunk).get("jobs") or {})
        return cached[1]

    def _chunk_jobs(self, chunk: Path) -> list[Job]:
        """A history chunk's jobs, parsed once per version of the file (a long-lived app re-lists cheaply)."""
        key = version(chunk)
        cached = self._chunk_cache.get(chunk)
        if cached is None or cached[0] != key:
            jobs = []
            for doc in self._chunk_docs(chunk).values():
                with contextlib.suppress(KeyError, ValueError, TypeError, AttributeError, UgroError):
                    jobs.append(Job.from_json(doc))
            self._chunk_cache[chunk] = cached = (key, jobs)
        return cached[1]

    def get(self, job_id: int) -> Job:
        for job in self.active():
            if job.id == job_id:
                return job
        for chunk in reversed(self._chunks()):
            for job in self._chunk_jobs(chunk):  # parsed once per version of the file
                if job.id == job_id:
                    return job
        raise UnknownJob(f"no job {job_id}; `ugro queue` lists the jobs")

    # --- writes (under the lock) ---------------------------------------------------------------------------

    def identity(self) -> str:
        """This store's own random name (`UGRO_STORE` in every job's environment), made once (identity.py)."""
        if self._identity is None:
            self._identity = read_or_make(self.identity_path, self.locked)
        return self._identity

    def submit(self, specs: list[JobSpec], *, hold: bool = False, now: float | None = None,
               sync_sent: tuple[tuple[str, int, int], ...] = ()) -> list[Job]:
        """Store new jobs; returns them once they are durable (fsynced). `sync_sent`: the code that travelled
        before the submit, recorded with it (one write: the dispatcher may start the job at once)."""
        now = time.time() if now is None else now
        with self.locked():
            next_id = self._next_submit_id()
            for i, spec in enumerate(specs):  # a job may run after one submitted just before it in the batch
                missing = [a for a in spec.after if not 0 < a < next_id + i]  # every id below was handed out
                if missing:
                    raise UnknownJob(f"--after: no job {missing[0]}")
            jobs = [Job(next_id + i, spec, JobState.HELD if hold else JobState.QUEUED, submitted_at=now,
                        reason="held" if hold else "", sync_sent=sync_sent) for i, spec in enumerate(specs)]
            self.inbox.append([job.to_json() for job in jobs])
            write_atomic(self.counter_path, str(next_id + len(jobs)).encode())
        return jobs

    def _next_submit_id(self) -> int:
        """The counter's file, past the jobs in the log (a crash between the append and the counter's write);
        without a counter (a new store, or one from before it), what active.json and the history say."""
        logged = max((int(k) for k in self.inbox.docs()), default=0) + 1
        try:
            return max(int(self.counter_path.read_text()), logged)
        except (OSError, ValueError):
            return max(self._next_id(self._writable()), logged)

    def _next_id(self, data: dict[str, dict[str, Any]]) -> int:
        """Without a counter file (a new store, or one from before it): past active.json's ids and its meta, and
        past the newest history chunk's (an active.json set aside starts empty)."""
        meta = (data.get("meta") or {}).get("1") or {}
        highest = max((int(k) for k in (data.get("jobs") or {})), default=0)
        chunks = self._chunks()
        if chunks:
            highest = max(highest, max((j.id for j in self._chunk_jobs(chunks[-1])), default=0))
        return max(int(meta.get("next_id", 1)), highest + 1)

    def update(self, job_id: int, change: Callable[[Job], Job]) -> Job:
        """Apply `change` to one job under the lock; finished jobs move to history, retried ones come back."""
        with self.locked():
            data = self._writable()
            table = data["jobs"]
            doc = table.get(str(job_id))
            chunk_path = None
            if doc is None:
                chunk_path, doc = self._find_in_history(job_id)
            before = Job.from_json(doc)
            job = change(before)
            check_moved(before, job)
            trail, job = job.trail, replace(job, trail=())  # as stored: the next change starts from here
            if job.state.finished:
                if chunk_path is None:
                    self._archive(job)
                    table.pop(str(job_id), None)
                    self._write_active(data)
                else:
                    self._rewrite_chunk(chunk_path, job_id, job)
            else:
                table[str(job_id)] = job.to_json()
                data.setdefault("meta", {"1": {"schema": SCHEMA, "next_id": self._next_id(data)}})
                self._write_active(data)
                if chunk_path is not None:  # retried: it lives in active.json again
                    self._rewrite_chunk(chunk_path, job_id, None)
            if len(trail) > 1:  # its history, once stored (a retry between two looks goes back to where it was)
                events.add_states(job_id, tuple(map(str, trail)))
            return job

    def update_active(self, changes: dict[int, Callable[[Job], Job]]) -> list[Job]:
        """Change several unfinished jobs in one write (the dispatcher's waiting reasons)."""
        with self.locked():
            data = self._writable()
            table = data["jobs"]
            finished = self._history_ids()
            out = []
            moved: list[tuple[int, tuple[JobState, ...]]] = []
            for job_id, change in changes.items():
                doc = table.get(str(job_id))
                if doc is None or job_id in finished:
                    continue
                before = Job.from_json(doc)
                job = change(before)
                check_moved(before, job)
                if len(job.trail) > 1:
                    moved.append((job_id, job.trail))
                job = replace(job, trail=())
                if job.state.finished:
                    raise ValueError("update_active keeps jobs unfinished; use update()")
                table[str(job_id)] = job.to_json()
                out.append(job)
            if out:
                self._write_active(data)
            for job_id, trail in moved:
                events.add_states(job_id, tuple(map(str, trail)))
            return out

    def _find_in_history(self, job_id: int) -> tuple[Path, dict[str, Any]]:
        for chunk in reversed(self._chunks()):
            doc = (self._read(chunk).get("jobs") or {}).get(str(job_id))
            if doc is not None:
                return chunk, doc
        raise UnknownJob(f"no job {job_id}; `ugro queue` lists the jobs")

    def _archive(self, job: Job) -> None:
        chunks = self._chunks()
        path = chunks[-1] if chunks else self.history_dir / "000001.json"
        data = self._read(path) if path.exists() else {}
        if len(data.get("jobs") or {}) >= CHUNK:
            path = self.history_dir / f"{int(path.stem) + 1:06d}.json"
            data = {}
        data.setdefault("jobs", {})[str(job.id)] = job.to_json()
        AtomicJSONStorage(path).write(data)

    def _rewrite_chunk(self, path: Path, job_id: int, job: Job | None) -> None:
        data = self._read(path)
        if job is None:
            (data.get("jobs") or {}).pop(str(job_id), None)
        else:
            data.setdefault("jobs", {})[str(job_id)] = job.to_json()
        AtomicJSONStorage(path).write(data)

    def move(self, job_id: int, to: JobState, *, reason: str = "", **changes: Any) -> Job:
        """A state change through the one transition function, stored atomically."""
        return self.update(job_id, lambda job: transition(job, to, reason=reason, **changes))

