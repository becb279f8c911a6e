"""The JSON API under /api/v1: one thin layer over what the CLI uses (same validation, store and telemetry)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ugro_tui import __version__
from ugro_tui.config import Cluster
from ugro_tui.core.jobs.actions import ACTIONS
from ugro_tui.core.jobs.json_files import Encoded
from ugro_tui.core.jobs.model import IllegalTransition, JobState
from ugro_tui.core.jobs.request import Request, queue, spec_from_request
from ugro_tui.core.jobs.sharing import cards_of
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.jobs.sweep import parse_axis
from ugro_tui.core.telemetry.model import ClusterState
from ugro_tui.errors import ReadOnlyError, UgroError, UsageError

PREFIX = "/api/v1"
REQUEST_KEYS = ("template", "set", "sweep", "trials", "seed", "hold")  # beside the job-file keys


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Api:
    """Routes over the server's store, telemetry state and connections; `dispatcher()` says who dispatches."""

    usage_of: Any = staticmethod(lambda _job_id: None)  # the daemon's ledger: a job's GPU use so far

    def __init__(self, cluster: Cluster, store: JobStore, state: ClusterState, pool: Any, dispatcher,
                 state_of=None, changed=lambda: None) -> None:
        self.cluster = cluster
        self.store = store
        self._state = state
        self._state_of = state_of  # the daemon's state is replaced when cluster.toml changes
        self.changed = changed  # after a submit or an action: the daemon runs a round at once
        self.pool = pool  # the daemon's connections (the logs route reads through them)
        self.dispatcher = dispatcher
        self._jobs_cache: tuple[tuple, bytes] | None = None
        self._jobs_lock = asyncio.Lock()
        self._encoded = Encoded()

    @property
    def state(self) -> ClusterState:
        return self._state_of() if self._state_of is not None else self._state

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(f"{PREFIX}/health", self.health),
            web.get(f"{PREFIX}/cluster", self.cluster_doc),
            web.get(f"{PREFIX}/cluster/health", self.cluster_health),
            web.get(f"{PREFIX}/jobs", self.jobs),
            web.post(f"{PREFIX}/jobs", self.submit),
            web.get(f"{PREFIX}/jobs/{{id}}", self.job),
            web.post(f"{PREFIX}/jobs/{{id}}/{{action}}", self.act),
            web.get(f"{PREFIX}/jobs/{{id}}/logs", self.logs),
            web.get(f"{PREFIX}/openapi.json", self.openapi),
            web.get("/metrics", self.metrics),
        ]

    async def metrics(self, request: web.Request) -> web.Response:
        """OpenMetrics for Prometheus (behind the token, as every route: `authorization` with a credentials_file)."""
        from ugro_tui.core.ledger.metrics import CONTENT_TYPE, UgroCollector, render

        jobs = await asyncio.to_thread(self.store.active)
        body = render(UgroCollector(lambda: self.state, lambda: jobs, self.usage_of))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "version": __version__, "dispatcher": self.dispatcher()})

    async def cluster_doc(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.to_json())

    async def cluster_health(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.health().to_json())

    async def jobs(self, request: web.Request) -> web.Response:
        wanted = {s for s in request.query.get("state", "").split(",") if s}
        unknown = wanted - {s.value for s in JobState}
        if unknown:
            return error(400, f"state {sorted(unknown)[0]!r}: one of {', '.join(s.value for s in JobState)}")
        if not wanted:  # the common case, shared by every client until the store changes
            return web.Response(body=await self._all_jobs(), content_type="application/json")
        docs = await asyncio.to_thread(self.store.all_json)
        return web.json_response({"jobs": [d for d in docs if d.get("state") in wanted]})

    async def _all_jobs(self) -> bytes:
        """`{"jobs": [...]}` as bytes, made once per version of the store: 20 clients polling a queue of 1,000 jobs
        read and encode it once, not 20 times."""
        stamp = await asyncio.to_thread(self.store.stamp)
        cached = self._jobs_cache
        if cached is not None and cached[0] == stamp:
            return cached[1]
        async with self._jobs_lock:
            if self._jobs_cache is not None and self._jobs_cache[0] == stamp:
                return self._jobs_cache[1]
            def encode() -> bytes:  # each document once per version of it: one job changed, one is encoded
                docs = self.store.all_json()
                return self._encoded.array("jobs", [(d.get("id", ("at", i)), d) for i, d in enumerate(docs)])

            body = await asyncio.to_thread(encode)
            self._jobs_cache = (stamp, body)
            return body

    def _job_id(self, request: web.Request) -> int:
        text = request.match_info["id"]
        if not (text.isascii() and text.isdecimal()):
            raise UsageError(f"{text!r} is not a job id (job ids are numbers)")
        return int(text)

    async def job(self, request: web.Request) -> web.Response:
        job = await asyncio.to_thread(self.store.get, self._job_id(request))
        return web.json_response(job.to_json())

    def _refuse_if_read_only(self, what: str) -> None:
        if self.cluster.read_only:
            raise ReadOnlyError(what)

    async def submit(self, request: web.Request) -> web.Response:
        self._refuse_if_read_only("POST /api/v1/jobs")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return error(400, "the body is not JSON: send the keys of a job file as a JSON object")
        if not isinstance(body, dict):
            return error(400, "expected a JSON object with the keys of a job file")
        if body.get("sync"):
            return error(400, "sync: copy code with `ugro submit --sync` on the master, not over the API")
        ids = await asyncio.to_thread(self._queue, body)
        self.changed()
        return web.json_response({"ids": ids}, status=201)

    def _queue(self, body: dict[str, Any]) -> list[int]:
        """Validated as `ugro submit --file` validates (a template by name, with --set and --sweep, too)."""
        args = Request(template=body.get("template"), set=_words(body, "set"), sweep=_words(body, "sweep"),
                       trials=_int(body, "trials"), seed=_int(body, "seed"))
        if args.template is not None and not isinstance(args.template, str):
            raise UsageError(f"template: expected a template name, got {args.template!r}")
        if not isinstance(body.get("hold", False), bool):
            raise UsageError(f"hold: expected true or false, got {body['hold']!r}")
        given = {k: v for k, v in body.items() if k not in REQUEST_KEYS}
        spec, search = spec_from_request(args, self.cluster, given, cards=lambda: cards_of(self.state.to_json()))
        jobs, _, _ = queue(self.store, spec, search, hold=bool(body.get("hold", False)))
        return [j.id for j in jobs]

    async def act(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in ACTIONS:
            return error(404, f"no action {action!r}; one of {', '.join(ACTIONS)}")
        self._refuse_if_read_only(f"POST /api/v1/jobs/ID/{action}")
        job_id = self._job_id(request)
        said = await asyncio.to_thread(ACTIONS[action], self.store, job_id)
        self.changed()
        return web.json_response({"ok": True, "message": said})

    async def logs(self, request: web.Request) -> web.StreamResponse:
        from ugro_tui.commands.logs import follow_logs

        job_id = self._job_id(request)
        rank = request.query.get("rank")
        if rank is not None and not rank.isdecimal():
            return error(400, f"rank: expected a whole number, got {rank!r}")
        node = request.query.get("node")
        follow = request.query.get("follow") in ("1", "true")
        if follow:  # following a job that waits in the queue: the stream starts when it does
            job = await asyncio.to_thread(self.store.get, job_id)
            while not job.runs and not job.state.finished:
                await asyncio.sleep(0.5)
                job = await asyncio.to_thread(self.store.get, job_id)
        chunks = follow_logs(self.store, job_id, self.pool, rank=None if rank is None else int(rank), node=node,
                             follow=follow)
        first = await anext(chunks, b"")  # a job that never ran is a 4xx, before the stream starts
        if not follow:  # streamed from the copies on disk as it is read, never built whole in memory
            plain = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
            await plain.prepare(request)
            async for chunk in _chain(first, chunks):
                await plain.write(chunk)
            await plain.write_eof()
            return plain
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        async for chunk in _chain(first, chunks):  # one event per line of output
            for line in chunk.decode("utf-8", "replace").splitlines():
                await response.write(f"data: {line}\n\n".encode())
        await response.write(b"event: end\ndata: the job ended\n\n")
        return response

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)


