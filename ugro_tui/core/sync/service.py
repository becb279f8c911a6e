"""What `--sync` and `data` do around a launch: snapshot the tree at submit, copy it to nodes, check datasets."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shlex
from collections.abc import Iterable
from pathlib import Path

from ugro_tui import paths
from ugro_tui.config import Cluster, Node
from ugro_tui.core.folders import shared
from ugro_tui.core.jobs.model import JobSpec
from ugro_tui.core.pool import Pool
from ugro_tui.core.sync.push import CodeStore, Progress, Sent, push
from ugro_tui.core.sync.tree import HashCache, SyncError, Tree, human, scan
from ugro_tui.core.transport import python_command

DATA_SCRIPT = (Path(__file__).resolve().parent / "data_check.py").read_text()
DATA_TIMEOUT = 600.0  # hashing a large dataset file takes a while


class NotReady(Exception):
    """A placed node cannot run the job yet (data missing, the code copy failed): it stays queued, saying why.
    `sync_sent`: what did travel meanwhile (the job's record keeps it: the next try sends only the rest)."""

    def __init__(self, why: str, sync_sent: tuple[tuple[str, int, int], ...] = ()) -> None:
        super().__init__(why)
        self.sync_sent = sync_sent


def snapshot(folder: str, cluster: Cluster, *, include_git: bool = False, name: str = "", keep: bool = True
             ) -> tuple[Tree, dict]:
    """Scan the tree, refuse it over the size limit (with its summary), keep it here (a job runs what was
    submitted; `ugro sync` keeps nothing: it copies from the folder itself). Call it in a thread."""
    store = CodeStore()
    limit = cluster.sync_limit_mb * 1_000_000
    kept = [0]

    def kept_now(key: str, content: bytes) -> None:  # what the scan reads is kept at once: no second read
        kept[0] += len(content)
        if kept[0] <= limit:  # a tree over the limit is refused: nothing more of it is kept
            store.put(key, content)

    tree = scan(folder, include_git=include_git, cache=HashCache(paths.state_dir() / "code" / "hashes.json"),
                seen=kept_now if keep else None)
    if tree.size > limit:
        raise SyncError(f"--sync {folder}: {human(tree.size)} is over the {cluster.sync_limit_mb} MB limit "
                        f"([cluster] sync_limit_mb): {tree.summary()}. Leave large files out with a line in "
                        f"{tree.root / '.ugroignore'} (gitignore syntax), e.g. `data/` or `*.pt`")
    if not tree.files:
        raise SyncError(f"--sync {folder}: nothing to send ({tree.summary()})")
    if not keep:
        return tree, tree.manifest(name)
    manifest = store.save(tree, name)
    from ugro_tui.core.jobs.store import JobStore

    store.prune({j.spec.sync_hash for j in JobStore().active() if j.spec.sync_hash} | {tree.hash})
    return tree, manifest


def synced_spec(spec: JobSpec, cluster: Cluster) -> tuple[JobSpec, Tree, dict]:
    """The spec with its tree kept and named (the job runs in the tree's folder on each node unless it sets a
    workdir). Call it in a thread."""
    assert spec.sync is not None
    tree, manifest = snapshot(spec.sync, cluster, include_git=spec.sync_git, name=spec.name)
    return dataclasses.replace(spec, sync=str(tree.root), sync_hash=tree.hash), tree, manifest


async def push_to(pool: Pool, nodes: Iterable[Node], manifest: dict, *, progress: Progress | None = None,
                  keep: set[str] | None = None, store: CodeStore | None = None) -> dict[str, Sent | BaseException]:
    """Copy the tree to every node at once; per node, what travelled or why it could not. Nodes whose code dir is
    one folder (a shared home) get it once, through the first of them: the others are told what it got, as they
    see the same tree. With `keep`, old trees are collected in the same session (the newest 5 per job name and
    those in `keep` stay)."""
    nodes = list(nodes)
    store = store or CodeStore()
    wait = max(10.0, 2 * pool.cluster.connect_timeout)
    groups = await shared(pool, nodes, lambda n: n.code_dir, wait) if len(nodes) > 1 else [nodes]

    async def one(node: Node) -> Sent:
        return await push(pool.get(node.name), node, manifest, store, progress, keep)

    results = await asyncio.gather(*(one(g[0]) for g in groups), return_exceptions=True)
    return {n.name: r for g, r in zip(groups, results, strict=True) for n in g}


def wanted_data(spec: JobSpec, node: Node) -> list[tuple[str, float, str]]:
    return list(node.data) + [d for d in spec.data if d not in node.data]


async def look_for_data(transport, node: Node, wants: list[tuple[str, float, str]]) -> list[list] | str:
    """[[path, problem or None, size], ...] from the node, or why it could not look."""
    command = f"{python_command(node)} -c {shlex.quote(DATA_SCRIPT)} {shlex.quote(json.dumps(wants))}"
    try:
        done = await transport.run(command, timeout=DATA_TIMEOUT)
    except Exception as exc:  # an unreachable node is a reason to wait, named
        return str(exc) or type(exc).__name__
    if not done.ok:
        return (done.stderr.strip().splitlines() or [f"exit {done.exit_code}"])[-1]
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return f"the check printed {done.stdout[:80]!r}"


async def check_data(pool: Pool, nodes: Iterable[Node], spec: JobSpec) -> list[str]:
    """Problems with the datasets the job (or the node) declares, one line each, e.g.
    `data missing on gpu2: ~/datasets/wikitext`; empty when every placed node has them."""
    nodes = [n for n in nodes if wanted_data(spec, n)]

    async def one(node: Node) -> list[str]:
        rows = await look_for_data(pool.get(node.name), node, wanted_data(spec, node))
        if isinstance(rows, str):
            return [f"data not checked on {node.name}: {rows}"]
        return [f"data {problem} on {node.name}: {path}" for path, problem, _ in rows if problem]

    found = await asyncio.gather(*(one(n) for n in nodes))
    return [line for lines in found for line in lines]
