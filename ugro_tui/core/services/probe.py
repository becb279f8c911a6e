"""The health probe: an HTTP GET (2xx is healthy) or a TCP connect, made through the node's SSH connection to the
service's port as the node sees it, so a server bound to the node's loopback is probed and nothing new is opened
on the network. Every probe has a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ugro_tui.core.transport import ConnectError

NODE_LOOPBACK = "127.0.0.1"  # where the head is probed on its node; workers at their address, as the head reaches them


async def probe(transport: Any, host: str, port: int, path: str | None,
                timeout: float) -> tuple[bool, float | None, str]:
    """(healthy, latency in ms, error); latency is None when nothing answered."""
    began = time.monotonic()
    try:
        return await asyncio.wait_for(_probe(transport, host, port, path, began), timeout)
    except TimeoutError:
        return False, None, f"no answer within {timeout:g}s"
    except (OSError, EOFError, ConnectionError) as exc:
        return False, None, _said(exc, host, port)
    except Exception as exc:  # a probe never takes the follow down: a closed connection, a node gone
        return False, None, f"{type(exc).__name__}: {exc}"


async def _probe(transport: Any, host: str, port: int, path: str | None, began: float) -> tuple[bool, float, str]:
    reader, writer = await transport.open_tcp(host, port)
    try:
        if path is None:
            return True, (time.monotonic() - began) * 1000, ""
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: ugro-probe\r\n"
                     "Connection: close\r\n\r\n".encode("ascii"))
        line = await reader.readline()
        ms = (time.monotonic() - began) * 1000
        text = (line.decode("latin-1") if isinstance(line, bytes) else str(line)).strip()
        parts = text.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            return False, ms, f"not an HTTP answer on port {port}: {text[:60]!r}" if text else \
                f"port {port} closed the connection without an answer"
        code = int(parts[1])
        if 200 <= code < 300:
            return True, ms, ""
        return False, ms, f"GET {path}: HTTP {code}{' ' + parts[2] if len(parts) > 2 else ''}"
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def answers(transport: Any, host: str, port: int, timeout: float) -> bool:
    """Something holds the port as the node sees it, on its loopback or on `host` (its address): it accepts
    connections, or it neither accepts nor refuses one in time (a stopped server whose queue is full: a bind there
    fails all the same, and a node too slow to say counts as held too)."""
    for where in dict.fromkeys((NODE_LOOPBACK, host)):
        try:
            _, writer = await asyncio.wait_for(transport.open_tcp(where, port), timeout)
        except TimeoutError:
            return True
        except (OSError, EOFError, ConnectError):  # refused (free there), or the node is not reached: its start says so
            continue
        with contextlib.suppress(OSError):
            writer.close()
        return True
    return False


def _said(exc: BaseException, host: str, port: int) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionRefusedError) and "cannot reach" not in text:
        return f"connection refused on {host}:{port}"
    if "prohibited" in text:  # sshd refuses direct TCP channels: ugro probes and forwards through them
        return f"{text} (the node's sshd has TCP forwarding off: set AllowTcpForwarding yes, or local)"
    return text
