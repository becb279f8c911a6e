"""Doctor: service templates (shipped and saved) against every node: is their port free there, and does one bind
every interface (0.0.0.0), which puts the server on the network beside ugro's SSH."""

from __future__ import annotations

import asyncio

from ugro_tui.config import Cluster
from ugro_tui.core.doctor.checks import Check, Status
from ugro_tui.core.jobs import templates
from ugro_tui.core.services.probe import answers
from ugro_tui.core.transport import Transport
from ugro_tui.errors import UgroError

CHECK = "service"
SCAN = 20  # ports of service_ports tried for a template without a fixed port


def service_templates() -> dict[str, dict]:
    out = {}
    for name in templates.names():
        try:
            data = templates.load(name)[0]
        except UgroError:
            continue  # the template's own problem; `ugro submit --template` says it
        if data.get("kind") == "service":
            out[name] = data
    return out


def binds_everywhere(data: dict) -> bool:
    words = [*(data.get("command") or []), *(data.get("worker_command") or [])]
    return any(isinstance(w, str) and ("0.0.0.0" in w or w in ("::", "[::]")) for w in words)


async def service_checks(cluster: Cluster, transports: dict[str, Transport], up: list[str],
                         held: dict[int, set[str]] | None = None) -> list[Check]:
    """One check per reached node when any service template exists. `held`: ports running ugro services hold
    (port -> nodes), said as such rather than as a stranger on the port."""
    found = service_templates()
    if not found:
        return []
    held = held or {}
    lo, hi = cluster.service_ports

    async def one(name: str) -> Check:
        node, t = cluster.node(name), transports[name]
        problems, fine = [], []
        first_free: list[int | None] = []  # found once per node, for every template without a port

        async def free_port() -> int | None:
            if not first_free:
                found_port = None
                for candidate in range(lo, min(hi, lo + SCAN - 1) + 1):
                    if candidate not in held and not await answers(t, node.host, candidate, cluster.connect_timeout):
                        found_port = candidate
                        break
                first_free.append(found_port)
            return first_free[0]

        for tname, data in found.items():
            port = data.get("port")
            if isinstance(port, int) and not isinstance(port, bool):
                if name in held.get(port, set()):
                    fine.append(f"{tname}: port {port} (a running ugro service holds it)")
                elif await answers(t, node.host, port, cluster.connect_timeout):
                    problems.append(f"{tname}: port {port} is in use by another program")
                else:
                    fine.append(f"{tname}: port {port} free")
            else:
                free = await free_port()
                if free is None:
                    problems.append(f"{tname}: no free port in service_ports {lo}-{min(hi, lo + SCAN - 1)}")
                else:
                    fine.append(f"{tname}: port {free} free")
            if binds_everywhere(data):
                problems.append(f"{tname}: binds 0.0.0.0, so the server is reachable from the network without "
                                "ugro's SSH; bind 127.0.0.1 and reach it with `ugro forward`")
        if problems:
            return Check(name, CHECK, Status.WARN, "; ".join(problems),
                         "free the port (or set another in the template), and bind the node's loopback")
        return Check(name, CHECK, Status.OK, "; ".join(fine))

    return list(await asyncio.gather(*(one(n) for n in up)))
