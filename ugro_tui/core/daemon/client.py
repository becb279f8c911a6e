"""Clients of the daemon: one small HTTP client over its Unix socket, and auto-start (as tmux starts its server).

Commands use the blocking client; the app reads `/api/v1/stream` with aiohttp."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ugro_tui import __version__
from ugro_tui.core.daemon import where, wire
from ugro_tui.errors import UgroError, UsageError

if TYPE_CHECKING:  # only named in annotations: `ugro queue --json` imports no config code
    from ugro_tui.config import Cluster

START_TIMEOUT = 20.0  # seconds for a new daemon to answer (it loads the config and binds; SSH comes later)


class NoDaemon(UgroError):
    pass


def _streaming(path: str, timeout: float) -> Any:
    """An http.client connection over the socket, for answers read as they arrive (imported here: the plain
    requests of `ugro submit` and `ugro queue` go through wire.py without it)."""
    import http.client

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                raise
            self.sock = sock

    return UnixConnection("localhost", timeout=timeout)


def _answer(status: int, raw: bytes) -> Any:
    """The daemon's JSON answer, or its one line raised as the command itself would have said it."""
    try:
        doc = json.loads(raw or b"null")
    except ValueError:
        raise UgroError(f"the daemon answered {status} with something not JSON") from None
    if status >= 400:
        message = doc.get("error") if isinstance(doc, dict) else None
        raise (UsageError if status == 400 else UgroError)(message or f"the daemon refused: HTTP {status}")
    return doc


