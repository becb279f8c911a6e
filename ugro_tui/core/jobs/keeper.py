"""The checkpoint keeper: a job's checkpoints on its nodes, over the owner's pool (one round trip per node).

It lists them, deletes what retention lets go, picks what a new attempt resumes from (copying it first to placed
nodes that lack it), and pulls one to this machine. Files travel over the nodes' existing SSH connections in
chunks whose offsets are the local copy's size, so an interrupted pull or copy carries on where it stopped."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import shlex
from collections.abc import Callable
from pathlib import Path

from ugro_tui.config import Cluster
from ugro_tui.core.jobs import events
from ugro_tui.core.jobs.checkpoints import (
    MARKER,
    Checkpoint,
    list_script,
    merge_shared,
    newest_complete,
    parse_listing,
    remove_script,
    resume_choice,
    to_prune,
    with_metric,
)
from ugro_tui.core.jobs.model import Job
from ugro_tui.core.pool import Pool
from ugro_tui.core.transport import path_word

CHUNK = 8 << 20  # bytes per round trip (a pull to this machine)
COPY_CHUNK = 4 << 20  # bytes per round trip of a copy between nodes: what it holds in memory at once
PROGRESS_FROM = 64 << 20  # a copy this large says how far it got in the job's events
Progress = Callable[[str, int, int], None]  # (what, bytes done, bytes in all)


class CheckpointError(Exception):
    pass


class CheckpointKeeper:
    def __init__(self, cluster: Cluster, pool: Pool, timeout: float = 30.0) -> None:
        self.cluster = cluster
        self.pool = pool
        self.timeout = timeout

    def nodes_of(self, job: Job) -> list[str]:
        """Where the job's checkpoints may be: every node an attempt ran on, and where it is placed now."""
        names = list(dict.fromkeys([*job.ran_on, *(n for n, _ in job.placement), *(n for n, _ in job.runs)]))
        known = {n.name for n in self.cluster.nodes}
        return [n for n in names if n in known and n in self.pool]

    def _workdir(self, job: Job, node: str) -> str:
        return path_word(job.spec.workdir or self.cluster.node(node).workdir)

    def _dir(self, job: Job, node: str) -> str:
        """A shell prefix that enters the job's working dir, so a relative checkpoint dir means the same as for
        the job itself."""
        return f"cd {self._workdir(job, node)} 2>/dev/null || exit 0\n"

    async def index(self, job: Job, nodes: list[str] | None = None) -> list[Checkpoint]:
        """Every checkpoint on the given nodes (default: the job's), with the job's metric at its step. A node
        that does not answer is left out; `errors` on the raised CheckpointError names it when none answer."""
        found, failed = await self._listing(job, self.nodes_of(job) if nodes is None else nodes)
        return found

    async def _listing(self, job: Job, nodes: list[str]) -> tuple[list[Checkpoint], list[str]]:
        """The checkpoints on `nodes` and the nodes that did not answer (a CheckpointError when none did)."""
        if not job.spec.checkpoint_dir:
            return [], []
        directory = job.spec.checkpoint_dir
        answers = await asyncio.gather(*(self.pool.get(n).run(
            self._dir(job, n) + list_script(directory, secrets.token_hex(8)), timeout=self.timeout)
            for n in nodes), return_exceptions=True)
        found: list[Checkpoint] = []
        failed: list[str] = []
        for node, answer in zip(nodes, answers, strict=True):
            if isinstance(answer, BaseException):
                failed.append(f"{node}: {answer}")
                continue
            found += parse_listing(node, answer.stdout)
        if failed and len(failed) == len(nodes):
            raise CheckpointError("; ".join(failed))
        return with_metric(merge_shared(found), job.metric), [f.split(":", 1)[0] for f in failed]

    async def retain(self, job: Job, *, dry_run: bool = False, ended: bool = False) -> list[Checkpoint]:
        """Delete what the job's keep_last/keep_best let go; returns what was (or, dry, would be) deleted. Only
        checkpoints whole on the latest attempt's nodes count, so nothing is deleted while one of them does not
        answer. The checkpoint a running attempt resumed from is kept while it runs; once it `ended`, the rule
        holds exactly."""
        spec = job.spec
        if spec.keep_last is None and spec.keep_best is None:
            return []
        found, silent = await self._listing(job, self.nodes_of(job))
        attempt = [n for n in job.ran_on if n in self.pool] or [c.node for c in found]
        if any(n in silent for n in attempt):
            return []
        running = job.state.active and not ended
        protected = [job.resume_from.rstrip("/").rsplit("/", 1)[-1]] if job.resume_from and running else []
        doomed = to_prune(found, keep_last=spec.keep_last or 0, keep_best=spec.keep_best or 0, goal=spec.goal,
                          protected=protected, nodes=attempt)
        if dry_run or not doomed:
            return doomed
        rule = ", ".join(f"{k} {v}" for k, v in (("keep_last", spec.keep_last), ("keep_best", spec.keep_best))
                         if v is not None)
        gone: list[Checkpoint] = []
        for node in sorted({c.node for c in doomed}):
            mine = [c for c in doomed if c.node == node]
            done = await self.pool.get(node).run(remove_script(c.path for c in mine), timeout=self.timeout)
            if done.ok:
                gone += mine
        if gone:  # one event a pass: every deletion, grouped by checkpoint
            where: dict[str, list[str]] = {}
            for c in sorted(gone, key=lambda c: (c.step or 0, c.node)):
                where.setdefault(c.name, []).append(f"{c.node}, a folder shared with {', '.join(c.seen_by)}"
                                                    if c.seen_by else c.node)
            events.add(job.id, "deleted checkpoints " + ", ".join(f"{name} ({', '.join(nodes)})"
                                                                  for name, nodes in where.items()) + f": {rule}")
        return doomed

    async def prepare_resume(self, job: Job) -> Job:
        """A new attempt of a job that ran before (or was retried --from a step): the checkpoint it resumes from,
        copied first to the placed nodes that lack it. Returns the job with `resume_from` set (or None)."""
        spec = job.spec
        if not spec.checkpoint_dir or (not job.ran_on and job.resume_step is None):
            return dataclasses.replace(job, resume_from=None, resume_step=None)
        placed = [n for n, _ in job.placement]
        found = await self.index(job, list(dict.fromkeys([*self.nodes_of(job), *placed])))
        chosen = resume_choice(job, found, job.resume_step)
        if chosen is None and job.resume_step is not None:
            events.add(job.id, f"no complete checkpoint at step {job.resume_step}; resuming from the newest instead")
            chosen = resume_choice(job, found, None)
        if chosen is None:
            return dataclasses.replace(job, resume_from=None, resume_step=None)
        have = {n for c in found if c.name == chosen.name and c.complete for n in c.nodes}
        missing = [n for n in placed if n not in have]
        for node in missing:
            size = await self.copy(job, chosen, node)
            events.add(job.id, f"copied checkpoint {chosen.name} from {chosen.node} to {node} ({size} bytes) "
                               "before the attempt started")
        relative = f"{spec.checkpoint_dir.rstrip('/')}/{chosen.name}"
        events.add(job.id, f"attempt {job.attempt} resumes from {chosen.name} (step {chosen.step})")
        return dataclasses.replace(job, resume_from=relative, resume_step=None)

    async def files(self, node: str, path: str) -> list[tuple[str, int]]:
        """(relative path, size) of every file of a checkpoint ("" for a checkpoint that is one file)."""
        p = shlex.quote(path)
        script = (f"if [ -d {p} ]; then cd {p} && find . -type f -printf '%P\\t%s\\n'; "
                  f"elif [ -f {p} ]; then printf '\\t%s\\n' \"$(stat -c %s {p})\"; fi")
        done = await self.pool.get(node).run(script, timeout=self.timeout)
        out = []
        for line in done.stdout.splitlines():
            rel, _, size = line.rpartition("\t")
            if size.isdecimal():
                out.append((rel, int(size)))
        return sorted(out)

    async def _fetch(self, node: str, path: str, size: int, target: Path, progress: Progress | None,
                     what: str, done_before: int, total: int) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()  # an empty file (a marker) exists too
        have = target.stat().st_size
        if have > size:  # not this file any more: start it again
            target.unlink()
            have = 0
        while have < size:
            n = min(CHUNK, size - have)
            script = f"tail -c +{have + 1} {shlex.quote(path)} | head -c {n}"
            done = await self.pool.get(node).run(script, timeout=self.timeout * 4)
            if not done.ok or not done.raw:
                raise CheckpointError(f"{node}: could not read {path}: {done.stderr.strip() or 'no data'}")
            with open(target, "ab") as f:
                f.write(done.raw)
            have += len(done.raw)
            if progress is not None:
                progress(what, done_before + have, total)

    async def pull(self, job: Job, step: int | None, to: Path, progress: Progress | None = None) -> list[Path]:
        """Copy a complete checkpoint (every node's part) to `to`/NODE/NAME on this machine; resumable."""
        found = await self.index(job)
        chosen = newest_complete(found, step)
        if chosen is None:
            raise CheckpointError(f"job {job.id}: no complete checkpoint" + (f" at step {step}" if step is not None
                                                                             else ""))
        parts = [c for c in found if c.name == chosen.name and c.complete]
        listed = {c.node: await self.files(c.node, c.path) for c in parts}
        total = sum(size for files in listed.values() for _, size in files)
        done, out = 0, []
        for part in parts:
            base = to / part.node / part.name
            for rel, size in listed[part.node]:
                target = base / rel if rel else base
                remote = f"{part.path}/{rel}" if rel else part.path
                await self._fetch(part.node, remote, size, target, progress, f"{part.node}:{part.name}", done, total)
                done += size
                out.append(target)
        return out

    async def copy(self, job: Job, checkpoint: Checkpoint, node: str) -> int:
        """A complete checkpoint from its node to the same place in the job's checkpoint dir on `node`, streamed in
        COPY_CHUNK pieces through this machine (two pieces in memory at most, nothing on the local disk). Each file
        lands in a `.part` file that a copy cut short resumes, renamed once whole; the marker is written last, so a
        partial copy is never taken as complete. A marker that cannot be written fails the copy. Returns the bytes
        copied."""
        files = await self.files(checkpoint.node, checkpoint.path)
        target = f"{job.spec.checkpoint_dir.rstrip('/')}/{checkpoint.name}"  # type: ignore[union-attr]
        t = self.pool.get(node)
        prefix = f"mkdir -p {self._workdir(job, node)} && cd {self._workdir(job, node)} && "
        total = sum(size for rel, size in files if rel != MARKER)
        done = 0
        for rel, size in files:
            if rel == MARKER:
                continue
            remote = f"{checkpoint.path}/{rel}" if rel else checkpoint.path
            await self._copy_file(checkpoint.node, remote, size, node, prefix,
                                  path_word(f"{target}/{rel}" if rel else target))
            done += size
            if total >= PROGRESS_FROM:
                events.add(job.id, f"copying checkpoint {checkpoint.name} to {node}: {done >> 20} of "
                                   f"{total >> 20} MiB")
        if any(rel == MARKER for rel, _ in files):
            marked = await t.run(f"{prefix}touch {path_word(f'{target}/{MARKER}')}", timeout=self.timeout)
            if not marked.ok:  # without it the copy is not complete: the attempt must not resume from it
                raise CheckpointError(f"{node}: could not write the marker {target}/{MARKER} of the copied "
                                      f"checkpoint: {marked.stderr.strip() or 'touch failed'}")
        return done

    async def _copy_file(self, source: str, remote: str, size: int, node: str, prefix: str, dest: str) -> None:
        """One file from `source` to `dest` on `node` (a path word, relative to the `prefix`'s folder)."""
        t = self.pool.get(node)
        began = await t.run(f"{prefix}mkdir -p -- \"$(dirname -- {dest})\" && touch {dest}.part && "
                            f"stat -c %s {dest}.part", timeout=self.timeout)
        if not began.ok or not began.stdout.strip().isdecimal():
            raise CheckpointError(f"{node}: could not write {dest}: {began.stderr.strip()}")
        have = int(began.stdout.strip())
        if have > size:  # not this file any more: start it again
            await t.run(f"{prefix}: > {dest}.part", timeout=self.timeout)
            have = 0
        # The next piece is read while this one is written: two pieces in memory at most.
        ahead = asyncio.ensure_future(self._piece(source, remote, have, size)) if have < size else None
        try:
            while ahead is not None:
                data = await ahead
                at = have + len(data)
                ahead = asyncio.ensure_future(self._piece(source, remote, at, size)) if at < size else None
                wrote = await t.run(f"{prefix}cat >> {dest}.part", stdin=data, timeout=self.timeout * 4)
                if not wrote.ok:
                    raise CheckpointError(f"{node}: could not write {dest}: {wrote.stderr.strip()}")
                have = at
                del data
        finally:
            if ahead is not None:
                ahead.cancel()
        moved = await t.run(f"{prefix}mv -f -- {dest}.part {dest}", timeout=self.timeout)
        if not moved.ok:
            raise CheckpointError(f"{node}: could not write {dest}: {moved.stderr.strip()}")

    async def _piece(self, node: str, path: str, at: int, size: int) -> bytes:
        """Up to COPY_CHUNK bytes of a file on `node` from offset `at`."""
        n = min(COPY_CHUNK, size - at)
        piece = await self.pool.get(node).run(f"tail -c +{at + 1} {shlex.quote(path)} | head -c {n}",
                                              timeout=self.timeout * 4)
        if not piece.ok or not piece.raw:
            raise CheckpointError(f"{node}: could not read {path}: {piece.stderr.strip() or 'no data'}")
        return piece.raw
