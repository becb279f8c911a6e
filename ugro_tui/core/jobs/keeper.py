"""The checkpoint keeper: a job's checkpoints on its nodes, over the owner's pool (one round trip per node).

It lists them, deletes what retention lets go, picks what a new attempt resumes from (copying it first to placed
nodes that lack it), and pulls one to this machine. Files travel over the nodes' existing SSH connections in
chunks whose offsets are the local copy's size, so an interrupted pull or copy carries on where it stopped."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shlex
from collections.abc import Callable
from pathlib import Path

from ugro_tui.config import Cluster
from ugro_tui.core.jobs import events
from ugro_tui.core.jobs.checkpoints import (
    MARKER,
    Checkpoint,
    list_script,
    newest_complete,
    parse_listing,
    remove_script,
    to_prune,
    whole,
    with_metric,
)
from ugro_tui.core.jobs.model import Job
from ugro_tui.core.pool import Pool
from ugro_tui.core.transport import path_word

CHUNK = 8 << 20  # bytes per round trip
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
        if not job.spec.checkpoint_dir:
            return []
        nodes = self.nodes_of(job) if nodes is None else nodes
        script = list_script(job.spec.checkpoint_dir)
        answers = await asyncio.gather(*(self.pool.get(n).run(self._dir(job, n) + script, timeout=self.timeout)
                                         for n in nodes), return_exceptions=True)
        found: list[Checkpoint] = []
        failed = []
        for node, answer in zip(nodes, answers, strict=True):
            if isinstance(answer, BaseException):
                failed.append(f"{node}: {answer}")
                continue
            found += parse_listing(node, answer.stdout)
        if failed and len(failed) == len(nodes):
            raise CheckpointError("; ".join(failed))
        return with_metric(found, job.metric)

    async def retain(self, job: Job, *, dry_run: bool = False) -> list[Checkpoint]:
        """Delete what the job's keep_last/keep_best let go; returns what was (or, dry, would be) deleted."""
        spec = job.spec
        if spec.keep_last is None and spec.keep_best is None:
            return []
        found = await self.index(job)
        protected = [job.resume_from.rstrip("/").rsplit("/", 1)[-1]] if job.resume_from else []
        doomed = to_prune(found, keep_last=spec.keep_last or 0, keep_best=spec.keep_best or 0, goal=spec.goal,
                          protected=protected)
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
                where.setdefault(c.name, []).append(c.node)
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
        chosen = self.resume_choice(job, found, job.resume_step)
        if chosen is None and job.resume_step is not None:
            events.add(job.id, f"no complete checkpoint at step {job.resume_step}; resuming from the newest instead")
            chosen = self.resume_choice(job, found, None)
        if chosen is None:
            return dataclasses.replace(job, resume_from=None, resume_step=None)
        have = {c.node for c in found if c.name == chosen.name and c.complete}
        missing = [n for n in placed if n not in have]
        for node in missing:
            size = await self.copy(job, chosen, node)
            events.add(job.id, f"copied checkpoint {chosen.name} from {chosen.node} to {node} ({size} bytes) "
                               "before the attempt started")
        relative = f"{spec.checkpoint_dir.rstrip('/')}/{chosen.name}"
        events.add(job.id, f"attempt {job.attempt} resumes from {chosen.name} (step {chosen.step})")
        return dataclasses.replace(job, resume_from=relative, resume_step=None)

    @staticmethod
    def resumable(job: Job, found: list[Checkpoint]) -> list[Checkpoint]:
        """What a new attempt can resume from, newest first: checkpoints complete on every node of the last
        attempt that answered (each node wrote its own part; one complete on only some cannot be resumed)."""
        answered = {c.node for c in found}
        return whole(found, [n for n in job.ran_on if n in answered])

    def resume_choice(self, job: Job, found: list[Checkpoint], step: int | None) -> Checkpoint | None:
        return next((c for c in self.resumable(job, found) if step is None or c.step == step), None)

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
        """A complete checkpoint from its node to the same place in the job's checkpoint dir on `node`; the
        marker is written last, so a copy cut short is never taken as complete. Returns the bytes copied."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="ugro-ckpt-") as tmp:
            files = await self.files(checkpoint.node, checkpoint.path)
            total = 0
            target = f"{job.spec.checkpoint_dir.rstrip('/')}/{checkpoint.name}"  # type: ignore[union-attr]
            t = self.pool.get(node)
            prefix = f"mkdir -p {self._workdir(job, node)} && cd {self._workdir(job, node)} && "
            for rel, size in files:
                local = Path(tmp) / (rel or "file")
                remote = f"{checkpoint.path}/{rel}" if rel else checkpoint.path
                await self._fetch(checkpoint.node, remote, size, local, None, "", 0, 0)
                dest = f"{target}/{rel}" if rel else target
                if rel == MARKER:
                    continue
                done = await t.run(f"{prefix}mkdir -p -- \"$(dirname -- {path_word(dest)})\" && "
                                   f"cat > {path_word(dest)}.tmp && mv -f -- {path_word(dest)}.tmp {path_word(dest)}",
                                   stdin=local.read_bytes(), timeout=self.timeout * 4)
                if not done.ok:
                    raise CheckpointError(f"{node}: could not write {dest}: {done.stderr.strip()}")
                total += size
            if any(rel == MARKER for rel, _ in files):
                with contextlib.suppress(Exception):
                    await t.run(f"{prefix}touch {path_word(target + '/' + MARKER)}", timeout=self.timeout)
            return total
