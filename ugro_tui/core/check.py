"""Reachability check for `ugro nodes --check`: connect to every node in parallel, say why one fails."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ugro_tui.config import Cluster, Node
from ugro_tui.core.transport import ConnectError, make_transport


@dataclass(frozen=True)
class CheckResult:
    node: str
    address: str
    result: str            # "ok" or a ConnectError kind
    seconds: float
    detail: str = ""
    fingerprint: str | None = None

    @property
    def ok(self) -> bool:
        return self.result == "ok"


async def check_node(node: Node, cluster: Cluster, *, accept_new: bool = False) -> CheckResult:
    started = time.perf_counter()
    transport = make_transport(node, cluster, accept_new_host_key=accept_new)
    try:
        await transport.connect()
        done = await transport.run("echo ugro-ok", timeout=cluster.connect_timeout)
        elapsed = time.perf_counter() - started
        if done.ok and "ugro-ok" in done.stdout:
            return CheckResult(node.name, node.address, "ok", elapsed, "local" if node.is_local else "")
        return CheckResult(node.name, node.address, "error", elapsed,
                           f"a test command failed (exit {done.exit_code}): {done.stderr.strip()[:200]}")
    except ConnectError as exc:
        return CheckResult(node.name, node.address, exc.kind, time.perf_counter() - started, exc.reason,
                           exc.fingerprint)
    except TimeoutError:
        return CheckResult(node.name, node.address, "timeout", time.perf_counter() - started,
                           "connected, but a test command did not answer")
    finally:
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

    started = time.perf_counter()
    transport = make_transport(node, cluster, accept_new_host_key=accept_new)
    try:
        await transport.connect()
        fingerprint = getattr(transport, "host_key_fingerprint", lambda: None)()
        await transport.copy_file(AGENT_SOURCE, AGENT_PATH)
        done = await transport.run(agent_command(node, 1.0) + " --once", timeout=30)
        result = CheckResult(node.name, node.address, "ok", time.perf_counter() - started,
                             "local" if node.is_local else "", fingerprint)
        try:
            sample = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return ConnectionTest(result, fingerprint, gpu_error=f"the node's python could not sample: {last}")
        names = tuple(g.get("name") or "?" for g in sample.get("gpus", []))
        return ConnectionTest(result, fingerprint, names, sample.get("driver"), sample.get("error"))
    except ConnectError as exc:
        return ConnectionTest(CheckResult(node.name, node.address, exc.kind, time.perf_counter() - started,
                                          exc.reason, exc.fingerprint), exc.fingerprint)
    except (TimeoutError, RuntimeError, OSError) as exc:
        return ConnectionTest(CheckResult(node.name, node.address, "error", time.perf_counter() - started,
                                          str(exc)))
    finally:
        await transport.close()
