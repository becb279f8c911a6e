"""`ugro submit`. With a daemon running on the same config, the flags go to it in one request over its socket and
it checks and stores the jobs (its config and job code are loaded already), so this process imports next to
nothing of ugro's. Otherwise it does the same itself (commands/jobs.py): no daemon, a daemon of another config
or of an older version, or flags that read this process's files (`--sync`: the tree; `--template`: the user's
template folder, under this process's XDG_CONFIG_HOME)."""

from __future__ import annotations

import json
import os
import sys
from argparse import Namespace

from ugro_tui import __version__, paths

LOCAL_ONLY = ("sync", "template")
NOT_FLAGS = ("verb", "config", "read_only", "hold")
TIMEOUT = 30.0  # seconds: the daemon waits for the store's lock as any writer does


def through_daemon(args: Namespace) -> int | None:
    """The exit code once the daemon answered; None when this process is to submit itself."""
    if getattr(args, "read_only", False) or any(getattr(args, key, None) for key in LOCAL_ONLY):
        return None
    config = paths.config_path(getattr(args, "config", None))
    if config is None or not config.is_file():
        return None  # the full path says what is wrong with it
    from ugro_tui.core.daemon import where, wire
    from ugro_tui.errors import UgroError

    try:
        where.private_folder(create=False)
    except UgroError:
        return None  # said, with the job stored, by the full path
    flags = {k: v for k, v in vars(args).items() if k not in NOT_FLAGS}
    if flags.get("file"):
        flags["file"] = os.path.abspath(flags["file"])  # the daemon's working folder is not ours
    body = json.dumps({"config": os.path.realpath(config), "flags": flags, "hold": bool(args.hold)}).encode()
    try:
        status, raw = wire.exchange(str(where.socket_path()), "POST", "/api/v1/daemon/submit", body, TIMEOUT)
    except wire.NotSent:
        return None  # no daemon listens: submitting here stores the jobs once
    except wire.Cut as exc:  # sent: the jobs may be stored, so they are not submitted again here
        print(f"ugro submit: the daemon did not answer ({exc.strerror}); `ugro queue` shows whether the job was "
              "stored", file=sys.stderr)
        return 1
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or status == 404 or (status == 409 and "config" in doc):
        return None  # an older daemon without the route, another config, or an answer that is no answer
    if status != 201:
        print(doc.get("error") or f"ugro submit: the daemon refused: HTTP {status}", file=sys.stderr)
        return int(doc.get("exit") or 1)
    say(doc["ids"], doc.get("sweep"), doc.get("seed"))
    if doc.get("version") != __version__:
        from ugro_tui.core.daemon.client import version_note

        print(f"warning: {version_note(doc)}", file=sys.stderr)
    return 0


def say(ids: list[int], sweep_id: str | None, seed: int | None) -> None:
    """Each new job's id on a line of its own (scripts read them); a sweep's id and seed on stderr."""
    sys.stdout.write("".join(f"{i}\n" for i in ids))
    sys.stdout.flush()
    if sweep_id:
        said = f" (seed {seed})" if seed is not None else ""
        print(f"sweep {sweep_id}: {len(ids)} trial{'s' if len(ids) != 1 else ''}{said}; "
              f"`ugro sweep show {sweep_id}` ranks them", file=sys.stderr)
