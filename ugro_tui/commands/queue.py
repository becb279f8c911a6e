"""`ugro queue`: the jobs, newest state first. `--json` passes on the daemon's copy when one answers (encoded once
per version of the store, so nothing is read or parsed here), else reads the files, as every read-only verb can."""

from __future__ import annotations

import json
import sys
import time
from argparse import Namespace
from collections.abc import Callable
from typing import TYPE_CHECKING

from ugro_tui import paths
from ugro_tui.errors import UgroError

if TYPE_CHECKING:
    from ugro_tui.core.jobs.store import JobStore


def run(args: Namespace, load: Callable[[], object]) -> int:
    """`load`: the config, checked (a bad one is one line); not needed to pass on the daemon's copy."""
    wanted = set(args.state.split(",")) if args.state else None
    if args.json and not wanted and not getattr(args, "ack_recovery", False) and _config_given(args):
        body = _from_daemon()
        if body is not None:
            sys.stdout.buffer.write(body)
            sys.stdout.buffer.write(b"\n")
            return 0
    load()
    return _from_files(args, wanted)


def _config_given(args: Namespace) -> bool:
    found = paths.config_path(getattr(args, "config", None))
    return found is not None and found.is_file()


def _from_daemon() -> bytes | None:
    """The daemon's `{"jobs": [...]}`, or None: no daemon answers, or a recovery is to be said (the files say it).
    Through wire.py, not the daemon client: at 10,000 jobs the answer is 14 MB and every import counts."""
    from ugro_tui.core.daemon import where, wire

    if (paths.state_dir() / "jobs" / "recovery.json").exists():
        return None
    try:
        where.private_folder(create=False)
        status, body = wire.exchange(str(where.socket_path()), "GET", "/api/v1/jobs", None, 10.0)
    except (OSError, UgroError):  # none answers, or not whole: the files are read instead
        return None
    return body if status == 200 else None


def _from_files(args: Namespace, wanted: set[str] | None) -> int:
    from ugro_tui.commands.table import DASH, render
    from ugro_tui.core.jobs.describe import age, placement_text, progress_text, runtime, shape
    from ugro_tui.core.jobs.model import JobState
    from ugro_tui.core.jobs.store import JobStore
    from ugro_tui.core.sessions.watch import reason_of
    from ugro_tui.errors import UsageError

    if wanted:
        unknown = wanted - {s.value for s in JobState}
        if unknown:
            states = ", ".join(s.value for s in JobState)
            raise UsageError(f"ugro queue: --state {sorted(unknown)[0]!r}: one of {states}")
    store = JobStore()
    if getattr(args, "ack_recovery", False):
        store.acknowledge_recovery()
    if args.json:
        # Stored documents are already the JSON contract; compact, since the C encoder is much faster than indent=.
        docs = [d for d in store.all_json() if not wanted or d["state"] in wanted]
        print(json.dumps({"jobs": docs}, separators=(",", ":")))  # damaged docs are in it as stored
        say_damaged(store)
        return 0
    jobs = [j for j in store.all() if not wanted or j.state.value in wanted]
    now = time.time()
    rows = [(str(j.id), j.spec.name, j.health, str(j.spec.priority), shape(j), placement_text(j),
             age(now - j.submitted_at), runtime(j, now), progress_text(j, now),
             f"⚠ {j.warning}" if j.warning else reason_of(j, now) or DASH)
            for j in jobs]
    print(render(("ID", "NAME", "STATE", "PRI", "SHAPE", "PLACEMENT", "AGE", "RUNTIME", "PROGRESS", "REASON"), rows)
          if rows else "no jobs")
    say_damaged(store)
    if any(not j.state.finished for j in jobs):
        from ugro_tui.core.daemon.client import nobody_dispatches

        note = nobody_dispatches()
        if note:
            print(note, file=sys.stderr)
    return 0


def say_damaged(store: JobStore) -> None:
    """Jobs the store could not read stay in its file, untouched; say which, on stderr, every time. The same for
    a recovery from the previous generation, until acknowledged."""
    notice = store.recovery_notice()
    if notice:
        print(f"ugro: {notice}", file=sys.stderr)
    for line in store.damaged:
        print(f"ugro: {store.active_path}: {line} (left as it is; fix the file or cancel the job)", file=sys.stderr)
