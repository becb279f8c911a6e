"""What clients ask the daemon to look at over its connections: the doctor (each check streamed as it ends; the
smoke job dispatched by the daemon's own dispatcher) and a job's checkpoints on its nodes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from ugro_tui.core.daemon.ndjson import Emit, stream
from ugro_tui.core.jobs.keeper import CheckpointError, CheckpointKeeper
from ugro_tui.core.jobs.model import Job
from ugro_tui.errors import UgroError
from ugro_tui.web.api import error


class Reports:
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon  # its cluster, state, store, pool and runtime as they are now

    def routes(self, prefix: str) -> list[web.RouteDef]:
        return [web.post(f"{prefix}/daemon/doctor", self.doctor),
                web.get(f"{prefix}/daemon/checkpoints/{{id}}", self.checkpoints),
                web.post(f"{prefix}/daemon/checkpoints/{{id}}/{{do}}", self.keep)]

    async def doctor(self, request: web.Request) -> web.StreamResponse:
        """`{"smoke": false}`: newline-delimited JSON, a `check` per check as it ends, then the whole `report`."""
        from ugro_tui.core.doctor.run import run_doctor
        from ugro_tui.core.doctor.smoke import run_smoke

        try:
            doc = await request.json() if request.can_read_body else {}
            smoke = bool(doc.get("smoke"))
        except (ValueError, AttributeError):
            return error(400, 'expected {"smoke": false}')
        d = self.daemon

        async def work(emit: Emit) -> dict[str, Any]:
            try:
                report = await run_doctor(d.cluster, on_check=lambda c: emit({"kind": "check", "check": c.to_json()}),
                                          pool=d.pool, telemetry=d.state, store=d.store)
                if smoke:
                    kick = d.runtime.kick if d.runtime is not None else (lambda: None)
                    report.checks.append(await run_smoke(d.cluster, report, store=d.store, pool=d.pool, kick=kick))
                return {"kind": "report", "report": report.to_wire()}
            except (UgroError, OSError) as exc:
                return {"kind": "error", "message": str(exc) or type(exc).__name__}

        return await stream(request, work)

    async def _job(self, request: web.Request) -> Job | web.Response:
        try:
            return await asyncio.to_thread(self.daemon.store.get, int(request.match_info["id"]))
        except ValueError:
            return error(400, "expected a job id")
        except UgroError as exc:
            return error(404, str(exc))

    async def checkpoints(self, request: web.Request) -> web.Response:
        """A job's checkpoints on its nodes (`{"checkpoints": [...]}`), or why none could be listed."""
        d = self.daemon
        job = await self._job(request)
        if isinstance(job, web.Response):
            return job
        try:
            found = await asyncio.wait_for(CheckpointKeeper(d.cluster, d.pool).index(job),
                                           d.cluster.connect_timeout + 60)
        except (CheckpointError, TimeoutError) as exc:
            return error(409, str(exc) or "the nodes did not answer in time")
        return web.json_response({"checkpoints": [c.to_json() for c in found]})

    async def keep(self, request: web.Request) -> web.StreamResponse:
        """`prune` (`{"dry_run": false}`) or `pull` (`{"step": N or null, "to": DIR}`, a folder on this machine)
        over the daemon's connections; newline-delimited JSON: `progress` lines, then `done` or `error`."""
        d, do = self.daemon, request.match_info["do"]
        job = await self._job(request)
        if isinstance(job, web.Response):
            return job
        try:
            doc = await request.json() if request.can_read_body else {}
            step = None if doc.get("step") is None else int(doc["step"])
            to, dry = Path(str(doc.get("to") or ".")), bool(doc.get("dry_run"))
        except (ValueError, TypeError, AttributeError):
            return error(400, 'expected {"dry_run": false} or {"step": N, "to": DIR}')
        if do not in ("prune", "pull"):
            return error(404, f"no checkpoint action {do!r} (prune, pull)")
        keeper = CheckpointKeeper(d.cluster, d.pool)

        async def work(emit: Emit) -> dict[str, Any]:
            def progress(what: str, done: int, total: int) -> None:
                emit({"kind": "progress", "what": what, "done": done, "total": total})

            try:
                if do == "prune":
                    gone = await keeper.retain(job, dry_run=dry)
                    return {"kind": "done", "checkpoints": [c.to_json() for c in gone]}
                return {"kind": "done", "files": [str(f) for f in await keeper.pull(job, step, to, progress)]}
            except CheckpointError as exc:  # the user's ask (no such step, a folder that is not one): exit 2
                return {"kind": "error", "message": str(exc), "usage": True}
            except (UgroError, OSError) as exc:
                return {"kind": "error", "message": str(exc) or type(exc).__name__}

        return await stream(request, work)