async def _chain(first: bytes, rest):
    if first:
        yield first
    async for chunk in rest:
        yield chunk


def _words(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{key}: expected a list of strings such as [\"lr=1e-4,3e-4\"], got {value!r}")
    if key == "sweep":
        for item in value:
            parse_axis(item)  # a bad axis is said here, naming it
    return value


def _int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise UsageError(f"{key}: expected a whole number, got {value!r}")
    return value


@web.middleware
async def errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    """Every refusal is `{"error": "..."}` with a 4xx, never a traceback."""
    try:
        return await handler(request)
    except ReadOnlyError as exc:
        return error(403, str(exc))
    except IllegalTransition as exc:
        return error(409, str(exc))
    except UsageError as exc:
        return error(400, str(exc).removeprefix("ugro submit: "))
    except UgroError as exc:
        text = str(exc)
        return error(404 if "no job" in text or "not found" in text else 409, text)
    except web.HTTPRequestEntityTooLarge:
        return error(413, "the body is over 1 MiB")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error(exc.status, exc.reason or "refused")
        raise


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "ugro", "version": __version__,
             "description": "Every route needs the token: `Authorization: Bearer TOKEN` or the cookie `/?token=` "
                            "sets. Errors are {\"error\": \"...\"} with a 4xx status."},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        f"{PREFIX}/health": {"get": {"summary": "ugro is up; who dispatches",
                                     "responses": {"200": {"description": "{ok, version, dispatcher}"}}}},
        f"{PREFIX}/cluster": {"get": {"summary": "every node and GPU, as `ugro status --json`",
                                      "responses": {"200": {"description": "{health, nodes}"}}}},
        f"{PREFIX}/cluster/health": {"get": {"summary": "nodes up, GPUs, memory, utilization",
                                             "responses": {"200": {"description": "health summary"}}}},
        f"{PREFIX}/jobs": {
            "get": {"summary": "jobs, as `ugro queue --json`",
                    "parameters": [{"name": "state", "in": "query", "schema": {"type": "string"},
                                    "description": "comma-separated states"}],
                    "responses": {"200": {"description": "{jobs: [...]}"}}},
            "post": {"summary": "queue a job: the keys of a job file; or a template by name",
                     "requestBody": {"content": {"application/json": {"schema": {
                         "type": "object",
                         "properties": {"command": {"type": "array", "items": {"type": "string"}},
                                        "template": {"type": "string"},
                                        "set": {"type": "array", "items": {"type": "string"}},
                                        "sweep": {"type": "array", "items": {"type": "string"}},
                                        "trials": {"type": "integer"}, "seed": {"type": "integer"},
                                        "hold": {"type": "boolean"}},
                         "additionalProperties": True}}}},
                     "responses": {"201": {"description": "{ids: [...]}"}, "400": {"description": "bad job"},
                                   "403": {"description": "read-only"}, "413": {"description": "over 1 MiB"}}}},
        f"{PREFIX}/jobs/{{id}}": {"get": {"summary": "one job, as `ugro show --json`",
                                          "responses": {"200": {"description": "the job"},
                                                        "404": {"description": "no such job"}}}},
        f"{PREFIX}/jobs/{{id}}/{{action}}": {"post": {
            "summary": "cancel, hold, release or retry",
            "parameters": [{"name": "action", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": sorted(ACTIONS)}}],
            "responses": {"200": {"description": "{ok, message}"}, "409": {"description": "not now"}}}},
        f"{PREFIX}/jobs/{{id}}/logs": {"get": {
            "summary": "a job's output as `ugro logs`; server-sent events with follow=1 until the job ends",
            "parameters": [{"name": "rank", "in": "query", "schema": {"type": "integer"}},
                           {"name": "node", "in": "query", "schema": {"type": "string"}},
                           {"name": "follow", "in": "query", "schema": {"type": "integer", "enum": [0, 1]}}],
            "responses": {"200": {"description": "text/plain, or text/event-stream"}}}},
        f"{PREFIX}/openapi.json": {"get": {"summary": "this document",
                                           "responses": {"200": {"description": "OpenAPI 3"}}}},
    },
}
