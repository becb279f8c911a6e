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
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ugro_tui import paths
from ugro_tui.atomic import write_atomic
from ugro_tui.config import Node
from ugro_tui.core.sync.tree import Entry, SyncError, Tree
from ugro_tui.core.transport import Transport, path_word, python_command

NODE_SCRIPT = (Path(__file__).resolve().parent / "node_store.py").read_bytes()
SCRIPT_PATH = f"~/.cache/ugro/sync-{hashlib.sha256(NODE_SCRIPT).hexdigest()[:12]}.py"
BATCH = 8 << 20  # bytes of content per round trip: progress moves, and memory stays small
KEEP_PER_NAME = 5
KEEP_LOCAL = 20
RECENT_BATCHES = 4  # 32 MiB at most

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
        self.recent: dict[tuple[str, ...], bytes] = {}  # batches just read, for the other nodes of one copy
        self.lock = threading.Lock()

    def object_path(self, key: str) -> Path:
        return self.root / "objects" / key

    def put(self, key: str, content: bytes) -> None:
        """Keep one object (as the scan read it), unless kept already."""
        target = self.object_path(key)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, content, durable=False)  # content-addressed: the node checks its hash on arrival

    def save(self, tree: Tree, name: str) -> dict[str, Any]:
        """Copy what this store lacks; returns the manifest. Call it in a thread."""
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        (self.root / "trees").mkdir(parents=True, exist_ok=True)
        path = self.root / "trees" / f"{tree.hash}.json"
        manifest = tree.manifest(name)
        if path.exists():  # kept before: its objects were written before its manifest
            return manifest
        for entry in tree.files:
            target = self.object_path(entry.key)
            if target.exists():
                continue
            tmp = target.with_name(f".tmp-{entry.key}-{os.getpid()}")
            source = tree.root / entry.path
            try:
                before = os.stat(source)
                shutil.copyfile(source, tmp)  # the kernel copies; a file that changed meanwhile is caught here
                if (before.st_size, before.st_mtime_ns) != (os.stat(source).st_size, os.stat(source).st_mtime_ns) \
                        or before.st_size != entry.size:
                    raise SyncError(f"{source}: changed while it was being kept; submit again")
                os.replace(tmp, target)  # (and the node checks every object's hash as it arrives)
            except OSError as exc:
                raise SyncError(f"{source}: cannot copy it: {exc.strerror or exc}") from None
            finally:
                tmp.unlink(missing_ok=True)
        write_atomic(path, json.dumps(manifest))
        return manifest

    def manifest(self, tree_hash: str) -> dict[str, Any]:
        try:
            return json.loads((self.root / "trees" / f"{tree_hash}.json").read_text())
        except (OSError, ValueError):
            raise SyncError(f"the code of tree {tree_hash} is no longer kept here; submit the job again") from None

    def prune(self, in_use: set[str]) -> None:
        """Keep the newest KEEP_LOCAL trees and those in use; objects no kept tree names go."""
        trees = sorted((self.root / "trees").glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        if len(trees) <= KEEP_LOCAL:
            return  # nothing to drop: skip reading the manifests
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


class StoreSession:
    """One conversation with the node's code store (one SSH session for a whole copy: each new one costs ~0.1 s)."""

    def __init__(self, transport: Transport, node: Node, complete_hash: str | None = None) -> None:
        self.transport = transport
        self.node = node
        self.complete_hash = complete_hash
        self.stream: Any = None

    async def __aenter__(self) -> StoreSession:
        script = path_word(SCRIPT_PATH)
        root = self.node.code_dir.rstrip("/")
        quick = ""
        if self.complete_hash:  # the warm case answered by the shell alone: no Python starts on the node
            tree, done = path_word(f"{root}/{self.complete_hash}"), path_word(f"{root}/.done/{self.complete_hash}")
            quick = f"test -f {done} && test -d {tree} && {{ echo '{{\"complete\": true}}'; exit 0; }}; "
        command = (f"{quick}test -f {script} || exit {NO_SCRIPT}; "
                   f"exec {python_command(self.node)} -S -u {script} serve {path_word(self.node.code_dir)}"
                   + (f" {self.complete_hash}" if self.complete_hash else ""))
        self.stream = await self.transport.session(command)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.stream is not None:
            await self.stream.close()

    async def ask(self, line: bytes, body: bytes = b"") -> dict[str, Any]:
        await self.send(line + b"\n" + body)
        return await self.answer()

    async def send(self, data: bytes) -> None:
        """Write to the store. One that has ended already is asked why, as `answer` does: on a node's first use
        the session ends at once (no script there yet), and whether that happens before this write or after it
        is a race; a write into it must mean "send the script", not "this node failed"."""
        try:
            await self.stream.send(data)
        except OSError:
            await self.answer()  # raises: its error, or its exit (NO_SCRIPT: FileNotFoundError)
            raise SyncError(f"{self.node.name}: the code store stopped reading") from None

    async def answer(self) -> dict[str, Any]:
        answer = await self.stream.reply()
        if not answer:
            code = await self.stream.exit_code()
            if code == NO_SCRIPT:
                raise FileNotFoundError(SCRIPT_PATH)
            raise SyncError(f"{self.node.name}: the code store ended (exit {code})")
        try:
            doc = json.loads(answer)
        except ValueError:
            raise SyncError(f"{self.node.name}: the code store answered {answer[:120]!r}") from None
        if "error" in doc:
            raise SyncError(f"{self.node.name}: {doc['error']}")
        return doc


class FolderSource(CodeStore):
    """Objects read straight from the scanned folder (`ugro sync`, which keeps no copy); the node checks each
    object's hash as it arrives, so a file changed since the scan is refused, not stored."""

    def __init__(self, tree: Tree) -> None:
        super().__init__()
        self.paths = {e.key: tree.root / e.path for e in tree.files}

    def object_path(self, key: str) -> Path:
        return self.paths[key]


async def _session(transport: Transport, node: Node, work, complete_hash: str | None = None):
    """Run `work(session)`; on first use of a node (no store script there yet) send the script, then again."""
    try:
        async with StoreSession(transport, node, complete_hash) as session:
            return await work(session)
    except FileNotFoundError:
        await transport.copy_file(NODE_SCRIPT, SCRIPT_PATH)
        async with StoreSession(transport, node, complete_hash) as session:
            return await work(session)


async def push(transport: Transport, node: Node, manifest: dict[str, Any], store: CodeStore,
               progress: Progress | None = None, keep: set[str] | None = None) -> Sent:
    """Make the tree complete on the node; returns what had to travel (nothing, when the node has it all).
    With `keep`, old trees are collected afterwards in the same session (those in `keep` stay)."""

    async def work(session: StoreSession) -> Sent:
        sent = Sent()
        if session.complete_hash:  # the shell or the store says it first, unasked
            quick = await session.answer()
        else:
            quick = await session.ask(b"have " + json.dumps({"hash": manifest["hash"]}).encode())
        if not quick["complete"]:
            await _fill(session, manifest, store, progress, sent)
        elif progress is not None:
            progress(node.name, 0, 0, 0, 0)
        if keep is not None:
            await session.ask(b"gc " + json.dumps({"keep": sorted(keep), "per_name": KEEP_PER_NAME}).encode())
        return sent

    # Collecting needs the store itself; otherwise a complete tree is answered by the shell.
    return await _session(transport, node, work, None if keep is not None else manifest["hash"])


async def _fill(session: StoreSession, manifest: dict[str, Any], store: CodeStore, progress: Progress | None,
                sent: Sent) -> None:
    doc = json.dumps(manifest).encode()
    have = await session.ask(b"have " + doc)
    sizes = {Entry.from_json(r).key: int(r[2]) for r in manifest["entries"] if r[1] == "f"}
    missing = [k for k in have["missing"] if k in sizes]
    total_files, total_bytes = len(missing), sum(sizes[k] for k in missing)
    name = session.node.name
    if progress is not None:
        progress(name, 0, 0, total_files, total_bytes)
    batches: list[list[str]] = [[]]
    size = 0
    for key in missing:
        if size >= BATCH:
            batches.append([])
            size = 0
        batches[-1].append(key)
        size += sizes[key]
    # Pipelined: the next batch is read and sent while the node stores the one before (one answer outstanding).
    waiting: list[list[str]] = []
    for batch in (b for b in batches if b):
        payload = await asyncio.to_thread(_frames, store, batch)
        await session.send(b"put\n" + payload + b"END 0\n")
        waiting.append(batch)
        if len(waiting) > 1:
            await _stored(session, waiting.pop(0), sizes, sent, progress, total_files, total_bytes)
    while waiting:
        await _stored(session, waiting.pop(0), sizes, sent, progress, total_files, total_bytes)
    await session.ask(b"build " + doc)


async def _stored(session: StoreSession, batch: list[str], sizes: dict[str, int], sent: Sent,
                  progress: Progress | None, total_files: int, total_bytes: int) -> None:
    await session.answer()
    sent.files_sent += len(batch)
    sent.bytes_sent += sum(sizes[k] for k in batch)
    if progress is not None:
        progress(session.node.name, sent.files_sent, sent.bytes_sent, total_files, total_bytes)


def _frames(store: CodeStore, keys: list[str]) -> bytes:
    """A batch as sent; the last few are remembered, since nodes copied at once ask for the same batches."""
    batch = tuple(keys)
    with store.lock:
        cached = store.recent.get(batch)
    if cached is not None:
        return cached
    parts = []
    for key in keys:
        data = store.object_path(key).read_bytes()
        parts += [f"{key} {len(data)}\n".encode(), data]
    payload = b"".join(parts)
    with store.lock:
        store.recent[batch] = payload
        while len(store.recent) > RECENT_BATCHES:
            store.recent.pop(next(iter(store.recent)))
    return payload
