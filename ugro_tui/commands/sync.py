"""`ugro sync DIR --nodes A,B` and the copy `ugro submit --sync` makes, both through the daemon: a progress line on
a terminal, plain lines when piped."""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path
from typing import TextIO

from ugro_tui.config import Cluster, Node
from ugro_tui.core.daemon.client import Client, require
from ugro_tui.core.sync.tree import SyncError, human
from ugro_tui.errors import UsageError


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
    return _through(require(cluster, "sync"), args, nodes)  # its connections are warm: no SSH handshake


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