class Client:
    def __init__(self, path: Path | None = None, timeout: float = 10.0) -> None:
        self.path = path or where.socket_path()
        self.timeout = timeout

    def call(self, method: str, route: str, body: Any = None, timeout: float | None = None) -> Any:
        """One request; its JSON answer. NoDaemon when nothing listens; UgroError with the daemon's one line
        when it refuses."""
        return _answer(*self._request(method, route, body, timeout))

    def raw(self, route: str, timeout: float | None = None) -> bytes:
        """A GET's answer as the daemon sent it (JSON to pass on unparsed: `ugro queue --json`)."""
        status, raw = self._request("GET", route, None, timeout)
        if status >= 400:
            _answer(status, raw)  # raises the daemon's one line
        return raw

    def _request(self, method: str, route: str, body: Any, timeout: float | None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        try:
            return wire.exchange(str(self.path), method, f"/api/v1/{route}", data, timeout or self.timeout)
        except wire.NotSent as exc:
            raise NoDaemon(f"no daemon answers on {self.path} ({exc.strerror})") from None
        except wire.Cut as exc:
            raise NoDaemon(f"the daemon on {self.path} did not answer: {exc.strerror}") from None

    def status(self) -> dict[str, Any]:
        return self.call("GET", "daemon", timeout=5.0)

    def lines(self, method: str, route: str, body: Any, timeout: float = 600.0) -> Iterator[dict[str, Any]]:
        """A request whose answer is newline-delimited JSON, each object as it arrives."""
        import http.client

        connection = _streaming(str(self.path), timeout)
        try:
            connection.request(method, f"/api/v1/{route}", body=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
            answer = connection.getresponse()
            if answer.status >= 400:
                doc = json.loads(answer.read() or b"null")
                message = doc.get("error") if isinstance(doc, dict) else None
                raise (UsageError if answer.status == 400 else UgroError)(message or f"HTTP {answer.status}")
            while line := answer.readline():
                doc = json.loads(line)
                if isinstance(doc, dict):
                    yield doc
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NoDaemon(f"no daemon answers on {self.path} ({exc.strerror})") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise UgroError(f"the daemon's answer was cut: {exc}") from None
        finally:
            connection.close()

    def alive(self) -> bool:
        try:
            self.status()
        except NoDaemon:
            return False
        return True


class RemoteForward:
    """A service's port forwarded by the daemon over its connection, for as long as this object's request stays
    open (the app's `f`): `get_port()` and `close()`, as the in-process forward has. Blocks: make it in a thread."""

    def __init__(self, client: Client, job_id: int, local_port: int = 0) -> None:
        import http.client

        self._connection = _streaming(str(client.path), 30.0)
        try:
            self._connection.request("POST", "/api/v1/daemon/forward",
                                     body=json.dumps({"job": job_id, "local_port": local_port}).encode(),
                                     headers={"Content-Type": "application/json"})
            self._answer = self._connection.getresponse()
            first = json.loads(self._answer.readline() or b"null")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._connection.close()
            raise UgroError(f"the daemon could not forward job {job_id}: {exc}") from None
        if self._answer.status >= 400 or not isinstance(first, dict) or "port" not in first:
            self._connection.close()
            message = first.get("error") if isinstance(first, dict) else None
            raise UgroError(message or f"the daemon could not forward job {job_id}")
        self.port = int(first["port"])
        threading.Thread(target=self._drain, name=f"forward-{job_id}", daemon=True).start()

    def _drain(self) -> None:
        """Read the daemon's heartbeats until the request ends (closed here, or the daemon went)."""
        import http.client

        try:
            while self._answer.readline():
                pass
        except (OSError, http.client.HTTPException, ValueError):
            pass
        finally:
            self._connection.close()  # here, in the one thread that reads it

    def get_port(self) -> int:
        return self.port

    def close(self) -> None:
        """Cut the request: the reader sees its end, and the daemon's next heartbeat fails, so it closes the
        listener."""
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def version_note(status: dict[str, Any]) -> str | None:
    """A daemon of another version: the line that says so and what to do."""
    theirs = status.get("version")
    if theirs == __version__:
        return None
    return f"the daemon runs ugro {theirs}, this is {__version__}: run `ugro daemon restart` (running jobs go on)"


def autostart_allowed(cluster: Cluster) -> bool:
    return cluster.daemon.autostart and os.environ.get("UGRO_AUTOSTART", "1") not in ("0", "false", "no")


def spawn(config: Path | None) -> int:
    """A daemon in the background, in a session of its own, its output appended to daemon.log; returns its pid.
    A shell starts it and exits, so the daemon is nobody's child (no zombie in the app that started it)."""
    log = where.log_path()
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ugro_tui", "daemon", "run"]
    if config is not None:
        argv += ["--config", str(config)]
    shell = subprocess.run(["sh", "-c", 'log=$1; shift; setsid "$@" </dev/null >>"$log" 2>&1 & echo $!', "sh",
                            str(log), *argv], capture_output=True, check=False, timeout=10)
    text = shell.stdout.decode().strip()
    if not text.isdecimal():
        raise UgroError(f"could not start the daemon: {shell.stderr.decode().strip() or shell.returncode}")
    return int(text)


def running(pid: int) -> bool:
    """Whether the process lives (a zombie does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until_up(pid: int | None, timeout: float = START_TIMEOUT) -> Client:
    """Until the daemon answers. A daemon that loses the start race exits at once; the winner answers."""
    client = Client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.alive():
            return client
        if pid is not None and not running(pid):
            tail = _log_tail()
            if "runs already" not in tail:
                raise UgroError(f"the daemon did not start: {tail or 'it exited'} (see {where.log_path()})")
            pid = None  # another one won the race: wait for it
        time.sleep(0.05)
    raise UgroError(f"the daemon did not answer within {timeout:.0f} s (see {where.log_path()})")


def _log_tail() -> str:
    try:
        lines = where.log_path().read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def connect(cluster: Cluster, *, start: bool = True) -> Client | None:
    """The running daemon's client; one started in the background if none answers and auto-start is on (None
    when it is off). Refuses an unsafe socket folder with the reason."""
    where.private_folder(create=False)
    client = Client()
    if client.alive():
        return client
    if not start or not autostart_allowed(cluster):
        return None
    config = Path(cluster.source) if cluster.source and Path(cluster.source).is_file() else None
    return wait_until_up(spawn(config))


def require(cluster: Cluster, verb: str) -> Client:
    """The daemon for a verb that needs the runtime: the one that answers, or one started now. With auto-start
    off and none running, the one line that says what to do (commands never build a runtime of their own)."""
    client = connect(cluster)
    if client is None:
        raise NoDaemon(f"ugro {verb} needs the ugro daemon, and none runs (auto-start is off: [daemon] autostart "
                       "or UGRO_AUTOSTART); `ugro daemon start` starts one")
    return client


def nudge(cluster: Cluster) -> str | None:
    """After a submit: ask the daemon for a round now (starting one when allowed), so a job that fits starts at
    once. Returns a warning line when nothing will dispatch it, else None."""
    try:
        client = connect(cluster)
    except UgroError as exc:
        return f"warning: {exc}; the job waits in the queue"
    if client is None:
        if _lock_held():  # a `ugro scheduler` dispatches
            return None
        return ("warning: no ugro daemon runs and auto-start is off ([daemon] autostart or UGRO_AUTOSTART): "
                "the job waits until `ugro daemon start` or `ugro scheduler`")
    try:
        note = version_note(client.status())
        client.call("POST", "daemon/kick")
    except UgroError as exc:
        return f"warning: {exc}"
    return f"warning: {note}" if note else None


def kick() -> None:
    """Ask a running daemon for a round now; nothing when none runs (the change waits in the store)."""
    try:
        where.private_folder(create=False)
        Client(timeout=2.0).call("POST", "daemon/kick")
    except UgroError:
        pass


def nobody_dispatches() -> str | None:
    """For a read-only verb: a line when no daemon (and no other dispatcher) runs, so the queue does not move and
    states are as last written; None when one does."""
    try:
        where.private_folder(create=False)
    except UgroError:
        return None  # said by whatever tries to start one
    if Client().alive() or _lock_held():
        return None
    return "note: no ugro daemon runs, so nothing dispatches and states are as last written; `ugro daemon start`"


def _lock_held() -> bool:
    """Whether some process holds the dispatcher lock now (a `ugro scheduler`, an older app)."""
    import fcntl

    from ugro_tui import paths

    path = paths.state_dir() / "dispatcher.lock"
    try:
        f = open(path)  # noqa: SIM115 - closed below
    except OSError:
        return False
    try:
        fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        f.close()
    return False


async def subscribe(path: Path | None = None) -> AsyncIterator[dict[str, Any]]:
    """The daemon's pushed messages, one dict each, starting with its hello; ends when the daemon goes (the
    caller reconnects). A line that is not a JSON object is skipped."""
    import aiohttp

    connector = aiohttp.UnixConnector(path=str(path or where.socket_path()))
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    try:
        # A hello carries every node's history: at 64 nodes x 8 GPUs a line of some hundred KB.
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, read_bufsize=4 << 20) as session, \
                session.get("http://daemon/api/v1/stream") as response:
            if response.status != 200:
                raise UgroError(f"the daemon refused the stream: HTTP {response.status}")
            async for line in response.content:
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                if isinstance(doc, dict):
                    yield doc
    except aiohttp.ClientError as exc:  # refused, reset, or cut mid-message: the daemon went
        raise NoDaemon(f"{type(exc).__name__}: {exc}") from None
