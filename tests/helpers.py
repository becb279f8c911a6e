"""The tests' one way to run the `ugro` command and to wait for a condition (never for a fixed time)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Each pytest-xdist worker runs its loopback labs on addresses of its own (gw0: 127.0.0.x, gw1: 127.0.1.x, ...),
# so no two workers' nodes, ports or processes meet.
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


def host(last: int) -> str:
    """This worker's loopback address ending in `last` (2-4: the shared lab, 5: solo, 6-8: a fault lab, 9: nothing
    listens, 12-14: the sync lab, 15-16: the two-login lab)."""
    return f"127.0.{WORKER}.{last}"


# Ports a test's jobs and servers listen on: a block of this worker's own below the ephemeral range (32768-60999),
# where no process's random port (srun's listeners, a connection's source port) can take one between the check
# here and the job's bind (a Slurm trial once met another program on its rendezvous port under load).
PORTS = range(20000 + 1000 * WORKER, 20000 + 1000 * WORKER + 900)
SERVICE_PORTS = (PORTS.stop, PORTS.stop + 99)  # the labs' service_ports: services bind 127.0.0.1, which all labs share
_port_cursor = [0]


def free_ports(count: int, hosts: tuple[str, ...]) -> int:
    """The first of `count` consecutive ports of this worker's block free on every host, each run new (a port
    comes round again only after the whole block)."""
    for _ in range(len(PORTS)):
        port = PORTS.start + _port_cursor[0] % (len(PORTS) - count)
        _port_cursor[0] += count
        try:
            for offset in range(count):
                for address in hosts:
                    with socket.socket() as s:
                        s.bind((address, port + offset))
        except OSError:
            continue
        return port
    raise AssertionError(f"no run of {count} free ports in {PORTS}")


SCOPE: list[Path] = []  # this worker's temp folder (set once by conftest): its tests' jobs run under it


def job_processes(job_id: int | None = None, node: str | None = None, store: str | None = None,
                  under: Path | None = None) -> list[int]:
    """The live processes of ugro jobs started by this worker's tests, or by one test's lab if `under` names its
    workdirs (job ids and node names repeat across the workers' labs and across one worker's tests; a job's
    processes run in its node's workdir, under this worker's temp folder)."""
    from ugro_tui.sim.loopback import job_processes as every

    roots = SCOPE if under is None else [under]
    mine = []
    for pid in every(job_id, node, store):
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        if any(cwd == root or root in cwd.parents for root in roots):
            mine.append(pid)
    return mine


def through_sshd(config: Path, node: str) -> dict[str, str]:
    """The environment a process started over SSH on `node` would have: the GPU simulator counts a process for
    a node only if it came through that node's sshd (every worker's lab has a `node2`)."""
    import tomllib

    found = next(n for n in tomllib.loads(config.read_text())["nodes"] if n["name"] == node)
    return {"SSH_CONNECTION": f"127.0.0.1 1 {found['host']} {found['port']}"}


def needs_torch() -> None:
    """Skip (the module, or the test) where torch is not installed, without importing it: an import only to
    check cost each worker 1.2 s of CPU at collection."""
    import importlib.util

    import pytest

    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch", allow_module_level=True)


def run_ugro(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ugro_tui", *args], capture_output=True, text=True, timeout=timeout)


def ugro(config: Path, *args: str, timeout: float = 60, strict: bool = True) -> subprocess.CompletedProcess[str]:
    """`ugro VERB --config CONFIG ARGS...` (the config goes before any `--`). strict: a traceback or an
    "unexpected error" on stderr fails the test whatever the exit code."""
    done = run_ugro(args[0], "--config", str(config), *args[1:], timeout=timeout)
    if strict:
        assert "Traceback" not in done.stderr and "unexpected error" not in done.stderr, done.stderr
    return done


def wait(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1,
         detail: Callable[[], Any] | None = None) -> float:
    """Poll `predicate` until it is true; returns the seconds it took, fails naming `what` after `timeout`
    (with `detail()`: what the test can say about why, such as the job as stored)."""
    began = time.monotonic()
    while True:
        asked = time.monotonic()
        if predicate():
            return time.monotonic() - began
        if time.monotonic() - began >= timeout:
            raise AssertionError(f"timed out waiting for {what}" + (f": {detail()}" if detail else ""))
        # A predicate that runs `ugro` costs a process start (0.1 s of CPU): asking at most half the time leaves
        # the CPU to what the test waits for (on 2 cores, 4 workers' polls once took a third of the suite's CPU).
        time.sleep(max(every, time.monotonic() - asked))


def job(config: Path, job_id: int) -> dict:
    """The job as the store has it now, as `ugro show ID --json` prints it: the same code, run in this process
    (the tests ask it hundreds of times while they wait; a new process each time cost 0.1 s of CPU, a tenth of
    the suite's). test_queue_cli checks that the command prints the same."""
    from ugro_tui.commands.jobs import show_doc
    from ugro_tui.config import load_cluster
    from ugro_tui.core.jobs.store import JobStore

    return json.loads(json.dumps(show_doc(JobStore().get(job_id), load_cluster(config))))


def jobs(config: Path) -> dict[int, dict]:
    """Every job as the store has it now, by id, as `ugro queue --json` prints them (in this process, as job();
    the store is this test's, from its XDG_STATE_HOME: `config` only keeps the call shape of the command's)."""
    from ugro_tui.core.jobs.store import JobStore

    return {d.get("id"): d for d in json.loads(json.dumps(JobStore().all_json()))}


def logs(config: Path, job_id: int, *, rank: int | None = None, node: str | None = None) -> str:
    """`ugro logs ID [--rank R] [--node N]` as it prints the log copies (in this process, as job()); "" for a
    job that has not run yet (the command says so on stderr)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from ugro_tui.commands.logs import follow_logs
    from ugro_tui.core.jobs.store import JobStore
    from ugro_tui.errors import UgroError

    async def read() -> bytes:
        try:
            return b"".join([chunk async for chunk in follow_logs(JobStore(), job_id, None, rank=rank, node=node)])
        except UgroError:
            return b""

    with ThreadPoolExecutor(1) as thread:  # a loop of its own, beside an async test's
        return thread.submit(asyncio.run, read()).result().decode(errors="replace")


def steps_done(text: str) -> list[int]:
    """The steps `examples/train_tiny.py` printed (`step N loss ...`), in order."""
    return [int(s) for s in re.findall(r"^step (\d+) loss", text, re.MULTILINE)]
