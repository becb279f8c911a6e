"""One interface to run things on a node: over SSH (one persistent asyncssh connection) or locally.

Every command is a POSIX shell string built by ugro with every value quoted, or an argv list that is
quoted here. SSH commands are wrapped in `sh -c` so a user's fish or zsh login shell cannot change their meaning.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ugro_tui.config import Cluster, Node

Command = str | Sequence[str]
CLOSE_WAIT = 2.0  # seconds a closed stream waits for its command to end before its channel is dropped
SESSIONS = 9  # SSH sessions at once on one node's connection (commands and streams): below sshd's MaxSessions, 10
DEADLINE = 60.0  # seconds for a command given no timeout: every remote call ends, a frozen node included


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    stdout: str
    stderr: str
    raw: bytes = b""  # stdout exactly as received, for byte offsets

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class ConnectError(Exception):
    """A node could not be reached. `kind` is one of KINDS; `reason` is one plain sentence."""

    KINDS = ("refused", "timeout", "auth-failed", "unknown-host-key", "host-key-mismatch", "unreachable",
             "closed", "error")

    def __init__(self, kind: str, reason: str, fingerprint: str | None = None) -> None:
        assert kind in self.KINDS, kind
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.fingerprint = fingerprint


def to_shell(cmd: Command) -> str:
    return cmd if isinstance(cmd, str) else shlex.join(cmd)


def path_word(path: str) -> str:
    """A path as one shell word; a leading ~ still means the node's home (quoting alone would stop that)."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def python_command(node: Node) -> str:
    """The node's `python` setting as shell words; a leading ~ still means the node's home."""
    words = shlex.split(node.python)
    return " ".join([path_word(words[0]), *map(shlex.quote, words[1:])])


def export_env(env: dict[str, str] | Sequence[tuple[str, str]]) -> str:
    items = env.items() if isinstance(env, dict) else env
    return "".join(f"export {k}={shlex.quote(v)}; " for k, v in items)


class _Reader(Protocol):
    async def readline(self) -> bytes: ...


class LineStream:
    """Lines of a long-running command's stdout. Closing it closes the channel, which ends the command."""

    def __init__(self, reader: _Reader, closer: Callable[[], Awaitable[None]], writer: Any = None,
                 waiter: Callable[[], Awaitable[int]] | None = None) -> None:
        self._reader = reader
        self._closer = closer
        self._writer = writer  # the command's stdin, for a conversation (`Transport.session`)
        self._waiter = waiter
        self.closed = False

    async def send(self, data: bytes) -> None:
        """Write to the command's stdin, waiting while the channel is full (so memory stays flat)."""
        self._writer.write(data)
        await self._writer.drain()

    async def reply(self) -> str:
        """The next line the command prints ("" once it has ended)."""
        line = await self._reader.readline()
        return line.decode("utf-8", "replace") if isinstance(line, bytes) else line

    async def exit_code(self) -> int:
        """After its output ended: how the command exited."""
        if self._writer is not None:
            with suppress(OSError, RuntimeError):  # the command already closed its end
                self._writer.write_eof()
        return await self._waiter() if self._waiter is not None else 0

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        while True:
            line = await self._reader.readline()
            if not line:
                return
            yield line.decode("utf-8", "replace") if isinstance(line, bytes) else line

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self._closer()

    async def __aenter__(self) -> LineStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Transport(ABC):
    """Run, stream, start detached, signal a process group and copy a file, on one node."""

    def __init__(self, node: Node) -> None:
        self.node = node

    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    async def _run_shell(self, script: str, stdin: bytes | None, timeout: float | None) -> RunResult: ...

    @abstractmethod
    async def _stream_shell(self, script: str) -> LineStream: ...

    async def run(self, cmd: Command, *, stdin: bytes | None = None, timeout: float | None = None) -> RunResult:
        """Run a command; past `timeout` (DEADLINE when None) it raises TimeoutError, whatever the node does:
        the deadline covers connecting, opening the channel and the command itself."""
        deadline = DEADLINE if timeout is None else timeout
        try:
            return await asyncio.wait_for(self._run_shell(to_shell(cmd), stdin, None), deadline)
        except TimeoutError:
            raise TimeoutError(f"{self.node.name}: no answer within {deadline:g}s") from None

    async def stream(self, cmd: Command) -> LineStream:
        """Start a command and follow its stdout line by line; `close()` the stream to stop it."""
        return await self._stream_shell(to_shell(cmd))

    async def session(self, cmd: Command) -> LineStream:
        """Start a command to talk with: `send` to its stdin, `reply` reads its lines. One SSH session for a whole
        exchange, where each `run` would open one (about 0.1 s apiece on OpenSSH)."""
        return await self._stream_shell(to_shell(cmd))

    async def spawn_detached(self, cmd: Command, *, workdir: str | None = None, log: str = "/dev/null") -> int:
        """Start a command in its own session (setsid), so it survives the connection; returns its pid = pgid."""
        cd = f"mkdir -p {path_word(workdir)} && cd {path_word(workdir)} && " if workdir else ""
        script = (f"{cd}setsid nohup sh -c {shlex.quote(to_shell(cmd))} >{path_word(log)} 2>&1 </dev/null & "
                  "echo $!")
        result = await self.run(script)
        if not result.ok or not result.stdout.strip().isdigit():
            raise RuntimeError(f"{self.node.name}: could not start the command: {result.stderr.strip()}")
        return int(result.stdout.strip())

    async def signal_group(self, pgid: int, sig: signal.Signals = signal.SIGTERM) -> bool:
        """Signal a process group by running kill on the node (OpenSSH refuses signal requests for root)."""
        result = await self.run(f"kill -s {sig.name.removeprefix('SIG')} -- -{int(pgid)}")
        return result.ok

    async def alive(self, pid: int) -> bool:
        return (await self.run(f"kill -0 {int(pid)} 2>/dev/null")).ok

    @abstractmethod
    async def open_tcp(self, host: str, port: int) -> tuple[Any, Any]:
        """A TCP stream to host:port as seen from the node (a direct channel on the SSH connection): nothing new
        is opened on the network, and a server bound to the node's loopback is reachable. Raises OSError."""

    async def copy_file(self, data: bytes | Path, dest: str, *, mode: int = 0o644) -> None:
        """Write a file on the node atomically (temp file, then rename)."""
        payload = data.read_bytes() if isinstance(data, Path) else data
        target = path_word(dest)
        script = (f'd=$(dirname -- {target}) && mkdir -p -- "$d" && t={target}.tmp.$$ && '
                  f'cat > "$t" && chmod {mode:o} "$t" && mv -f -- "$t" {target}')
        result = await self.run(script, stdin=payload)
        if not result.ok:
            raise RuntimeError(f"{self.node.name}: could not write {dest}: {result.stderr.strip()}")


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


