"""The web view, served by the daemon: textual-serve (one app process per browser tab, each a client of the
daemon) behind a token, and the daemon's JSON API. textual-serve has no authentication of its own, and its
websocket accepts any Origin: every route here needs the token, and /ws also an Origin that matches the page's."""

from __future__ import annotations

import shlex
import ssl
import sys
from pathlib import Path

from aiohttp import web
from textual_serve.server import Server

from ugro_tui.config import Cluster
from ugro_tui.web.api import error, errors_as_json
from ugro_tui.web.token import same

COOKIE = "ugro_token"
MAX_BODY = 1 << 20


class UgroWeb(Server):
    """The browser view of a daemon: textual-serve's pages and websocket, and the daemon's API routes, behind
    the token. It owns no connection, telemetry or dispatcher: every tab's app is a client of the daemon."""

    def __init__(self, cluster: Cluster, config: Path, *, host: str, port: int, token: str,
                 tls: tuple[str, str] | None = None, routes: list[web.RouteDef] | None = None) -> None:
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
        self.api_routes = routes or []
        self.runner: web.AppRunner | None = None

    @property
    def start_url(self) -> str:
        return f"{self.public_url}/?token={self.token}"

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
        app.add_routes([
            web.get("/", self.handle_index, name="index"),
            web.get("/ws", self.handle_websocket, name="websocket"),
            web.static("/static", self.statics_path, name="static"),
            *self.api_routes,
        ])
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

    async def listen(self) -> str:
        """Accept connections (in the daemon's loop); returns the link to print, only once it accepts."""
        context = None
        if self.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
        runner = web.AppRunner(await self._make_app(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port, ssl_context=context).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.runner = runner
        return self.start_url

    async def close(self) -> None:
        """Every tab's app process ends with it."""
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()
