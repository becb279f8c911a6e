"""A streamed answer: newline-delimited JSON, each line as the work says it, then the work's last word."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Emit = Callable[[dict[str, Any]], None]


async def stream(request: web.Request, work: Callable[[Emit], Awaitable[dict[str, Any]]]) -> web.StreamResponse:
    """Run `work(emit)`: every emitted object goes out as a line at once, then what `work` returns. A client that
    goes away cancels the work."""
    lines: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def run() -> dict[str, Any]:
        try:
            return await work(lines.put_nowait)
        finally:
            lines.put_nowait(None)

    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    task = asyncio.create_task(run())
    try:
        while (line := await lines.get()) is not None:
            await response.write(json.dumps(line).encode() + b"\n")
        await response.write(json.dumps(await task).encode() + b"\n")
    finally:
        if not task.done():
            task.cancel()
    return response