class LocalTransport(Transport):
    """The same operations over asyncio subprocesses, for host = "localhost"."""

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @property
    def connected(self) -> bool:
        return True

    async def _run_shell(self, script: str, stdin: bytes | None, timeout: float | None) -> RunResult:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", script, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except (TimeoutError, asyncio.CancelledError):  # past its deadline: the command ends with the call
            with suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        code = proc.returncode if proc.returncode is not None and proc.returncode >= 0 else 128 - (proc.returncode or 0)
        return RunResult(code, _decode(out), _decode(err), out or b"")

    async def _stream_shell(self, script: str) -> LineStream:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", script, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True, limit=1 << 22)

        async def closer() -> None:
            assert proc.stdin is not None
            proc.stdin.close()  # the agent's cue to exit, as a closed SSH channel would be
            try:
                await asyncio.wait_for(proc.wait(), CLOSE_WAIT)
            except TimeoutError:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()

        async def waiter() -> int:
            code = await proc.wait()
            return code if code >= 0 else 128 - code

        assert proc.stdout is not None
        return LineStream(proc.stdout, closer, proc.stdin, waiter)

    async def open_tcp(self, host: str, port: int) -> tuple[Any, Any]:
        return await asyncio.open_connection(host, port)


class SshTransport(Transport):
    """One persistent asyncssh connection per node, with keepalive; reconnects on the next call after a drop."""

    def __init__(self, node: Node, cluster: Cluster, *, accept_new_host_key: bool = False) -> None:
        super().__init__(node)
        self.cluster = cluster
        self.accept_new_host_key = accept_new_host_key
        self._conn = None
        self._lock = asyncio.Lock()
        # sshd allows 10 sessions per connection (MaxSessions): commands and streams share one budget below it,
        # and one over it waits for a free session rather than fail.
        self._sessions = asyncio.Semaphore(SESSIONS)

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def connect(self) -> None:
        async with self._lock:
            if not self.connected:
                self._conn = await ssh_connect(self.node, self.cluster, accept_new=self.accept_new_host_key)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            await conn.wait_closed()

    def host_key_fingerprint(self) -> str | None:
        """SHA256 fingerprint of the key the node presented on this connection."""
        if not self.connected:
            return None
        key = self._conn.get_server_host_key()
        return key.get_fingerprint("sha256") if key is not None else None

    async def _connection(self):
        if not self.connected:
            await self.connect()
        return self._conn

    async def _run_shell(self, script: str, stdin: bytes | None, timeout: float | None) -> RunResult:
        import asyncssh

        conn = await self._connection()
        try:
            async with self._sessions:
                done = await conn.run("sh -c " + shlex.quote(script), input=stdin, encoding=None, check=False,
                                      timeout=timeout)
        except asyncssh.ChannelOpenError as exc:
            raise ConnectError("closed", f"{self.node.name}: {exc.reason}") from None
        except asyncssh.TimeoutError:
            raise TimeoutError(f"{self.node.name}: command timed out after {timeout}s") from None
        code = done.exit_status
        if code is None or code < 0:
            code = 128 + _signal_number(done.exit_signal)
        raw = done.stdout if isinstance(done.stdout, bytes) else b""
        return RunResult(code, _decode(done.stdout), _decode(done.stderr), raw)

    async def _stream_shell(self, script: str) -> LineStream:
        conn = await self._connection()
        await self._sessions.acquire()  # held while the stream's session is open
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self._sessions.release()

        try:
            proc = await conn.create_process("sh -c " + shlex.quote(script), encoding=None)
        except BaseException:
            release()
            raise

        async def closer() -> None:
            try:
                proc.close()  # closing the channel closes the agent's stdin: it exits at its next read
                try:
                    await asyncio.wait_for(proc.wait_closed(), CLOSE_WAIT)
                except TimeoutError:  # sshd keeps the channel until the command exits: do not wait on a slow one
                    proc.channel.abort()
            finally:
                release()

        async def waiter() -> int:
            await proc.wait_closed()
            release()
            code = proc.exit_status
            return code if code is not None and code >= 0 else 128 + _signal_number(proc.exit_signal)

        return LineStream(proc.stdout, closer, proc.stdin, waiter)


    async def open_tcp(self, host: str, port: int) -> tuple[Any, Any]:
        import asyncssh

        conn = await self._connection()
        try:
            return await conn.open_connection(host, port)
        except asyncssh.ChannelOpenError as exc:  # sshd could not connect there: refused, or forwarding is off
            raise ConnectionRefusedError(f"{self.node.name} cannot reach {host}:{port}: {exc.reason}") from None


