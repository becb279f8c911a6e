"""`ugro session`: reserve GPUs for a shell, reach it, extend it, end it. A session is a job (kind `session`) that the
daemon places, follows and gives back when idle; this command only submits it and opens the shell."""

from __future__ import annotations

import getpass
import os
import shlex
import sys
import time
from argparse import Namespace

from ugro_tui.commands.jobs import parse_ids
from ugro_tui.commands.table import DASH, render
from ugro_tui.config import Cluster
from ugro_tui.core.jobs.model import Job, JobSpec, JobState, spec_type_problem
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.sessions import shell
from ugro_tui.core.sessions.actions import end_session, extend_session
from ugro_tui.core.sessions.watch import fresh, minutes, session_columns
from ugro_tui.errors import UgroError, UsageError

WAIT_STEP = 0.2
JUPYTER_WITHIN = 120.0  # seconds JupyterLab may take to start


def parse_duration_min(text: str) -> float:
    """`--idle-stop`: minutes, or with a unit: 30s, 5m, 2h."""
    scale = {"s": 1 / 60, "m": 1.0, "h": 60.0}.get(text[-1:])
    number = text[:-1] if scale is not None else text
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        raise UsageError(f"ugro session: --idle-stop {text!r}: expected minutes, or 30s, 5m, 2h") from None
    if not 0 < value < 1e7:
        raise UsageError(f"ugro session: --idle-stop {text!r}: expected a time above 0")
    return value


def spec_of(args: Namespace, cluster: Cluster) -> JobSpec:
    node, indexes = args.node, ()
    if node and ":" in node:
        node, _, gpus = node.partition(":")
        try:
            indexes = tuple(int(g) for g in gpus.split(","))
        except ValueError:
            raise UsageError(f"ugro session: --node {args.node!r}: expected NODE or NODE:GPU[,GPU]") from None
    if node and node not in {n.name for n in cluster.nodes}:
        names = ", ".join(n.name for n in cluster.nodes)
        raise UsageError(f"ugro session: --node {node!r}: no such node in {cluster.source} ({names})")
    gpus = len(indexes) if indexes else args.gpus
    if indexes and args.gpus not in (1, gpus):
        raise UsageError(f"ugro session: --node {args.node} names {len(indexes)} GPUs; --gpus says {args.gpus}")
    spec = JobSpec(name=args.name or f"{getpass.getuser()}-session", command=("session",), kind="session",
                   gpus_per_node=gpus, nodes=(node,) if node else (), min_gpu_mem_gb=args.min_gpu_mem,
                   hours=args.hours, idle_stop_min=parse_duration_min(args.idle_stop), gpu_indexes=indexes,
                   priority=args.priority, workdir=args.workdir, jupyter=args.jupyter)
    problem = spec_type_problem(spec)
    if problem:
        raise UsageError(f"ugro session: {problem}")
    return spec


def start(args: Namespace, cluster: Cluster) -> int:
    if cluster.backend != "ssh":
        raise UsageError("ugro session: sessions run on ugro's own dispatcher; on Slurm, `salloc` gives a shell")
    spec = spec_of(args, cluster)
    from ugro_tui.core.daemon.client import kick, require

    require(cluster, "session")  # a session is placed and followed by the daemon
    store = JobStore()
    [job] = store.submit([spec])
    kick()
    print(f"session {job.id}: waiting for {spec.gpus_per_node} GPU{'s' if spec.gpus_per_node != 1 else ''}",
          file=sys.stderr, flush=True)
    try:
        job = wait_placed(store, job.id, no_wait=args.no_wait)
    except KeyboardInterrupt:
        from ugro_tui.core.jobs.actions import cancel

        print(cancel(store, job.id).replace(": cancel", ": not waiting any more; cancel"), file=sys.stderr)
        return 130
    return reach(args, cluster, job)


def wait_placed(store: JobStore, job_id: int, *, no_wait: bool) -> Job:
    """Until the daemon starts it (printing why it waits, when that changes). `no_wait`: the first reason the
    daemon gives ends the wait, and the session with it."""
    said = ""
    while True:
        job = store.get(job_id)
        if job.state is JobState.RUNNING:
            return job
        if job.state.finished:
            raise UgroError(f"ugro session: session {job_id} {job.state}: {job.reason}")
        if job.state is JobState.QUEUED and job.reason and job.reason != said:
            if no_wait or job.reason.startswith("can never fit"):
                from ugro_tui.core.jobs.actions import cancel

                cancel(store, job_id)
                why = "" if job.reason.startswith("can never fit") else "no GPU for it now (--no-wait): "
                raise UgroError(f"ugro session: {why}{job.reason}")
            said = job.reason
            print(f"session {job_id} waits: {said}", file=sys.stderr, flush=True)
        time.sleep(WAIT_STEP)


