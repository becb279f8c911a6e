"""`ugro services [--json]` and `ugro forward JOB [--local-port L]`."""

from __future__ import annotations

import json
import signal
import sys
import time
from argparse import Namespace
from typing import Any

from ugro_tui.commands.jobs import parse_ids
from ugro_tui.commands.table import DASH, render
from ugro_tui.config import Cluster
from ugro_tui.core.jobs.describe import age
from ugro_tui.core.jobs.model import Job
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.errors import UgroError, UsageError


def services_of(jobs: list[Job]) -> list[Job]:
    """Services not ended: running, waiting to start or to restart, held."""
    return [j for j in jobs if j.spec.kind == "service" and not j.state.finished]


def service_doc(job: Job) -> dict[str, Any]:
    status = job.service
    return {"id": job.id, "name": job.spec.name, "state": str(job.state), "health": job.health,
            "endpoint": status.endpoint if status else None,
            "workers": {n: p for n, p in status.workers} if status else {},
            "restarts": status.restarts if status else 0,
            "last_probe_ms": status.last_latency if status else None,
            "last_probe_at": status.last_probe_at or None if status else None,
            "last_error": status.last_error if status else "", "reason": job.reason, "started_at": job.started_at}


def list_services(args: Namespace, cluster: Cluster) -> int:
    found = services_of(JobStore().all())
    if args.json:
        print(json.dumps({"services": [service_doc(j) for j in found]}))
        return 0
    now = time.time()
    rows = []
    for job in found:
        s = job.service
        ms = s.last_latency if s else None
        rows.append((str(job.id), job.spec.name, job.health, (s.endpoint if s else None) or DASH,
                     str(s.restarts if s else 0), DASH if ms is None else f"{ms:.0f} ms",
                     age(now - job.started_at) if job.started_at and job.state.active else DASH,
                     job.reason or DASH))
    print(render(("ID", "NAME", "HEALTH", "ENDPOINT", "RESTARTS", "PROBE", "UP", "REASON"), rows)
          if rows else "no services (start one with `ugro submit --kind service ...`)")
    return 0


def forward(args: Namespace, cluster: Cluster) -> int:
    [job_id] = parse_ids([args.job])
    if not 0 <= args.local_port <= 65535:
        raise UsageError(f"ugro forward: --local-port {args.local_port}: expected a port number 0-65535")
    job = JobStore().get(job_id)
    if job.spec.kind != "service" and not job.spec.jupyter:
        raise UsageError(f"ugro forward: job {job_id} ({job.spec.name}) is a {job.spec.kind} job, not a service"
                         " nor a session with --jupyter")
    if job.state.finished:
        raise UgroError(f"ugro forward: service job {job_id} is {job.state}: {job.reason or 'nothing to reach'}")
    from ugro_tui.core.daemon.client import require

    daemon = require(cluster, "forward")  # the forward rides the daemon's connection to the head node
    where = job.service.endpoint if job.service and job.service.endpoint else "its head node"
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.default_int_handler)
    try:
        for line in daemon.lines("POST", "daemon/forward", {"job": job.id, "local_port": args.local_port},
                                 timeout=30):
            if line.get("kind") == "listening":
                print(f"http://127.0.0.1:{line['port']}/", flush=True)
                print(f"forwarding to job {job.id} ({job.spec.name}) on {where} through the ugro daemon; "
                      "Ctrl-C stops", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        return 0
    print("ugro forward: the daemon went away, and the forward with it", file=sys.stderr)
    return 1
