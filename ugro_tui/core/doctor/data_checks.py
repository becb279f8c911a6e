"""Doctor: the datasets that templates (shipped and saved) and nodes declare, looked for on every node."""

from __future__ import annotations

import asyncio

from ugro_tui.config import Cluster
from ugro_tui.core.doctor.checks import Check, Status
from ugro_tui.core.jobs import templates
from ugro_tui.core.jobs.model import BadSpec, parse_data
from ugro_tui.core.sync.service import look_for_data
from ugro_tui.core.sync.tree import human
from ugro_tui.core.transport import Transport
from ugro_tui.errors import UgroError

CHECK = "data"


def declared() -> dict[tuple[str, float, str], list[str]]:
    """Each dataset the templates declare, with the templates that declare it."""
    out: dict[tuple[str, float, str], list[str]] = {}
    for name in templates.names():
        try:
            found = parse_data(templates.load(name)[0].get("data", []))
        except (UgroError, BadSpec):
            continue  # the template's own problem; `ugro submit --template` says it
        for item in found:
            out.setdefault(item, []).append(name)
    return out


async def data_checks(cluster: Cluster, transports: dict[str, Transport], up: list[str]) -> list[Check]:
    """One check per node: every declared dataset there (or what is missing), as a warning when one is not."""
    by_template = declared()

    async def one(name: str) -> Check | None:
        node = cluster.node(name)
        wants = list(dict.fromkeys([*node.data, *by_template]))
        if not wants:
            return None
        rows = await look_for_data(transports[name], node, wants)
        if isinstance(rows, str):
            return Check(name, CHECK, Status.WARN, f"could not look: {rows}")
        problems, fine = [], []
        for (path, problem, size), want in zip(rows, wants, strict=True):
            who = ", ".join(by_template.get(want, [])) or "the node"
            if problem:
                problems.append(f"{path} {problem} (needed by {who})")
            else:
                fine.append(f"{path}" + (f" {human(size)}" if size is not None else ""))
        if problems:
            return Check(name, CHECK, Status.WARN, "; ".join(problems),
                         "copy the dataset to this node (or share it over NFS), or keep such jobs off it with nodes")
        return Check(name, CHECK, Status.OK, ", ".join(fine))

    found = await asyncio.gather(*(one(n) for n in up))
    return [c for c in found if c is not None]
