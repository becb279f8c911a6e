"""What clients ask the daemon to do on a node, over its connections: signal a GPU process, copy a folder. The
rules are the ones the commands had (a ugro job's rank is never signalled alone; names and pids are checked)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from aiohttp import web

from ugro_tui import __version__
from ugro_tui.config import Cluster
from ugro_tui.core.daemon.ndjson import Emit, stream
from ugro_tui.core.jobs.model import Job
from ugro_tui.core.jobs.sweep import Search
from ugro_tui.core.pool import Pool
from ugro_tui.core.signals import find_target, owning_job, parse_pid, parse_signal, send_signal
from ugro_tui.core.telemetry.model import ClusterState, NodeState
from ugro_tui.errors import ReadOnlyError, UgroError, UsageError
from ugro_tui.web.api import error


async def signal_process(cluster: Cluster, state: ClusterState, pool: Pool, doc: Any) -> dict[str, Any]:
    """`{"node", "pid", "signal"}`: the signal sent as the node's SSH user; UsageError/UgroError when refused."""
    if not isinstance(doc, dict):
        raise UsageError('expected {"node": NAME, "pid": PID, "signal": "TERM"}')
    name = doc.get("node")
    if name not in state.nodes or name not in pool:
        raise UsageError(f"no node {name!r} in {cluster.source}")
    pid = parse_pid(str(doc.get("pid")))
    signal = parse_signal(str(doc.get("signal") or "TERM"))
    status = state.nodes[name]
    # The process list of a sample taken after the ask: a process the user saw a moment ago may have ended (its
    # pid then is nobody's, or soon someone else's). A daemon started just now is still connecting.
    asked, deadline = time.time(), time.monotonic() + cluster.connect_timeout + 3 * cluster.poll_interval
    while ((status.state is NodeState.CONNECTING or
            (status.state is NodeState.ONLINE and (status.received_at or 0.0) <= asked))
           and time.monotonic() < deadline):
        await asyncio.sleep(0.05)
    if status.state is not NodeState.ONLINE:
        raise UgroError(f"{name} is {status.state}: {status.error or 'no sample yet'}; nothing was sent")
    target = find_target(status, pid)
    job = owning_job(target)
    if job is not None:
        raise UsageError(f"pid {pid} on {name} is a rank of ugro job {job}; stop the job with `ugro cancel {job}` "
                         "(a job's ranks are never signalled one by one)")
    result = await send_signal(pool.get(name), target, signal, cluster.node(name).user)
    return {"ok": result.ok, "message": result.message}


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class Actions:
    """The routes: each answers one JSON object, or an error in one line."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon  # its cluster, state and pool as they are now (cluster.toml may have changed)

    def routes(self, prefix: str) -> list[web.RouteDef]:
        return [web.post(f"{prefix}/daemon/signal", self.signal), web.post(f"{prefix}/daemon/sync", self.sync),
                web.post(f"{prefix}/daemon/forward", self.forward), web.post(f"{prefix}/daemon/submit", self.submit)]

    async def submit(self, request: web.Request) -> web.Response:
        """`{"config", "flags", "hold"}`: `ugro submit`'s flags, checked and stored here, where the config and the
        job code are loaded already (commands/submit.py). A client of another config than the daemon's is told so
        (409 with "config") and submits itself. Errors carry the exit code the command would have had."""
        import dataclasses

        from ugro_tui.core.jobs.request import Request, queue, spec_from_request
        from ugro_tui.core.jobs.sharing import cards_of

        try:
            doc = await request.json()
            config, flags, hold = str(doc["config"]), doc["flags"], bool(doc.get("hold", False))
            known = {f.name for f in dataclasses.fields(Request)}
            args = Request(**{k: v for k, v in flags.items() if k in known})
        except (ValueError, KeyError, TypeError, AttributeError):
            return error(400, 'expected {"config": PATH, "flags": {...}, "hold": false}')
        d = self.daemon
        if not d.cluster.source or not _same_file(config, d.cluster.source):
            return web.json_response({"error": f"the daemon runs on {d.cluster.source}", "config": d.cluster.source},
                                     status=409)
        if d.cluster.read_only:
            return web.json_response({"error": str(ReadOnlyError("ugro submit")), "exit": 2}, status=403)

        def store() -> tuple[list[Job], str | None, Search]:
            spec, search = spec_from_request(args, d.cluster, cards=lambda: cards_of(d.state.to_json()))
            return queue(d.store, spec, search, hold=hold)

        try:
            jobs, sweep_id, search = await asyncio.to_thread(store)
        except UgroError as exc:
            return web.json_response({"error": str(exc), "exit": exc.exit_code},
                                     status=400 if isinstance(exc, UsageError) else 409)
        if not hold:
            d.api.changed()  # a round now: a job that fits starts at once
        seed = search.seed if search else None
        return web.json_response({"ids": [j.id for j in jobs], "sweep": sweep_id, "seed": seed,
                                  "version": __version__}, status=201)

    async def forward(self, request: web.Request) -> web.StreamResponse:
        """`{"job", "local_port"}`: 127.0.0.1:PORT here carried to the service over the daemon's connection, for as
        long as the asking client stays (a line every second tells it the forward is alive)."""
        from ugro_tui.core.services.forward import forward_service

        try:
            doc = await request.json()
            job_id, port = int(doc["job"]), int(doc["local_port"])
        except (ValueError, KeyError, TypeError):
            return error(400, 'expected {"job": ID, "local_port": PORT}')
        try:
            listener = await forward_service(self.daemon.store, self.daemon.pool, job_id, port)
        except OSError as exc:
            return error(409, f"ugro forward: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}")
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        try:
            await response.prepare(request)
            await response.write(json.dumps({"kind": "listening", "port": listener.get_port()}).encode() + b"\n")
            while True:
                await asyncio.sleep(1.0)
                await response.write(b'{"kind": "alive"}\n')  # raises once the client has gone
        except (ConnectionError, RuntimeError):
            pass
        finally:
            listener.close()
        return response

    async def sync(self, request: web.Request) -> web.StreamResponse:
        """`{"dir", "nodes", "git"}`: the folder (on this machine: the daemon's too) copied to the nodes over the
        daemon's connections, as `ugro sync` does; newline-delimited JSON: the tree's summary, progress, the end."""
        from ugro_tui.core.sync.push import CodeStore, FolderSource, tree_dir
        from ugro_tui.core.sync.service import push_to, snapshot

        try:
            doc = await request.json()
            folder, tree_hash = str(doc.get("dir") or ""), str(doc.get("tree") or "")
            names, git = [str(n) for n in doc["nodes"]], bool(doc.get("git"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return error(400, 'expected {"dir": PATH, "nodes": [NAME, ...], "git": false} or {"tree": HASH, ...}')
        d = self.daemon
        unknown = [n for n in names if n not in d.pool]
        if unknown:
            return error(400, f"ugro sync: no node {unknown[0]!r} in {d.cluster.source}")
        nodes = [d.cluster.node(n) for n in names]
        try:
            if tree_hash:  # a tree the client kept here (a job's code): the same copy the launch makes
                if not (tree_hash.isascii() and tree_hash.isalnum()):
                    raise ValueError(f"{tree_hash!r} is not a tree's hash")
                manifest = await asyncio.to_thread(CodeStore().manifest, tree_hash)
                source: CodeStore | None = None
                summary = f"the kept tree {tree_hash[:12]}"
            else:
                tree, manifest = await asyncio.to_thread(snapshot, folder, d.cluster, include_git=git,
                                                         name="ugro-sync", keep=False)
                source, summary, tree_hash = FolderSource(tree), tree.summary(), tree.hash
        except (UgroError, OSError, ValueError, KeyError) as exc:
            return error(400, f"ugro sync: {exc}")
        async def copy(emit: Emit) -> dict[str, Any]:
            def progress(node: str, files: int, sent: int, files_total: int, bytes_total: int) -> None:
                emit({"kind": "progress", "node": node, "files": files, "sent": sent, "files_total": files_total,
                      "bytes_total": bytes_total})

            emit({"kind": "summary", "text": summary})
            results = await push_to(d.pool, nodes, manifest, progress=progress, store=source)
            return {"kind": "done", "results": {
                name: ({"error": str(r) or type(r).__name__} if isinstance(r, BaseException) else
                       {**r.to_json(), "dir": tree_dir(d.cluster.node(name), tree_hash)})
                for name, r in results.items()}}

        return await stream(request, copy)

    async def signal(self, request: web.Request) -> web.Response:
        try:
            doc = await request.json()
        except (ValueError, json.JSONDecodeError):
            return error(400, "the body is not JSON")
        d = self.daemon
        try:
            answer = await asyncio.wait_for(signal_process(d.cluster, d.state, d.pool, doc), 90)
        except UsageError as exc:
            return error(400, str(exc))
        except UgroError as exc:
            return error(409, str(exc))
        return web.json_response(answer)
