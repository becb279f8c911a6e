"""Reaching a service from here: a local port whose connections are piped over the node's SSH connection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, Protocol


class Forward(Protocol):
    def get_port(self) -> int: ...

    def close(self) -> None: ...


class _PipeForward:
    """A local listener whose connections are piped to streams that `opener` gives."""

    def __init__(self, server: asyncio.Server) -> None:
        self._server = server

    def get_port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        self._server.close()


async def _pipe(reader: Any, writer: Any) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with suppress(OSError, RuntimeError):  # the other end went first
            writer.close()


async def pipe_forward(local_port: int, opener: Callable[[], Awaitable[tuple[Any, Any]]]) -> Forward:
    async def carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            far_reader, far_writer = await opener()
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, far_writer), _pipe(far_reader, writer))

    return _PipeForward(await asyncio.start_server(carry, "127.0.0.1", local_port))


async def forward_service(store: Any, pool: Any, job_id: int, local_port: int) -> Forward:
    """127.0.0.1:local_port here, carried over the head node's SSH connection to the service's port there. Each
    new connection looks the service up again, so a forward outlives a restart, on another node too."""
    from ugro_tui.core.jobs.model import JobState
    from ugro_tui.core.services.probe import NODE_LOOPBACK

    async def opener() -> tuple[Any, Any]:
        job = await asyncio.to_thread(store.get, job_id)
        port = job.service.port if job.service else job.session.jupyter_port if job.session else 0
        if job.state is not JobState.RUNNING or not port or not job.placement:
            raise ConnectionRefusedError(f"job {job_id} is {job.health}: nothing to reach now")
        return await pool.get(job.placement[0][0]).open_tcp(NODE_LOOPBACK, port)

    return await pipe_forward(local_port, opener)
