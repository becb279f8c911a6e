"""Runs the doctor: connect to every node in parallel, probe it, test the rendezvous path, judge the results."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import shlex
import time
from collections.abc import Callable
from pathlib import Path

from ugro_tui.config import Cluster, Node
from ugro_tui.core.check import check_node
from ugro_tui.core.doctor.checks import Check, NodeFacts, Report, Status, cluster_checks, node_checks
from ugro_tui.core.doctor.data_checks import data_checks
from ugro_tui.core.doctor.service_checks import service_checks
from ugro_tui.core.doctor.shared_dirs import checkpoint_checks
from ugro_tui.core.doctor.starving import starving_checks
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.pool import Pool
from ugro_tui.core.services.follow import held_ports
from ugro_tui.core.telemetry.model import ClusterState
from ugro_tui.core.telemetry.monitor import AGENT_SOURCE
from ugro_tui.core.transport import (
    ConnectError,
    LineStream,
    Transport,
    export_env,
    path_word,
    python_command,
)

HERE = Path(__file__).resolve().parent
PROBE_SOURCE = (HERE / "probe.py").read_text().replace("AGENT = None", f"AGENT = {AGENT_SOURCE.decode()!r}", 1).encode()
PROBE_PATH = f"~/.cache/ugro/doctor-{hashlib.sha256(PROBE_SOURCE).hexdigest()[:12]}.py"
LISTEN_SECONDS = 30.0
CHECK_ORDER = ("ssh", "host key", "python", "torch", "cuda", "nccl", "torchrun", "driver", "disk", "clock",
               "interface", "rendezvous", "checkpoints", "data", "cpu", "slurm", "partition", "account", "sbatch")
PROBE_TIMEOUT = 60.0  # importing torch on a cold disk is slow


def probe_command(node: Node, *args: str) -> str:
    """The probe, run the way jobs run: the node's python, with its env (and a simulated node's stand-ins)."""
    return (f"{node.prelude}{export_env(node.env)}"
            f"exec {python_command(node)} {path_word(PROBE_PATH)} {' '.join(map(shlex.quote, args))}")


async def _connect(node: Node, cluster: Cluster, f: NodeFacts, transport: Transport) -> bool:
    """The ssh and host key checks (`ugro nodes --check`'s own), on the transport the doctor goes on with."""
    result = await check_node(node, cluster, transport=transport)
    f.rtt_s = result.rtt
    if result.ok:
        how = "local, no SSH" if node.is_local else (
            f"connected in {(result.seconds - result.rtt) * 1000:.0f} ms, round trip {result.rtt * 1000:.0f} ms")
        f.ssh = Check(node.name, "ssh", Status.OK, how)
        return True
    name = "host key" if result.result in ("unknown-host-key", "host-key-mismatch") else "ssh"
    f.ssh = Check(node.name, name, Status.FAIL, result.detail, _connect_hint(result.result))
    return False


def _connect_hint(kind: str) -> str:
    return {
        "unknown-host-key": "compare the fingerprint with the node's, then `ugro nodes --check --accept-new` "
                            "(or a in the Nodes view)",
        "host-key-mismatch": "if the node was reinstalled, remove its old line from known_hosts; otherwise "
                             "stop: someone may be in the middle",
        "auth-failed": "install your public key on the node (ssh-copy-id) or set identity_file",
        "refused": "is sshd running on the node, on this port?",
        "timeout": "is the node up and the address right? raise connect_timeout for slow links",
        "unreachable": "check the host name and the network",
        "error": "check the login shell's startup files on the node",
    }.get(kind, "see the detail")


async def _probe(node: Node, cluster: Cluster, f: NodeFacts, transport: Transport, target: dict | None) -> None:
    request = {"workdir": node.workdir, "ifname": node.socket_ifname, "hosts": [n.host for n in cluster.nodes],
               "rendezvous": target}
    done = await transport.run(probe_command(node, "facts", json.dumps(request)), timeout=PROBE_TIMEOUT)
    arrived = time.time()
    if not done.ok:
        last = (done.stderr.strip().splitlines() or [f"exit {done.exit_code}"])[-1]
        f.probe_error = f"the node's python failed: {last[:200]}"
        return
    try:
        f.facts = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        f.probe_error = f"the probe printed something unexpected: {done.stdout[:120]!r}"
        return
    # The time was read just before the answer left, so it was read at most one round trip before it arrived.
    f.clock_offset_s = f.facts["time"] - arrived
    if target is not None:
        f.rendezvous = f.facts.get("rendezvous", {"ok": False, "error": "no answer"}) | {
            "target": f"{target['host']}:{target['port']}"}


async def _listen(cluster: Cluster, master: Node, transport: Transport) -> tuple[LineStream | None, dict | str]:
    """A short-lived listener in the master's rendezvous range: (its stream, the target), or (None, why not)."""
    lo, hi = cluster.rendezvous_ports
    token = secrets.token_hex(8)
    listener = await transport.stream(probe_command(master, "listen", str(lo), str(hi), token, str(LISTEN_SECONDS)))
    first: dict = {}
    async for line in listener:
        with contextlib.suppress(ValueError):
            first = json.loads(line)
        break
    if "port" not in first:
        await listener.close()
        return None, f"cannot listen on {master.name} ({lo}-{hi}): {first.get('error', 'no answer')}"
    return listener, {"host": master.host, "port": first["port"], "token": token}


async def run_doctor(cluster: Cluster, *, pool: Pool, on_check: Callable[[Check], None] | None = None,
                     telemetry: ClusterState | None = None, store: JobStore | None = None) -> Report:
    """Every check, over the daemon's pool; `on_check` sees each as it is known (the app shows them live). The
    first node is the master. With the daemon's telemetry, a node whose CPU starves a running job's GPUs warns."""
    transports = {node.name: pool.get(node.name) for node in cluster.nodes}
    master = cluster.nodes[0]
    facts = {n.name: NodeFacts(n.name, n.host) for n in cluster.nodes}
    report = Report(master=master.name)

    def emit(check: Check) -> None:
        report.checks.append(check)
        if on_check:
            on_check(check)

    async def reach(node: Node) -> bool:
        f = facts[node.name]
        connected = await _connect(node, cluster, f, transports[node.name])
        emit(f.ssh)
        if not connected:
            return False
        if not node.is_local:
            emit(Check(node.name, "host key", Status.OK, "matches known_hosts"))
        try:
            await transports[node.name].copy_file(PROBE_SOURCE, PROBE_PATH)
        except (ConnectError, TimeoutError, RuntimeError) as exc:
            f.probe_error = str(exc)
            return False
        return True

    async def probe(node: Node, target: dict | None) -> None:
        try:
            await _probe(node, cluster, facts[node.name], transports[node.name], target)
        except (ConnectError, TimeoutError, RuntimeError, OSError) as exc:  # the node went away in the middle
            facts[node.name].probe_error = str(exc)

    listener = None
    try:
        up = await asyncio.gather(*(reach(n) for n in cluster.nodes))
        target: dict | str = f"not tested: the master {master.name} is not reachable"
        if up[0]:
            try:
                listener, target = await _listen(cluster, master, transports[master.name])
            except (ConnectError, TimeoutError, OSError) as exc:
                target = f"cannot listen on {master.name}: {exc}"
        await asyncio.gather(*(probe(n, target if isinstance(target, dict) else None)
                               for n, ok in zip(cluster.nodes, up, strict=True) if ok))
        if isinstance(target, str):
            lo, hi = cluster.rendezvous_ports
            for f in facts.values():
                f.rendezvous = {"ok": False, "error": target, "target": f"{master.host}:{lo}-{hi}",
                                "skip": target.startswith("not tested")}
        for node in cluster.nodes:
            if facts[node.name].ssh is None or facts[node.name].ssh.status is Status.OK:
                for check in node_checks(facts[node.name], facts[master.name], node.python):
                    emit(check)
        for check in cluster_checks(list(facts.values())):
            emit(check)
        reached = [n.name for n, ok in zip(cluster.nodes, up, strict=True) if ok]
        for check in await checkpoint_checks(cluster, transports, reached):
            emit(check)
        for check in await data_checks(cluster, transports, reached):
            emit(check)
        jobs = await asyncio.to_thread((store or JobStore()).active)
        for check in await service_checks(cluster, transports, reached, held_ports(jobs, but=-1)):
            emit(check)
        if telemetry is not None:
            for check in starving_checks(telemetry, jobs):
                emit(check)
        if cluster.backend == "slurm" and up[[n.name for n in cluster.nodes].index(cluster.slurm.login)]:
            from ugro_tui.core.doctor.slurm_checks import slurm_checks

            for check in await slurm_checks(cluster, transports):
                emit(check)
        report.clock_offsets = {n: f.clock_offset_s for n, f in facts.items() if f.clock_offset_s is not None}
        report.gpu_counts = {n: f.facts["driver"].get("gpus", 0) for n, f in facts.items() if f.facts is not None}
        order = {n.name: i for i, n in enumerate(cluster.nodes)}
        report.checks.sort(key=lambda c: (order.get(c.node, len(order)), CHECK_ORDER.index(c.name)
                                          if c.name in CHECK_ORDER else len(CHECK_ORDER)))
    finally:
        if listener is not None:
            await listener.close()
    return report

