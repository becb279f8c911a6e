"""Doctor: is a multi-node template's checkpoint dir shared between its nodes? If not, each node keeps its own part
of a sharded checkpoint (torch.distributed.checkpoint writes `.metadata` on node 0 only), which cannot resume on
other nodes unless ugro copies it there first."""

from __future__ import annotations

import asyncio
import secrets
import shlex

from ugro_tui.config import Cluster
from ugro_tui.core.doctor.checks import CLUSTER, Check, Status
from ugro_tui.core.jobs import templates
from ugro_tui.core.transport import Transport, path_word
from ugro_tui.errors import UgroError


def multi_node_dirs() -> list[tuple[str, str, str | None]]:
    """(template, checkpoint dir, workdir) of every template that runs on several nodes and keeps checkpoints."""
    out = []
    for name in templates.names():
        try:
            data, _ = templates.load(name)
        except UgroError:
            continue  # the template's own problem; `ugro submit --template` says it
        nnodes, folder = data.get("nnodes", 1), data.get("checkpoint_dir")
        if isinstance(nnodes, int) and nnodes > 1 and isinstance(folder, str) and folder:
            workdir = data.get("workdir")
            out.append((name, folder, workdir if isinstance(workdir, str) else None))
    return out


def ancestors(folder: str) -> list[str]:
    """"~/a/b" -> ["~/a/b", "~/a", "~"]; "ck/x" -> ["ck/x", "ck", "."]."""
    parts = folder.rstrip("/").split("/")
    out = ["/".join(parts[:i]) or "/" for i in range(len(parts), 0, -1)]
    return out if folder.startswith(("/", "~")) else [*out, "."]


async def checkpoint_checks(cluster: Cluster, transports: dict[str, Transport], up: list[str],
                            timeout: float = 15.0) -> list[Check]:
    """One check per multi-node template: a marker written in its checkpoint dir on the first reachable node,
    then looked for on the others."""
    found = multi_node_dirs()
    if len(up) < 2 or not found:
        return []
    first, others = up[0], up[1:]
    out = []
    for name, folder, workdir in found:
        token = shlex.quote(f".ugro-shared-{secrets.token_hex(6)}")
        # The dir itself, else its nearest existing parent: the doctor creates nothing there.
        tries = ancestors(folder)

        def enter(node: str, workdir: str | None = workdir) -> str:
            where = path_word(workdir or cluster.node(node).workdir)  # ugro's own dir: the job creates it too
            return f"mkdir -p {where} && cd {where} || exit 3; "

        write = enter(first) + "; ".join(
            f"if [ -d {path_word(t)} ]; then echo {i}; echo ugro > {path_word(t)}/{token}; exit; fi"
            for i, t in enumerate(tries))
        try:
            made = await transports[first].run(write, timeout=timeout)
            index = made.stdout.strip()
            if not made.ok or not index.isdecimal():
                out.append(Check(CLUSTER, "checkpoints", Status.SKIP, f"template {name}: {folder} not tested "
                                 f"(nothing to write in on {first})"))
                continue
            where = path_word(tries[int(index)])
            seen = await asyncio.gather(*(transports[n].run(f"{enter(n)}test -f {where}/{token}", timeout=timeout)
                                          for n in others), return_exceptions=True)
            await transports[first].run(f"{enter(first)}rm -f {where}/{token}", timeout=timeout)
        except (OSError, TimeoutError, RuntimeError) as exc:
            out.append(Check(CLUSTER, "checkpoints", Status.SKIP, f"template {name}: not tested ({exc})"))
            continue
        apart = [n for n, s in zip(others, seen, strict=True) if isinstance(s, BaseException) or not s.ok]
        if apart:
            out.append(Check(
                CLUSTER, "checkpoints", Status.WARN,
                f"template {name}: checkpoint dir {folder} is per node ({', '.join(apart)} do not share {first}'s)",
                "sharded checkpoints cannot resume on other nodes: ugro copies the newest to a retry's new nodes "
                "first; or put the dir on a filesystem every node mounts (NFS)"))
        else:
            tested = "" if where == path_word(folder) else f" (tested at {tries[int(index)]}, its nearest parent)"
            out.append(Check(CLUSTER, "checkpoints", Status.OK,
                             f"template {name}: checkpoint dir {folder} is shared by {', '.join(up)}{tested}"))
    return out
