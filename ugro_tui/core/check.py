"""Reachability check for `ugro nodes --check`: connect to every node in parallel, say why one fails."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

from ugro_tui.config import Cluster, Node
from ugro_tui.core.transport import ConnectError, Transport, make_transport


@dataclass(frozen=True)
class CheckResult:
    node: str
    address: str
    result: str            # "ok" or a ConnectError kind
    seconds: float         # connecting and a test command, together
    detail: str = ""
    fingerprint: str | None = None
    rtt: float | None = None  # the test command alone, once connected

    @property
    def ok(self) -> bool:
        return self.result == "ok"


async def check_node(node: Node, cluster: Cluster, *, accept_new: bool = False,
                     transport: Transport | None = None) -> CheckResult:
    """Connect and run a test command; a given transport stays open for the caller (the doctor goes on with it)."""
    own = transport is None
    transport = transport or make_transport(node, cluster, accept_new_host_key=accept_new)
    started = time.perf_counter()
    try:
        await transport.connect()
        connected = time.perf_counter()
        done = await transport.run("echo ugro-ok", timeout=cluster.connect_timeout)
        now = time.perf_counter()
        if done.ok and "ugro-ok" in done.stdout:
            return CheckResult(node.name, node.address, "ok", now - started, "local" if node.is_local else "",
                               rtt=now - connected)
        return CheckResult(node.name, node.address, "error", now - started,
                           f"a test command failed (exit {done.exit_code}): {done.stderr.strip()[:200]}")
    except ConnectError as exc:
        return CheckResult(node.name, node.address, exc.kind, time.perf_counter() - started, exc.reason,
                           exc.fingerprint)
    except TimeoutError:
        return CheckResult(node.name, node.address, "timeout", time.perf_counter() - started,
                           "connected, but a test command did not answer")
    finally:
        if own:
            await transport.close()


async def check_cluster(cluster: Cluster, *, accept_new: bool = False) -> list[CheckResult]:
    return list(await asyncio.gather(*(check_node(n, cluster, accept_new=accept_new) for n in cluster.nodes)))


@dataclass(frozen=True)
class ConnectionTest:
    """What "test connection" found: reachability, the host key, and the GPUs the node reports."""

    check: CheckResult
    fingerprint: str | None = None
    gpus: tuple[str, ...] = ()
    driver: str | None = None
    gpu_error: str | None = None


async def probe_connection(node: Node, cluster: Cluster, *, accept_new: bool = False) -> ConnectionTest:
    """Connect as the monitor would, then take one telemetry sample with the same agent."""
    import json

    from ugro_tui.core.telemetry.monitor import AGENT_PATH, AGENT_SOURCE, agent_command

    transport = make_transport(node, cluster, accept_new_host_key=accept_new)
    try:
        result = await check_node(node, cluster, transport=transport)
        if not result.ok:
            return ConnectionTest(result, result.fingerprint)
        fingerprint = getattr(transport, "host_key_fingerprint", lambda: None)()
        result = replace(result, fingerprint=fingerprint)
        await transport.copy_file(AGENT_SOURCE, AGENT_PATH)
        done = await transport.run(agent_command(node, 1.0) + " --once", timeout=30)
        try:
            sample = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return ConnectionTest(result, fingerprint, gpu_error=f"the node's python could not sample: {last}")
        names = tuple(g.get("name") or "?" for g in sample.get("gpus", []))
        return ConnectionTest(result, fingerprint, names, sample.get("driver"), sample.get("error"))
    except (ConnectError, TimeoutError, RuntimeError, OSError) as exc:  # lost while sampling
        return ConnectionTest(CheckResult(node.name, node.address, "error", 0.0, str(exc)))
    finally:
        await transport.close()
