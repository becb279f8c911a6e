"""The queue verbs scripts rely on: submit, show, cancel, hold, release, retry (`queue` is commands/queue.py).
What only `show` or a change of state needs is imported there: a submit loads no more than it uses."""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from typing import Any

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.model import Job, JobSpec
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.errors import UgroError, UsageError


def parse_ids(values: list[str]) -> list[int]:
    ids = []
    for value in values:
        if not (value.isascii() and value.isdecimal()):
            raise UsageError(f"ugro: {value!r} is not a job id (job ids are numbers; `ugro queue` lists them)")
        ids.append(int(value))
    return ids


def submit(args: Namespace, cluster: Cluster) -> int:
    """Without a daemon of this config (commands/submit.py): checked and stored here, each id printed once all
    of them are stored (a sweep is one write)."""
    from ugro_tui.commands.submit import say
    from ugro_tui.core.jobs.request import queue, spec_from_request

    spec, search = spec_from_request(args, cluster, cards=lambda: _cards(cluster))
    sent = {}
    if spec.sync:
        spec, sent = _sync(spec, cluster)
    record = tuple((n, *s) for n, s in sorted(sent.items()))
    jobs, sweep_id, search = queue(JobStore(), spec, search, hold=args.hold, sync_sent=record)
    say([j.id for j in jobs], sweep_id, search.seed)
    if not args.hold:
        from ugro_tui.core.daemon.client import nudge

        warning = nudge(cluster)
        if warning:
            print(warning, file=sys.stderr)
    return 0


def _cards(cluster: Cluster) -> list:
    """The cluster's GPUs for a `--gpu-mem` check: as the running daemon sees them, else as the config says."""
    from ugro_tui.core.daemon.client import connect
    from ugro_tui.core.jobs.request import sim_cards
    from ugro_tui.core.jobs.sharing import cards_of

    try:
        daemon = connect(cluster, start=False)
        found = cards_of(daemon.call("GET", "cluster", timeout=2.0)) if daemon is not None else []
    except (UgroError, OSError):
        found = []
    return found or sim_cards(cluster)


def _sync(spec: JobSpec, cluster: Cluster) -> tuple[JobSpec, dict[str, tuple[int, int]]]:
    """Keep the tree as submitted, then have the daemon copy it to the nodes the job may run on (a node that
    cannot be reached now, or every node when no daemon runs, gets it at launch). Returns the spec that runs in
    the tree's folder, and per node the files and bytes that travelled."""
    from ugro_tui.commands.sync import ProgressLine
    from ugro_tui.core.daemon import ask
    from ugro_tui.core.daemon.client import connect
    from ugro_tui.core.jobs.placement import NodeCapacity, allowed
    from ugro_tui.core.sync.service import synced_spec

    synced, tree, _ = synced_spec(spec, cluster)
    print(f"sync: {tree.summary()}", file=sys.stderr)
    daemon = connect(cluster)
    if daemon is None:
        print("sync: the tree is kept; no ugro daemon runs, so it travels when the job is placed", file=sys.stderr)
        return synced, {}
    nodes = [n.name for n in cluster.nodes if allowed(Job(0, spec), NodeCapacity(n.name, n.labels))]
    progress = ProgressLine()
    results = ask.push(daemon, tree.hash, nodes, progress)
    progress.end()
    sent = {}
    for name, result in results.items():
        if "error" in result:
            why = result["error"] if result["error"].startswith(name) else f"{name}: {result['error']}"
            print(f"sync: {why}; it gets the code when a job is placed there", file=sys.stderr)
        else:
            sent[name] = (result["files_sent"], result["bytes_sent"])
    return synced, sent


def list_templates(args: Namespace) -> int:
    from ugro_tui.core.jobs import templates as store

    if args.name:
        print(store.path_of(args.name).read_text(), end="")
        return 0
    found = store.names()
    if not found:
        print(f"no templates yet; save one from the launch form (n, then ctrl+t) into {store.user_dir()}")
        return 0
    rows = [(name, str(store.path_of(name))) for name in found]
    from ugro_tui.commands.table import render

    print(render(("TEMPLATE", "FILE"), rows))
    return 0


def show(args: Namespace, cluster: Cluster) -> int:
    [job_id] = parse_ids([args.job])
    job = JobStore().get(job_id)
    if args.json:
        print(json.dumps(show_doc(job, cluster), indent=1))
        return 0
    from ugro_tui.core.jobs import events
    from ugro_tui.core.jobs.describe import detail, event_lines  # the text's helpers read logs: not for --json
    from ugro_tui.core.ledger.book import Book
    from ugro_tui.core.ledger.report import energy_lines

    row = Book(reader=True).jobs.get(job.id)  # what its GPUs used, as the daemon's ledger recorded it
    print("\n".join(detail(job) + energy_lines(row, cluster) + event_lines(events.read(job.id))))
    return 0


def show_doc(job: Job, cluster: Cluster) -> dict[str, Any]:
    """`ugro show ID --json`: the job as stored, its state changes and what its GPUs used."""
    from ugro_tui.core.jobs import events
    from ugro_tui.core.ledger.book import Book
    from ugro_tui.core.ledger.report import energy_doc

    doc = job.to_json()
    doc["states"] = [{"t": t, "went": went} for t, went in events.states(job.id)]
    doc.update(energy_doc(Book(reader=True).jobs.get(job.id), cluster))
    return doc


def change_state(args: Namespace, cluster: Cluster) -> int:
    """cancel / hold / release / retry each job in turn; exit 2 on the first unknown id or illegal change."""
    store = JobStore()
    from ugro_tui.core.jobs.actions import ACTIONS

    for job_id in parse_ids(args.jobs):
        print(ACTIONS[args.verb](store, job_id))
    from ugro_tui.core.daemon.client import kick

    kick()  # a running daemon acts on it now (a cancel stops the processes within a round trip)
    return 0
