"""The web service: textual-serve (one app process per browser tab) behind a token, the JSON API, and the
dispatcher when no other process dispatches. textual-serve has no authentication of its own, and its websocket
accepts any Origin: every route here needs the token, and /ws also an Origin that matches the page's."""

from __future__ import annotations

import asyncio
import logging
import shlex
import ssl
import sys
from pathlib import Path

from aiohttp import web
from textual_serve.server import Server

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.pool import Pool
from ugro_tui.core.telemetry.monitor import Monitor
from ugro_tui.web.api import Api, error, errors_as_json
from ugro_tui.web.token import same

COOKIE = "ugro_token"
MAX_BODY = 1 << 20
log = logging.getLogger("ugro.web")


class UgroWeb(Server):
    def __init__(self, cluster: Cluster, config: Path, *, host: str, port: int, token: str,
                 tls: tuple[str, str] | None = None, dispatch: bool = True) -> None:
        command = f"{shlex.quote(sys.executable)} -m ugro_tui --config {shlex.quote(str(config))}"
        if cluster.read_only:
            command += " --read-only"
        scheme = "https" if tls else "http"
        shown = f"[{host}]" if ":" in host else host
        super().__init__(command, host=host, port=port, title=f"ugro {cluster.name}",
                         public_url=f"{scheme}://{shown}:{port}")
        self.cluster = cluster
        self.token = token
        self.tls = tls
        self.dispatch = dispatch
        self.store = JobStore()
        self.pool = Pool(cluster)
        self.monitor = Monitor(cluster, pool=self.pool)
        self.runtime = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def start_url(self) -> str:
        return f"{self.public_url}/?token={self.token}"

    def dispatcher_note(self) -> str:
        if self.runtime is None:
            return "not dispatching here (--no-dispatch)"
        return self.runtime.note

    async def _make_app(self) -> web.Application:
        import aiohttp_jinja2
        import jinja2

        class NoThirdParty(jinja2.FileSystemLoader):
            """textual-serve's page, without its web font from fonts.googleapis.com: nothing but this server."""

            def get_source(self, environment, template):  # type: ignore[override]
                text, name, uptodate = super().get_source(environment, template)
                kept = [line for line in text.splitlines(keepends=True) if "fonts.googleapis.com" not in line]
                return "".join(kept), name, uptodate

        app = web.Application(client_max_size=MAX_BODY, middlewares=[self.authenticate, errors_as_json])
        aiohttp_jinja2.setup(app, loader=NoThirdParty(self.templates_path))
        api = Api(self.cluster, self.store, self.monitor.state, self.pool, self.dispatcher_note)
        app.add_routes([
            web.get("/", self.handle_index, name="index"),
            web.get("/ws", self.handle_websocket, name="websocket"),
            web.static("/static", self.statics_path, name="static"),
            *api.routes(),
        ])
        app.on_startup.append(self.on_startup)
        app.on_shutdown.append(self.on_shutdown)
        return app

    @web.middleware
    async def authenticate(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path == "/" and "token" in request.query:  # the printed link: a cookie, and the token leaves
            if not same(request.query["token"], self.token):
                return error(401, "wrong token (the link `ugro web` printed has the right one)")
            found = web.HTTPFound("/")
            found.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", secure=self.tls is not None,
                             path="/")
            return found
        bearer = request.headers.get("Authorization", "")
        given = bearer[7:].strip() if bearer.lower().startswith("bearer ") else request.cookies.get(COOKIE)
        if not same(given, self.token):
            return error(401, "a token is needed: open the link `ugro web` printed, or send "
                              "`Authorization: Bearer TOKEN`")
        if request.path == "/ws":
            scheme = "https" if self.tls else "http"
            if request.headers.get("Origin") != f"{scheme}://{request.host}":
                return error(403, "the websocket's Origin is not this page's")
        return await handler(request)

    async def on_startup(self, app: web.Application) -> None:
        self.monitor.start()
        if self.dispatch:
            from ugro_tui.core.runtime import Runtime

            self.runtime = Runtime(self.cluster, self.store, self.monitor.state, self.pool, "web")
            self._tasks.append(asyncio.create_task(self._dispatch(), name="web:dispatch"))

    async def _dispatch(self) -> None:
        assert self.runtime is not None
        try:
            await self.runtime.run(self.cluster.poll_interval, on_error=lambda exc: log.error("dispatcher: %s", exc))
        finally:
            self.runtime.release()

    async def on_shutdown(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.runtime is not None:
            self.runtime.release()
        await self.monitor.stop()  # it gathers its tasks' ends: it raises none of them
        await self.pool.close()

    def serve(self, debug: bool = False) -> None:
        """Until SIGINT or SIGTERM; every app process of a browser tab is ended with it."""
        import signal

        self.debug = debug
        logging.basicConfig(level=logging.WARNING, format="ugro web: %(message)s")
        context = None
        if self.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_exit)
        web.run_app(self._make_app(), host=self.host, port=self.port, ssl_context=context, handle_signals=False,
                    loop=loop, print=lambda *args: None, access_log=None)
