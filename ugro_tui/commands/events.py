"""`ugro events [--follow] [--json]`: what happened to jobs, nodes and GPUs (the last 1,000 events)."""

from __future__ import annotations

import json
import sys
import time
from argparse import Namespace

from ugro_tui.commands.table import DASH, render
from ugro_tui.core.alerts.journal import journal_path, read_events
from ugro_tui.core.alerts.rules import Event

FOLLOW_EVERY = 0.5


def row(event: Event) -> tuple[str, ...]:
    return (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.t)), event.kind,
            DASH if event.job_id is None else str(event.job_id), event.node or DASH, event.message)


def run(args: Namespace) -> int:
    path = journal_path()
    events, offset = read_events(path)
    if args.json and not args.follow:
        print(json.dumps({"events": [e.to_json() for e in events]}))
        return 0
    if args.json:
        for event in events:
            print(json.dumps(event.to_json()), flush=True)
    elif events or not args.follow:
        print(render(("TIME", "EVENT", "JOB", "NODE", "MESSAGE"), [row(e) for e in events]) if events
              else "no events yet (the dispatcher writes them: the app or `ugro scheduler`)")
    if not args.follow:
        return 0
    while True:  # until Ctrl-C; a line per event as the dispatcher writes it
        time.sleep(FOLLOW_EVERY)
        events, offset = read_events(path, offset)
        for event in events:
            print(json.dumps(event.to_json()) if args.json else "  ".join(row(event)), flush=True)
        sys.stdout.flush()