def reach(args: Namespace, cluster: Cluster, job: Job) -> int:
    where = ", ".join(f"{n}:{','.join(map(str, g))}" for n, g in job.placement)
    status = job.session or fresh(job)
    print(f"session {job.id} holds {where} until {time.strftime('%H:%M', time.localtime(status.ends_at))}; "
          f"it is given back after {minutes(job.spec.idle_stop_min * 60)} idle", file=sys.stderr)
    if args.ssh_config:
        path = shell.add_entry(cluster, job)
        print(f"ssh ugro-session-{job.id} (and VS Code Remote-SSH) reach it: {path}", file=sys.stderr)
        _offer_include(path)
    argv = shell.attach_argv(cluster, job)
    if job.spec.jupyter:
        print(f"a shell in it: ugro session attach {job.id}", file=sys.stderr)
        return jupyter(cluster, job, args.local_port)
    if args.no_attach:
        print(shlex.join(argv), flush=True)
        return 0
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 0  # not reached


def jupyter(cluster: Cluster, job: Job, local_port: int) -> int:
    """Wait for JupyterLab to say its port and token, then forward it here through the daemon (as `ugro forward`
    does for a service) and print its URL, until Ctrl-C; the session goes on without it."""
    import signal

    from ugro_tui.core.daemon.client import require

    store = JobStore()
    began = time.monotonic()
    while not (job.session and job.session.jupyter_port):
        if job.state is not JobState.RUNNING:
            raise UgroError(f"ugro session: session {job.id} is {job.state}: {job.reason}")
        if time.monotonic() - began > JUPYTER_WITHIN:
            raise UgroError(f"ugro session: JupyterLab did not start in session {job.id} within {JUPYTER_WITHIN:g}s;"
                            f" its output: ugro logs {job.id}")
        time.sleep(WAIT_STEP)
        job = store.get(job.id)
    daemon = require(cluster, "session")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.default_int_handler)
    try:
        for line in daemon.lines("POST", "daemon/forward", {"job": job.id, "local_port": local_port}, timeout=30):
            if line.get("kind") == "listening":
                print(f"http://127.0.0.1:{line['port']}/lab?token={job.session.jupyter_token}", flush=True)
                print(f"JupyterLab of session {job.id}, forwarded through the ugro daemon; Ctrl-C stops the forward "
                      f"(the session goes on: `ugro forward {job.id}` reaches it again)", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        return 0
    print("ugro session: the daemon went away, and the forward with it", file=sys.stderr)
    return 1


def _offer_include(path) -> None:
    """~/.ssh/config includes ugro's file only when the user says so."""
    if shell.included(path=path):
        return
    line = shell.include_line(path)
    if sys.stdin.isatty():
        answer = input(f"add `{line}` at the top of ~/.ssh/config? [y/N] ").strip().lower()
        if answer in ("y", "yes"):
            shell.add_include(path=path)
            return
    print(f"to reach it by name, put `{line}` at the top of ~/.ssh/config", file=sys.stderr)


def _session(store: JobStore, text: str) -> Job:
    [job_id] = parse_ids([text])
    job = store.get(job_id)
    if job.spec.kind != "session":
        raise UsageError(f"ugro session: job {job_id} ({job.spec.name}) is a {job.spec.kind} job, not a session")
    return job


def attach(args: Namespace, cluster: Cluster) -> int:
    job = _session(JobStore(), args.id)
    if job.state is not JobState.RUNNING:
        raise UgroError(f"ugro session attach: session {job.id} is {job.state}: {job.reason or 'it holds no GPUs'}")
    argv = shell.attach_argv(cluster, job)
    if args.no_attach:
        print(shlex.join(argv))
        return 0
    os.execvp(argv[0], argv)
    return 0


def end(args: Namespace, cluster: Cluster) -> int:
    store = JobStore()
    print(end_session(store, _session(store, args.id).id))
    from ugro_tui.core.daemon.client import kick

    kick()
    return 0


def extend(args: Namespace, cluster: Cluster) -> int:
    store = JobStore()
    job = _session(store, args.id)
    if job.state is not JobState.RUNNING:
        raise UgroError(f"ugro session extend: session {job.id} is {job.state}; only a running session is extended")
    job = extend_session(store, job.id, args.hours)
    assert job.session is not None
    print(f"{job.id}: ends at {time.strftime('%H:%M', time.localtime(job.session.ends_at))} at the latest; "
          f"idle from now on, it is given back after {minutes(job.spec.idle_stop_min * 60)}")
    return 0


def list_sessions(args: Namespace, cluster: Cluster) -> int:
    now = time.time()
    found = [j for j in JobStore().all() if j.spec.kind == "session" and not j.state.finished]
    rows = [(str(j.id), j.spec.name, str(j.state), placement(j), *session_columns(j, now)) for j in found]
    print(render(("ID", "NAME", "STATE", "GPUS", "SHELLS", "IDLE", "LEFT"), rows) if rows
          else "no sessions (start one with `ugro session`)")
    return 0


def placement(job: Job) -> str:
    return ", ".join(f"{n}:{','.join(map(str, g))}" for n, g in job.placement) or DASH
