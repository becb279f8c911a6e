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
