"""What clients ask the daemon to look at over its connections: the doctor (each check streamed as it ends; the
smoke job dispatched by the daemon's own dispatcher) and a job's checkpoints on its nodes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from ugro_tui.core.doctor.checks import Check
from ugro_tui.core.jobs.keeper import CheckpointError, CheckpointKeeper
from ugro_tui.errors import UgroError


def _refused(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Reports:
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon  # its cluster, state, store, pool and runtime as they are now

    def routes(self, prefix: str) -> list[web.RouteDef]:
        return [web.post(f"{prefix}/daemon/doctor", self.doctor),
                web.get(f"{prefix}/daemon/checkpoints/{{id}}", self.checkpoints)]

    async def doctor(self, request: web.Request) -> web.StreamResponse:
        """`{"smoke": false}`: newline-delimited JSON, a `check` per check as it ends, then the whole `report`."""
        from ugro_tui.core.doctor.run import run_doctor
        from ugro_tui.core.doctor.smoke import run_smoke

        try:
            doc = await request.json() if request.can_read_body else {}
            smoke = bool(doc.get("smoke"))
        except (ValueError, AttributeError):
            return _refused(400, 'expected {"smoke": false}')
        d = self.daemon
        lines: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def seen(check: Check) -> None:
            lines.put_nowait({"kind": "check", "check": check.to_json()})

        async def work() -> dict[str, Any]:
            try:
                report = await run_doctor(d.cluster, on_check=seen, pool=d.pool, telemetry=d.state, store=d.store)
                if smoke:
                    kick = d.runtime.kick if d.runtime is not None else (lambda: None)
                    report.checks.append(await run_smoke(d.cluster, report, store=d.store, pool=d.pool, kick=kick))
                return {"kind": "report", "report": report.to_wire()}
            except (UgroError, OSError) as exc:
                return {"kind": "error", "message": str(exc) or type(exc).__name__}
            finally:
                lines.put_nowait(None)

        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        task = asyncio.create_task(work())
        try:
            while (line := await lines.get()) is not None:
                await response.write(json.dumps(line).encode() + b"\n")
            await response.write(json.dumps(await task).encode() + b"\n")
        finally:
            if not task.done():  # the client went: its doctor stops with it
                task.cancel()
        return response

    async def checkpoints(self, request: web.Request) -> web.Response:
        """A job's checkpoints on its nodes (`{"checkpoints": [...]}`), or why none could be listed."""
        d = self.daemon
        try:
            job = await asyncio.to_thread(d.store.get, int(request.match_info["id"]))
        except ValueError:
            return _refused(400, "expected a job id")
        except UgroError as exc:
            return _refused(404, str(exc))
        try:
            found = await asyncio.wait_for(CheckpointKeeper(d.cluster, d.pool).index(job),
                                           d.cluster.connect_timeout + 60)
        except (CheckpointError, TimeoutError) as exc:
            return _refused(409, str(exc) or "the nodes did not answer in time")
        return web.json_response({"checkpoints": [c.to_json() for c in found]})
