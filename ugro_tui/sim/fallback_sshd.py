"""An SSH server for machines without OpenSSH's sshd: runs each command with /bin/sh as the current user.

Usage: python -m ugro_tui.sim.fallback_sshd HOST PORT HOST_KEY AUTHORIZED_KEYS (loopback only).
"""

from __future__ import annotations

import asyncio
import sys

import asyncssh

from ugro_tui.sim.loopback import loopback_only


async def _session(process: asyncssh.SSHServerProcess[bytes]) -> None:
    child = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", process.command or "exec /bin/sh", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await process.redirect(stdin=child.stdin)
    # Output is copied here, to its end, before the exit status: a redirect could still hold the last bytes of a
    # fast command when the channel closed (its output was lost now and then).
    assert child.stdout is not None and child.stderr is not None
    await asyncio.gather(_copy(child.stdout, process.stdout), _copy(child.stderr, process.stderr))
    code = await child.wait()
    process.exit(code if code >= 0 else 128 - code)


async def _copy(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
    while data := await source.read(1 << 16):
        sink.write(data)
        await sink.drain()


async def serve(host: str, port: int, host_key: str, authorized_keys: str) -> None:
    await asyncssh.create_server(
        asyncssh.SSHServer, loopback_only(host), port, server_host_keys=[host_key],
        authorized_client_keys=authorized_keys, process_factory=_session, encoding=None)
    await asyncio.Event().wait()


if __name__ == "__main__":
    host, port, key, auth = sys.argv[1:5]
    asyncio.run(serve(host, int(port), key, auth))
