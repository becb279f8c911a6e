"""Which nodes see one folder (NFS, a shared home): proven, never guessed from paths.

Each node proposes a random id for the folder; the first linked into place is kept (`ln` fails when the name
exists, so of several nodes that look at once exactly one puts it there) and every node reads that one back. Nodes that
read the same id see the same folder."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ugro_tui.config import Node
from ugro_tui.core.transport import ConnectError, path_word

if TYPE_CHECKING:  # only named: the checkpoint rules (read by the app) need no pool
    from ugro_tui.core.pool import Pool

FOLDER_ID = ".ugro-folder"
ID_RE = re.compile(r"^[0-9a-f]{16,64}$")


def claim_line(proposed: str) -> str:
    """Shell, run inside the folder: keep `proposed` as its id unless it has one, then print `folder<TAB>ID`."""
    if not ID_RE.match(proposed):
        raise ValueError(f"not a folder id: {proposed!r}")
    # Written whole under a name of its own, then linked into place: `ln` fails when the name exists, and a reader
    # never sees the file half-written (a noclobber create could be read empty before its content arrived).
    tmp = f"{FOLDER_ID}.{proposed}.tmp"
    return (f"[ -s {FOLDER_ID} ] || {{ printf '%s\\n' {proposed} > {tmp} && ln {tmp} {FOLDER_ID} 2>/dev/null; "
            f"rm -f {tmp}; }}; "  # written once: a listing every few seconds only reads it
            f"printf 'folder\\t%s\\n' \"$(head -c 64 {FOLDER_ID} 2>/dev/null)\"")


def parse_id(line: str) -> str | None:
    """The id from a `folder<TAB>ID` line, or None (not such a line, or an id that is not one)."""
    if not line.startswith("folder\t"):
        return None
    value = line.split("\t", 1)[1].strip()
    return value if ID_RE.match(value) else ""


async def shared(pool: Pool, nodes: Sequence[Node], folder: Callable[[Node], str], timeout: float
                 ) -> list[list[Node]]:
    """`nodes` grouped by the folder (`folder(node)`, made if missing) they see: one group per folder, in the
    nodes' order; a node that does not answer is a group of its own (what is done there fails on its own)."""
    async def ask(node: Node) -> str:
        word = path_word(folder(node))
        done = await pool.get(node.name).run(f"mkdir -p {word} && cd {word} && {claim_line(secrets.token_hex(8))}",
                                             timeout=timeout)
        return parse_id(done.stdout.strip().splitlines()[-1] if done.ok and done.stdout.strip() else "") or ""

    answers = await asyncio.gather(*(ask(n) for n in nodes), return_exceptions=True)
    groups: dict[str, list[Node]] = {}
    out: list[list[Node]] = []
    for node, answer in zip(nodes, answers, strict=True):
        if isinstance(answer, BaseException) and not isinstance(answer, (ConnectError, OSError, TimeoutError)):
            raise answer
        key = answer if isinstance(answer, str) and answer else None
        if key is None:
            out.append([node])
        elif key in groups:
            groups[key].append(node)
        else:
            groups[key] = [node]
            out.append(groups[key])
    return out
