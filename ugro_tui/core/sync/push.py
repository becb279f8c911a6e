"""Copying a tree to nodes over their existing connections: ask what the node lacks, send only that, build.

The submitted tree is kept here first (`CodeStore`, in the state dir), so a job runs the code as it was when it was
submitted even if the files change while it waits, and a retry on another node gets the same code.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ugro_tui import paths
from ugro_tui.config import Node
from ugro_tui.core.sync.tree import Entry, SyncError, Tree
from ugro_tui.core.transport import Transport, path_word, python_command

NODE_SCRIPT = (Path(__file__).resolve().parent / "node_store.py").read_bytes()
SCRIPT_PATH = f"~/.cache/ugro/sync-{hashlib.sha256(NODE_SCRIPT).hexdigest()[:12]}.py"
BATCH = 8 << 20  # bytes of content per round trip: progress moves, and memory stays small
KEEP_PER_NAME = 5
KEEP_LOCAL = 20

Progress = Callable[[str, int, int, int, int], None]  # node, files sent, bytes sent, files to send, bytes to send


def tree_dir(node: Node, tree_hash: str) -> str:
    """Where a tree lives on the node (and so where a synced job runs there)."""
    return f"{node.code_dir.rstrip('/')}/{tree_hash}"


@dataclass
class Sent:
    files_sent: int = 0
    bytes_sent: int = 0

    def to_json(self) -> dict[str, int]:
        return {"files_sent": self.files_sent, "bytes_sent": self.bytes_sent}


class CodeStore:
    """Submitted trees on this machine: `objects/KEY` (copies, never links: an editor that rewrites a file in place
    must not change a queued job's code) and `trees/HASH.json` (the manifest)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or paths.state_dir() / "code"

    def object_path(self, key: str) -> Path:
        return self.root / "objects" / key

    def save(self, tree: Tree, name: str) -> dict[str, Any]:
        """Copy what this store lacks; returns the manifest. Call it in a thread."""
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        (self.root / "trees").mkdir(parents=True, exist_ok=True)
        for entry in tree.files:
            target = self.object_path(entry.key)
            if target.exists():
                continue
            tmp = target.with_name(f".tmp-{entry.key}-{os.getpid()}")
            source = tree.root / entry.path
            try:
                shutil.copyfile(source, tmp)
                if hashlib.sha256(tmp.read_bytes()).hexdigest() != entry.sha256:
                    raise SyncError(f"{source}: changed while it was being copied; submit again")
                os.replace(tmp, target)
            except OSError as exc:
                raise SyncError(f"{source}: cannot copy it: {exc.strerror or exc}") from None
            finally:
                tmp.unlink(missing_ok=True)
        manifest = tree.manifest(name)
        path = self.root / "trees" / f"{tree.hash}.json"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(manifest))
            os.replace(tmp, path)
        return manifest

    def manifest(self, tree_hash: str) -> dict[str, Any]:
        try:
            return json.loads((self.root / "trees" / f"{tree_hash}.json").read_text())
        except (OSError, ValueError):
            raise SyncError(f"the code of tree {tree_hash} is no longer kept here; submit the job again") from None

    def prune(self, in_use: set[str]) -> None:
        """Keep the newest KEEP_LOCAL trees and those in use; objects no kept tree names go."""
        trees = sorted((self.root / "trees").glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        kept = [p for i, p in enumerate(trees) if i < KEEP_LOCAL or p.stem in in_use]
        for path in trees:
            if path not in kept:
                path.unlink(missing_ok=True)
        wanted = set()
        for path in kept:
            try:
                wanted |= {Entry.from_json(r).key for r in json.loads(path.read_text())["entries"] if r[1] == "f"}
            except (OSError, ValueError, KeyError):
                continue
        for obj in (self.root / "objects").glob("*"):
            if obj.name not in wanted and not obj.name.startswith(".tmp-"):
                obj.unlink(missing_ok=True)


NO_SCRIPT = 99


async def _call(transport: Transport, node: Node, verb: str, payload: bytes, timeout: float = 120.0) -> dict[str, Any]:
    script = path_word(SCRIPT_PATH)
    command = (f"test -f {script} || exit {NO_SCRIPT}; "
               f"{python_command(node)} {script} {verb} {path_word(node.code_dir)}")
    done = await transport.run(command, stdin=payload, timeout=timeout)
    if done.exit_code == NO_SCRIPT:  # first use on this node (or a cleaned cache): send it, once
        await transport.copy_file(NODE_SCRIPT, SCRIPT_PATH)
        done = await transport.run(command, stdin=payload, timeout=timeout)
    if not done.ok:
        last = (done.stderr.strip().splitlines() or [f"exit {done.exit_code}"])[-1]
        raise SyncError(f"{node.name}: {last}")
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SyncError(f"{node.name}: the code store answered {done.stdout[:120]!r}") from None


async def push(transport: Transport, node: Node, manifest: dict[str, Any], store: CodeStore,
               progress: Progress | None = None) -> Sent:
    """Make the tree complete on the node; returns what had to travel (nothing, when the node has it all)."""
    doc = json.dumps(manifest).encode()
    have = await _call(transport, node, "have", doc)
    sent = Sent()
    if have["complete"]:
        if progress is not None:
            progress(node.name, 0, 0, 0, 0)
        return sent
    sizes = {Entry.from_json(r).key: int(r[2]) for r in manifest["entries"] if r[1] == "f"}
    missing = [k for k in have["missing"] if k in sizes]
    total_files, total_bytes = len(missing), sum(sizes[k] for k in missing)
    if progress is not None:
        progress(node.name, 0, 0, total_files, total_bytes)
    batch: list[str] = []
    size = 0
    for i, key in enumerate(missing):
        batch.append(key)
        size += sizes[key]
        if size >= BATCH or i == len(missing) - 1:
            payload = await asyncio.to_thread(_frames, store, batch)
            await _call(transport, node, "put", payload)
            sent.files_sent += len(batch)
            sent.bytes_sent += size
            if progress is not None:
                progress(node.name, sent.files_sent, sent.bytes_sent, total_files, total_bytes)
            batch, size = [], 0
    await _call(transport, node, "build", doc)
    return sent


def _frames(store: CodeStore, keys: list[str]) -> bytes:
    parts = []
    for key in keys:
        data = store.object_path(key).read_bytes()
        parts += [f"{key} {len(data)}\n".encode(), data]
    return b"".join(parts)


async def collect(transport: Transport, node: Node, keep: set[str]) -> dict[str, Any]:
    """Garbage-collect old trees on the node (the newest KEEP_PER_NAME per job name and `keep` stay)."""
    return await _call(transport, node, "gc", json.dumps({"keep": sorted(keep), "per_name": KEEP_PER_NAME}).encode())