def _signal_number(exit_signal: tuple | None) -> int:
    if not exit_signal:
        return 127
    try:
        return int(signal.Signals["SIG" + exit_signal[0]])
    except (KeyError, ValueError):
        return 127


async def ssh_connect(node: Node, cluster: Cluster, *, accept_new: bool = False):
    """Open a verified connection, or raise ConnectError naming why in the user's words."""
    import asyncssh

    from ugro_tui.core import hostkeys

    kh_path = cluster.known_hosts_path
    known = hostkeys.load_known_hosts(kh_path)
    port = node.port or 22
    verdict = hostkeys.HostKeyVerdict(node.host, port)

    class Client(asyncssh.SSHClient):
        def validate_host_public_key(self, host: str, addr: str, port_: int | None, key: asyncssh.SSHKey) -> bool:
            verdict.host = host
            verdict.fingerprint = key.get_fingerprint("sha256")
            verdict.key_type = key.get_algorithm()
            verdict.changed = hostkeys.has_entry(known, host, addr, port_ or 22)
            if accept_new and not verdict.changed:
                hostkeys.append_known_host(kh_path, host, port_ or 22, key)
                verdict.accepted_new = True
                return True
            return False

    options: dict = {
        # AES-GCM first: OpenSSL with AES instructions on both ends, several times chacha20's speed in asyncssh,
        # which matters for code sync and log copies; chacha20 stays for nodes without it.
        "encryption_algs": ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
                            "aes256-ctr", "aes192-ctr", "aes128-ctr"],
        "known_hosts": known,
        "connect_timeout": cluster.connect_timeout,
        "keepalive_interval": 5,
        "keepalive_count_max": 3,
        "client_factory": Client,
    }
    if cluster.ssh_config:
        options["config"] = [os.path.expanduser(cluster.ssh_config)]
    if node.port:
        options["port"] = node.port
    if node.user:
        options["username"] = node.user
    if node.identity_file:
        key_path = os.path.expanduser(node.identity_file)
        if not os.path.isfile(key_path):
            raise ConnectError("auth-failed", f"identity file not found: {node.identity_file}")
        options["client_keys"] = [key_path]
    try:
        return await asyncssh.connect(node.host, **options)
    except asyncssh.HostKeyNotVerifiable:
        kind = "host-key-mismatch" if verdict.changed else "unknown-host-key"
        raise ConnectError(kind, hostkeys.describe(verdict, kh_path), verdict.fingerprint) from None
    except asyncssh.PermissionDenied:
        who = node.user or "the current user"
        raise ConnectError("auth-failed", f"authentication failed for {who} (no accepted key)") from None
    except ConnectionRefusedError:
        raise ConnectError("refused", f"connection refused on port {port}") from None
    except (TimeoutError, asyncssh.TimeoutError):
        raise ConnectError("timeout", f"no answer within {cluster.connect_timeout:g}s") from None
    except socket.gaierror as exc:
        raise ConnectError("unreachable", f"cannot resolve host {node.host!r}: {exc.strerror}") from None
    except OSError as exc:
        raise ConnectError("unreachable", exc.strerror or str(exc)) from None
    except asyncssh.DisconnectError as exc:
        raise ConnectError("closed", f"disconnected: {exc.reason}") from None
    except asyncssh.Error as exc:
        raise ConnectError("error", str(exc)) from None


def make_transport(node: Node, cluster: Cluster, *, accept_new_host_key: bool = False) -> Transport:
    if node.is_local:
        return LocalTransport(node)
    return SshTransport(node, cluster, accept_new_host_key=accept_new_host_key)
