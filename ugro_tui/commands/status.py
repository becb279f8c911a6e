"""`ugro status [--json] [--watch]`: every node's GPUs as a table or JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from argparse import Namespace

from ugro_tui.commands.table import DASH, fmt, render
from ugro_tui.config import Cluster
from ugro_tui.core.daemon.client import Client, NoDaemon, connect, require, subscribe
from ugro_tui.core.telemetry.model import ClusterState, NodeState, byte_rate, short_model
from ugro_tui.core.telemetry.users import UserUsage, by_user, job_users
from ugro_tui.core.telemetry.wire import apply_hello, apply_wire
from ugro_tui.errors import UgroError


def format_state(state: ClusterState, cluster_name: str, now: float) -> str:
    h = state.health()
    util = fmt(h.utilization_pct, "%")
    head = (f"{cluster_name}: {h.nodes_healthy}/{h.nodes_total} nodes healthy · {h.gpus_total} GPUs "
            f"({h.gpus_busy} busy) · {h.memory_used_gb:.1f}/{h.memory_total_gb:.1f} GB · util {util}")
    rows = []
    for node in state.nodes.values():
        label = str(node.state)
        if node.state is NodeState.OFFLINE and node.next_retry_at:
            label += f" (retry {max(0.0, node.next_retry_at - now):.0f}s)"
        if node.state is not NodeState.ONLINE or not node.gpus:
            rows.append((node.name, label, DASH, DASH, DASH, DASH, DASH, DASH, node.error or _slurm_note(node)))
            continue
        for gpu in node.gpus:
            mem = (f"{fmt(_gb(gpu.memory_used_mib), '', 1)}/{fmt(_gb(gpu.memory_total_mib), '', 1)} GB")
            power = f"{fmt(gpu.power_w)}/{fmt(gpu.power_limit_w)} W"
            procs = ", ".join(f"{p.pid}:{p.user or DASH}" for p in gpu.processes)
            rows.append((node.name, label, str(gpu.index), short_model(gpu.name), fmt(gpu.utilization_pct, "%"),
                         mem, fmt(gpu.temperature_c, "°C"), power, procs or (node.error or "")))
    table = render(("NODE", "STATE", "GPU", "MODEL", "UTIL", "MEMORY", "TEMP", "POWER", "PROCESSES / NOTE"), rows)
    return head + "\n" + table + host_table(state)


def _slurm_note(node) -> str:
    a = node.slurm
    if a is None:
        return ""
    return (f"slurm {a.state} · GPUs {a.gpus_used}/{a.gpus} allocated · {','.join(a.partitions)}"
            + ("" if a.live else " (allocation only)"))


def host_table(state: ClusterState) -> str:
    """Each online node as a machine, under the GPU table (empty when no agent sent host metrics)."""
    rows = []
    for node in state.nodes.values():
        h = node.host
        if h is None or node.state is not NodeState.ONLINE:
            continue
        mem = f"{fmt(_gb(h.mem_used_mib), '', 1)}/{fmt(_gb(h.mem_total_mib), '', 1)} GB"
        mem += " (limit)" if h.mem_limited else ""
        net = f"↓{byte_rate(h.net_rx_bps)}/s ↑{byte_rate(h.net_tx_bps)}/s"
        net += " (loopback)" if h.net_loopback_only else ""
        load = "/".join(fmt(v, "", 1) for v in (h.load1, h.load5, h.load15))
        rows.append((node.name, fmt(h.cpu_pct, "%"), fmt(h.cores), load, mem, fmt(_gb(h.swap_used_mib), " GB", 1),
                     fmt(h.disk_free_gib, " GB", 1), net, _uptime(h.uptime_s)))
    if not rows:
        return ""
    return "\n\n" + render(("NODE", "CPU", "CORES", "LOAD 1/5/15", "RAM", "SWAP", "DISK FREE", "NET", "UP"), rows)


def _uptime(seconds: int | None) -> str:
    if seconds is None:
        return DASH
    days, rest = divmod(seconds, 86400)
    return f"{days}d {rest // 3600}h" if days else f"{rest // 3600}h {rest % 3600 // 60}m"


def users_of(state: ClusterState, cluster: Cluster) -> list[UserUsage]:
    import getpass

    from ugro_tui.core.jobs.store import JobStore

    me = getpass.getuser()
    node_users = {n.name: n.user or me for n in cluster.nodes}
    return by_user(state, job_users(JobStore().active(), node_users))


def format_users(users: list[UserUsage]) -> str:
    rows = [(u.user, str(len(u.gpus)), f"{u.gpu_memory_mib / 1024:.1f} GB", str(u.processes), str(u.jobs),
             ", ".join(u.nodes) or DASH) for u in users]
    return render(("USER", "GPUS", "GPU MEMORY", "PROCESSES", "UGRO JOBS", "NODES"), rows) if rows else "no GPU users"


def state_doc(state: ClusterState, cluster: Cluster) -> dict:
    """The state as JSON, each GPU with the sharing jobs on it (`shared_by`, `declared_mib`) and whom it is yielded
    to (`yielded_to`), and the yields in effect (`yielded`)."""
    from ugro_tui.core.jobs.sharing import annotate
    from ugro_tui.core.jobs.store import JobStore
    from ugro_tui.core.jobs.yields import yielded

    store = JobStore()
    doc = annotate(state.to_json(), store.active())
    yields, idle_s = _yields(cluster)
    doc["yielded"] = [y.to_json(idle_s) for y in yields]
    for node in doc.get("nodes", []):
        for gpu in node.get("gpus", []):
            y = yielded(yields, node.get("name"), gpu.get("index"))
            gpu["yielded_to"] = y.to if y is not None else None
    return doc


def _gb(mib: int | None) -> float | None:
    return None if mib is None else mib / 1024


def _yields(cluster: Cluster) -> tuple[list, float]:
    """The yields in effect (the file beside the job store), and how long an auto yield outlasts its process."""
    from ugro_tui.core.jobs.store import JobStore
    from ugro_tui.core.jobs.yields import YieldBook

    return YieldBook(JobStore().root).read(), cluster.yield_idle_minutes * 60


def _yield_lines(cluster: Cluster) -> str:
    """Under the table: each yield in effect, `node0:0 yielded to ollie until 22:40 (by hand)`."""
    yields, idle_s = _yields(cluster)
    return "".join(f"\n{y.cards()} {y.describe(idle_s)} ({y.why})" for y in yields)


def _print_once(cluster: Cluster, out: ClusterState, as_json: bool, users: bool) -> int:
    if users:
        found = users_of(out, cluster)
        print(json.dumps({"users": [u.to_json() for u in found]}, indent=2) if as_json else format_users(found))
    else:
        doc = json.dumps(state_doc(out, cluster), indent=2) if as_json else None
        print(doc or format_state(out, cluster.name, time.time()) + _yield_lines(cluster))
    return 0 if all(n.healthy for n in out.nodes.values()) else 1


async def _watch(cluster: Cluster, as_json: bool, count: int | None) -> int:
    """Every poll interval, the state as the daemon pushes it (no connection of our own)."""
    state = ClusterState([(n.name, n.address) for n in cluster.nodes], cluster.history)
    mirror = asyncio.create_task(_mirror(cluster, state))
    try:
        return await _show(cluster, state, as_json, count)
    finally:
        mirror.cancel()


async def _mirror(cluster: Cluster, state: ClusterState) -> None:
    """Keep `state` as the daemon pushes it; a daemon that goes is replaced (or waited for)."""
    while True:
        with contextlib.suppress(NoDaemon):
            async for message in subscribe():
                if message.get("kind") == "hello":
                    apply_hello(state, message)
                elif message.get("kind") == "node" and isinstance(message.get("node"), dict):
                    doc = message["node"]
                    if doc.get("name") in state.nodes:
                        apply_wire(state.nodes[doc["name"]], doc)
        await asyncio.sleep(0.5)
        with contextlib.suppress(UgroError):
            await asyncio.to_thread(connect, cluster)


async def _show(cluster: Cluster, state: ClusterState, as_json: bool, count: int | None) -> int:
    tty = sys.stdout.isatty() and not as_json
    shown = 0
    while count is None or shown < count:
        if as_json:
            print(json.dumps(state_doc(state, cluster)), flush=True)
        else:
            text = format_state(state, cluster.name, time.time())
            sys.stdout.write(("\x1b[H\x1b[2J" if tty else ("\n" if shown else "")) + text + "\n")
            sys.stdout.flush()
        shown += 1
        await asyncio.sleep(cluster.poll_interval)
    return 0


def _from_daemon(cluster: Cluster, client: Client) -> ClusterState:
    """The daemon's view once every node has answered or given up (a daemon started just now is still
    connecting), at most a connect timeout and three polls."""
    deadline = time.monotonic() + cluster.connect_timeout + 3 * cluster.poll_interval
    while True:
        state = ClusterState([(n.name, n.address) for n in cluster.nodes], cluster.history)
        apply_hello(state, client.call("GET", "daemon/nodes", timeout=5.0))
        if time.monotonic() > deadline or all(n.state is not NodeState.CONNECTING for n in state.nodes.values()):
            return state
        time.sleep(0.1)


def run(args: Namespace, cluster: Cluster) -> int:
    if args.watch:
        _from_daemon(cluster, require(cluster, "status --watch"))  # the first frame once the nodes have answered
        return asyncio.run(_watch(cluster, args.json, args.count))
    daemon = connect(cluster)  # live telemetry is the daemon's (started when none answers, unless auto-start is off)
    if daemon is not None:
        return _print_once(cluster, _from_daemon(cluster, daemon), args.json, getattr(args, "by_user", False))
    print("ugro status: no ugro daemon runs and auto-start is off, so no node has live telemetry here; "
          "`ugro daemon start` brings it", file=sys.stderr)
    state = ClusterState([(n.name, n.address) for n in cluster.nodes], cluster.history)
    return _print_once(cluster, state, args.json, getattr(args, "by_user", False))
