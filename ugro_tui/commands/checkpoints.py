"""`ugro checkpoints JOB [--json] [--prune [--dry-run]] [--pull STEP [--to DIR]]` and `ugro retry JOB --from STEP`."""

from __future__ import annotations

import json
import os
import sys
import time
from argparse import Namespace
from pathlib import Path

from ugro_tui.commands.jobs import parse_ids
from ugro_tui.commands.table import DASH, render
from ugro_tui.config import Cluster
from ugro_tui.core.daemon import ask
from ugro_tui.core.daemon.client import Client, require
from ugro_tui.core.jobs import events
from ugro_tui.core.jobs.checkpoints import Checkpoint, resumable, resume_choice, size_text
from ugro_tui.core.jobs.model import Job, JobState
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.errors import UgroError, UsageError


def _step(text: str, what: str) -> int | None:
    if text == "latest":
        return None
    if not (text.isascii() and text.isdecimal()):
        raise UsageError(f"ugro {what}: expected a step number or `latest`, got {text!r}")
    return int(text)


def _daemon(cluster: Cluster) -> Client:
    return require(cluster, "checkpoints")  # its warm connections (started when none answers)


def _listed(cluster: Cluster, job: Job) -> list[Checkpoint]:
    daemon = _daemon(cluster)
    try:
        return ask.checkpoints(daemon, job.id)
    except UgroError as exc:
        raise UsageError(f"ugro checkpoints: {exc}") from None


def _job(text: str) -> Job:
    [job_id] = parse_ids([text])
    job = JobStore().get(job_id)
    if not job.spec.checkpoint_dir:
        raise UsageError(f"job {job.id} has no checkpoint dir (submit with --checkpoint-dir DIR)")
    return job


def run(args: Namespace, cluster: Cluster) -> int:
    job = _job(args.job)
    if args.dry_run and not args.prune:
        raise UsageError("ugro checkpoints: --dry-run goes with --prune")
    if args.to and not args.pull:
        raise UsageError("ugro checkpoints: --to goes with --pull")
    if args.pull:
        return _pull(args, cluster, job)
    if args.prune:
        if job.spec.keep_last is None and job.spec.keep_best is None:
            raise UsageError(f"job {job.id} keeps every checkpoint (submit with --keep-last N or --keep-best K)")
        said = ask.keep(_daemon(cluster), job.id, "prune", {"dry_run": args.dry_run})["checkpoints"]
        gone = [ask.checkpoint_of(c) for c in said]
        verb = "would delete" if args.dry_run else "deleted"
        for c in gone:
            shared = f", a folder {', '.join(c.seen_by)} share" if c.seen_by else ""
            print(f"{verb} {c.node}:{c.path} (step {c.step}, {size_text(c.bytes)}{shared})")
        if not gone:
            print("nothing to delete")
        return 0
    found = _listed(cluster, job)
    if args.json:
        print(json.dumps({"checkpoints": [c.to_json() for c in found]}, indent=1))
        return 0
    if not found:
        print(f"no checkpoints yet in {job.spec.checkpoint_dir} on {', '.join(job.ran_on) or 'its nodes'}")
        return 0
    rows = [(",".join(c.nodes), c.name, DASH if c.step is None else str(c.step), size_text(c.bytes),
             time.strftime("%H:%M:%S", time.localtime(c.mtime)), "yes" if c.complete else "no (being written?)",
             DASH if c.metric is None else f"{c.metric:.4g}") for c in found]
    print(render(("NODE", "CHECKPOINT", "STEP", "SIZE", "WRITTEN", "COMPLETE", job.spec.metric.upper()), rows))
    return 0


def _pull(args: Namespace, cluster: Cluster, job: Job) -> int:
    step = _step(args.pull, "checkpoints --pull")
    to = Path(args.to) if args.to else Path("checkpoints") / f"job-{job.id}"
    try:
        to.mkdir(parents=True, exist_ok=True)
        probe = to / f".ugro-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"ugro checkpoints --to {to}: not writable ({exc.strerror})") from None
    tty = sys.stderr.isatty()
    last = [0.0]

    def progress(what: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < (0.2 if tty else 2.0) and done < total:
            return
        last[0] = now
        line = f"{what}: {size_text(done)} of {size_text(total)}"
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    # The daemon copies into the folder (same machine, same user) over its connections.
    said = ask.keep(_daemon(cluster), job.id, "pull", {"step": step, "to": str(to.resolve())}, progress)["files"]
    files = [Path(f) for f in said]
    if tty:
        print(file=sys.stderr)
    for path in files:
        print(path)
    return 0


def retry_from(args: Namespace, cluster: Cluster) -> int:
    """Queue a finished job again, resuming from a complete checkpoint that exists now (checked first)."""
    job = _job(args.jobs[0])
    step = _step(args.from_step, "retry --from")
    if not job.state.finished:
        raise UsageError(f"job {job.id} is {job.state}; only a finished job can be retried")
    found = _listed(cluster, job)
    chosen = resume_choice(job, found, step)
    if chosen is None:
        steps = sorted(c.step for c in resumable(job, found) if c.step is not None)
        have = ", ".join(map(str, steps)) or "none"
        raise UsageError(f"job {job.id}: no complete checkpoint at step {args.from_step} (complete steps: {have})")
    JobStore().move(job.id, JobState.QUEUED, reason=f"retried by the user from {chosen.name}",
                    resume_step=chosen.step)  # one write: the step is never lost between two
    events.add(job.id, f"retried by the user from {chosen.name} (step {chosen.step})")
    print(f"{job.id}: queued again; it resumes from {chosen.name} (step {chosen.step})")
    return 0
