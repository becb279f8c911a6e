"""`ugro sync DIR --nodes A,B` and the copy `ugro submit --sync` makes: a progress line on a terminal, plain
lines when piped."""

from __future__ import annotations

import asyncio
import sys
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path
from typing import TextIO, TypeVar

from ugro_tui.config import Cluster, Node
from ugro_tui.core.daemon.client import Client, connect
from ugro_tui.core.pool import Pool
from ugro_tui.core.sync.push import FolderSource, Sent, tree_dir
from ugro_tui.core.sync.service import push_to, snapshot
from ugro_tui.core.sync.tree import SyncError, human
from ugro_tui.errors import UsageError

T = TypeVar("T", bound=tuple)


class ProgressLine:
    """Per node: files and bytes sent of those to send. One line redrawn on a terminal; a line per node's end
    otherwise."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.tty = out.isatty()
        self.nodes: dict[str, tuple[int, int, int, int]] = {}

    def __call__(self, node: str, files: int, sent: int, files_total: int, bytes_total: int) -> None:
        self.nodes[node] = (files, sent, files_total, bytes_total)
        if self.tty:
            parts = [f"{n} {human(s)}/{human(bt)} {f}/{ft} files" if ft else f"{n} up to date"
                     for n, (f, s, ft, bt) in self.nodes.items()]
            self.out.write("\r\x1b[Ksync: " + " · ".join(parts))
            self.out.flush()
        elif files == files_total:
            self.out.write(f"sync: {node}: {files} files, {human(sent)} sent\n" if files_total
                           else f"sync: {node}: up to date, nothing sent\n")

    def end(self) -> None:
        if self.tty and self.nodes:
            self.out.write("\n")


async def copy(cluster: Cluster, nodes: list[Node], prepare: Callable[[], T], *, strict: bool,
               folder_source: bool = False) -> tuple[T, dict[str, Sent]]:
    """`prepare()` (in a thread: scan and keep the tree; returns (..., manifest)) while the nodes are connected,
    then copy to every node at once. A node that fails is an error when `strict`, else said and skipped (the
    launch copies again, to the nodes it places the job on)."""
    progress = ProgressLine()
    async with Pool(cluster) as pool:
        connecting = asyncio.gather(*(pool.get(n.name).connect() for n in nodes), return_exceptions=True)
        try:
            prepared = await asyncio.to_thread(prepare)
        finally:
            await connecting  # a node that did not connect says why in its copy's result below
        source = FolderSource(prepared[0]) if folder_source else None  # type: ignore[index]
        results = await push_to(pool, nodes, prepared[-1], progress=progress, store=source)  # type: ignore[index]
    progress.end()
    sent: dict[str, Sent] = {}
    for name, result in results.items():
        if isinstance(result, BaseException):
            why = str(result) if str(result).startswith(name) else f"{name}: {result or type(result).__name__}"
            if strict:
                raise SyncError(why)
            print(f"sync: {why}; it gets the code when a job is placed there", file=sys.stderr)
        else:
            sent[name] = result
    return prepared, sent


def nodes_named(cluster: Cluster, names: str | None) -> list[Node]:
    if not names:
        return list(cluster.nodes)
    out = []
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        found = [n for n in cluster.nodes if n.name == name or name in n.labels]
        if not found:
            known = ", ".join(n.name for n in cluster.nodes)
            raise UsageError(f"ugro sync: --nodes: no node or label {name!r} in {cluster.source} (nodes: {known})")
        out += [n for n in found if n not in out]
    return out


def run(args: Namespace, cluster: Cluster) -> int:
    nodes = nodes_named(cluster, args.nodes)
    daemon = connect(cluster)  # its connections are warm: no SSH handshake for the copy
    if daemon is not None:
        return _through(daemon, args, nodes)

    def prepare():
        tree, manifest = snapshot(args.dir, cluster, include_git=args.git, name="ugro-sync", keep=False)
        print(f"sync: {tree.summary()}", file=sys.stderr)
        return tree, manifest

    (tree, _), sent = asyncio.run(copy(cluster, nodes, prepare, strict=True, folder_source=True))
    for node in nodes:
        result = sent[node.name]
        print(f"{node.name}: {result.files_sent} files, {result.bytes_sent} bytes sent -> "
              f"{tree_dir(node, tree.hash)}")
    return 0


def _through(daemon: Client, args: Namespace, nodes: list[Node]) -> int:
    progress = ProgressLine()
    body = {"dir": str(Path(args.dir).resolve()), "nodes": [n.name for n in nodes], "git": bool(args.git)}
    results: dict = {}
    for line in daemon.lines("POST", "daemon/sync", body):
        if line.get("kind") == "summary":
            print(f"sync: {line['text']}", file=sys.stderr)
        elif line.get("kind") == "progress":
            progress(line["node"], line["files"], line["sent"], line["files_total"], line["bytes_total"])
        elif line.get("kind") == "done":
            results = line["results"]
    progress.end()
    failed = [f"{n}: {r['error']}" if not r["error"].startswith(n) else r["error"]
              for n, r in results.items() if "error" in r]
    if failed or len(results) != len(nodes):
        raise SyncError("; ".join(failed) or "the daemon's answer was cut")
    for node in nodes:
        r = results[node.name]
        print(f"{node.name}: {r['files_sent']} files, {r['bytes_sent']} bytes sent -> {r['dir']}")
    return 0
