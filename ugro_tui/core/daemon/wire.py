"""One plain request to the daemon over its Unix socket: HTTP/1.0, so the answer ends when the daemon closes.
Written out rather than through http.client, whose import (email parsing) alone would cost `ugro submit` and
`ugro queue --json` a third of their budget; streamed answers (logs, sync, forwards) still use http.client."""

from __future__ import annotations

import socket


class NotSent(OSError):
    """Nothing was sent: no daemon listens there (the request may be made another way)."""


class Cut(OSError):
    """Sent, with no whole answer: the daemon may have acted on it."""


def exchange(path: str, method: str, route: str, body: bytes | None, timeout: float) -> tuple[int, bytes]:
    """The answer's status and body."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            raise NotSent(exc.errno, exc.strerror or str(exc)) from None
        head = f"{method} {route} HTTP/1.0\r\nHost: daemon\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        chunks = []
        try:
            sock.sendall(head.encode() + b"\r\n" + (body or b""))
            while chunk := sock.recv(1 << 20):
                chunks.append(chunk)
        except OSError as exc:
            raise Cut(exc.errno, exc.strerror or type(exc).__name__) from None
    status_line, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
    try:
        return int(status_line.split(b" ", 2)[1]), rest
    except (IndexError, ValueError):
        raise Cut(0, "not an HTTP answer") from None
