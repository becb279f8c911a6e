"""The daemon's web view: the browser app and the API over TCP behind the token, served from the daemon's own
loop and runtime (`ugro web` asks for it over the socket, or runs the daemon with it)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from aiohttp import web

from ugro_tui.errors import UgroError

log = logging.getLogger("ugro.daemon")


class WebView:
    """Daemon's part that serves the web view (a mixin: it reads the daemon's cluster, config and api)."""

    cluster: Any
    config: Path | None
    api: Any
    web: Any = None  # the UgroWeb while one is served

    async def start_web(self, host: str, port: int, tls: tuple[str, str] | None) -> str:
        """Serve the browser view and the API over TCP behind the token; returns the link once it accepts."""
        from ugro_tui.web.server import UgroWeb
        from ugro_tui.web.token import load_or_create

        if self.web is not None:
            if (self.web.host, self.web.port) == (host, port):
                return self.web.start_url
            raise UgroError(f"this daemon serves the web view on {self.web.public_url} already; "
                            "stop that `ugro web` first")
        token = await asyncio.to_thread(load_or_create)
        config = self.config or Path(self.cluster.source)
        view = UgroWeb(self.cluster, config, host=host, port=port, token=token, tls=tls, routes=self.api.routes())
        url = await view.listen()
        self.web = view
        log.info("web view on %s", view.public_url)
        return url

    async def stop_web(self) -> None:
        view, self.web = self.web, None
        if view is not None:
            await view.close()

    async def web_request(self, request: web.Request) -> web.Response:
        try:
            doc = await request.json()
            host, port = str(doc["host"]), int(doc["port"])
            tls = tuple(doc["tls"]) if doc.get("tls") else None
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected {\"host\", \"port\", \"tls\"}"}, status=400)
        try:
            url = await self.start_web(host, port, tls)  # type: ignore[arg-type]
        except (OSError, UgroError) as exc:
            return web.json_response({"error": f"cannot listen on {host}:{port}: "
                                               f"{getattr(exc, 'strerror', None) or exc}"}, status=409)
        return web.json_response({"url": url, "pid": os.getpid()})

    async def web_stop_request(self, request: web.Request) -> web.Response:
        await self.stop_web()
        return web.json_response({"ok": True})
