"""The daemon: the one process per master and state dir that owns the runtime (the pool, telemetry, the
dispatcher and its backend, alerts, the config watcher), serving `/api/v1` on a private Unix socket.

Every task runs under the supervisor. Clients subscribe to `/api/v1/stream` for telemetry, job changes and events;
`ugro submit` kicks a round so a job that fits starts at once."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from ugro_tui import __version__
from ugro_tui.atomic import write_atomic
from ugro_tui.config import Cluster, load_cluster
from ugro_tui.core.daemon import where
from ugro_tui.core.daemon.client import running
from ugro_tui.core.daemon.ledger_task import keep_ledger
from ugro_tui.core.daemon.supervisor import Supervisor
from ugro_tui.core.daemon.watchers import file_stamp, idle_limit, watch_events, watch_idle, watch_jobs, watch_until_idle
from ugro_tui.core.daemon.web_view import WebView
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.ledger.book import Book
from ugro_tui.core.pool import Pool
from ugro_tui.core.runtime import Runtime
from ugro_tui.core.telemetry.model import ClusterState, NodeStatus
from ugro_tui.core.telemetry.monitor import Monitor
from ugro_tui.core.telemetry.wire import to_wire
from ugro_tui.errors import ConfigError, UgroError

log = logging.getLogger("ugro.daemon")
MAX_BODY = 1 << 20
CLOSE_STEP = 5.0  # seconds each step of the exit may take
QUEUE = 2000  # messages a subscriber may lag behind before it is dropped (it reconnects and starts fresh)


class AlreadyRunning(UgroError):
    exit_code = 2


def read_record() -> dict[str, Any] | None:
    try:
        doc = json.loads(where.record_path().read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def holder(lock: Path, wait: float = 5.0) -> str:
    """The pid written in daemon.lock by the daemon that holds it (it writes it just after taking the lock; until
    then the file may still name a killed one, whose pid is not alive)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            text = lock.read_text().strip()
        except OSError:
            text = ""
        if text.isdecimal() and running(int(text)):
            return text
        if time.monotonic() > deadline:
            return "?"
        time.sleep(0.02)



class Daemon(WebView):
    def __init__(self, cluster: Cluster, config: Path | None, *, dispatch: bool = True,
                 until_idle: bool = False) -> None:
        from ugro_tui.web.api import Api

        self.cluster = cluster
        self.config = config
        self.dispatch = dispatch  # False: `ugro web --no-dispatch`, a viewer beside another dispatcher
        self.until_idle = until_idle  # `ugro scheduler --until-idle`: stop after a round that left nothing to do
        self.started = time.time()
        self.store = JobStore()
        self.pool = Pool(cluster)
        self.state = ClusterState([(n.name, n.address) for n in cluster.nodes], cluster.history)
        self.supervisor = Supervisor(report=lambda line: self.publish({"kind": "daemon-error", "message": line}))
        self.runtime: Runtime | None = None
        self.monitor: Monitor | None = None
        self.subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self.requests = 0  # in flight
        self.last_activity = time.monotonic()
        self.rounds = 0
        self.left: int | None = None  # jobs left to start or follow after the last round
        self.config_problem: str | None = None
        self.stopping = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None  # while serving: `stop` from another thread goes there
        self._lock: IO[str] | None = None
        self._pushed: dict[str, float | None] = {}
        self._runner: web.AppRunner | None = None
        self.book = Book()  # GPU-hours and energy per job, node, day and user
        self.api = Api(cluster, self.store, self.state, self.pool, self.note, state_of=lambda: self.state,
                       changed=lambda: self.runtime.kick() if self.runtime is not None else None)
        self.api.usage_of = self.book.job  # /metrics: a running job's energy so far
        self.web: Any = None  # the web view (a UgroWeb) while one is served

    # --- one per state dir -------------------------------------------------------------------------------------

    def claim(self) -> None:
        """Hold daemon.lock for life: a second daemon on this state dir exits naming the first."""
        path = where.lock_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")  # noqa: SIM115 - held open for the daemon's life
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise AlreadyRunning(f"a ugro daemon runs already on {where.state()} (pid {holder(path)}, "
                                 f"socket {where.socket_path()})") from None
        os.ftruncate(f.fileno(), 0)  # the holder's pid, in the lock itself: a loser names it before any record
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lock = f

    async def serve(self, on_ready: Callable[[], Awaitable[None]] | None = None) -> None:
        """Listen on the socket (a stale one from a killed daemon is replaced: we hold the lock), write the record,
        run `on_ready` (the web view starts there), start every task; until `stop`."""
        self.loop = asyncio.get_running_loop()
        where.private_folder()
        sock_path = where.socket_path()
        sock_path.unlink(missing_ok=True)
        from ugro_tui.web.api import errors_as_json

        app = web.Application(client_max_size=MAX_BODY, middlewares=[self.same_user, self.count, errors_as_json])
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        old = os.umask(0o177)  # the socket is made 0600 from the start, not chmod-ed after
        try:
            await web.UnixSite(self._runner, str(sock_path)).start()
        finally:
            os.umask(old)
        write_atomic(where.record_path(), json.dumps({
            "pid": os.getpid(), "version": __version__, "socket": str(sock_path), "started": self.started,
            "config": str(self.config) if self.config else None}), mode=0o600)
        if on_ready is not None:
            try:
                await on_ready()
            except BaseException:
                await self.close()
                raise
        self.start_runtime()
        self.supervisor.start("config", self._watch_config)
        self.supervisor.start("jobs", lambda: watch_jobs(self.store, self.publish))
        self.supervisor.start("events", lambda: watch_events(self.publish))
        self.supervisor.start("idle", lambda: watch_idle(self))
        if self.cluster.daemon.ledger:
            self.supervisor.start("ledger", lambda: keep_ledger(self, self.book))
        if self.until_idle:
            self.supervisor.start("until-idle", lambda: watch_until_idle(self))
        log.info("ugro daemon %s pid %d on %s", __version__, os.getpid(), sock_path)
        await self.stopping.wait()
        await self.close()

    def start_runtime(self) -> None:
        self.monitor = Monitor(self.cluster, on_change=self._node_changed, state=self.state, pool=self.pool)
        self.runtime = Runtime(self.cluster, self.store, self.state, self.pool, "daemon")
        self.supervisor.start("telemetry", self._telemetry)
        self.supervisor.start("dispatcher", self._dispatch)

    def follow_config(self) -> None:
        """A new node list: telemetry starts over on the pool's kept connections; the dispatcher takes the new
        runtime between two rounds (the lock goes with it), so no round is cut in the middle."""
        old = self.runtime
        self.monitor = Monitor(self.cluster, on_change=self._node_changed, state=self.state, pool=self.pool)
        self.runtime = Runtime(self.cluster, self.store, self.state, self.pool, "daemon")
        if old is not None:
            self.runtime.lock, self.runtime.mine = old.lock, old.mine
        self.supervisor.start("telemetry", self._telemetry)

    async def _telemetry(self) -> None:
        assert self.monitor is not None
        async with self.monitor:
            await self.monitor.wait_forever()

    async def _dispatch(self) -> None:
        runtime = self.runtime
        assert runtime is not None
        record = self.supervisor.records["dispatcher"]
        try:
            while not self.stopping.is_set():
                if runtime is not self.runtime and self.runtime is not None:  # cluster.toml changed
                    await runtime.dispatcher.drain()
                    await runtime.alerts.drain()
                    runtime = self.runtime
                began = time.monotonic()
                if self.dispatch:
                    runtime.acquire()
                if runtime.mine and runtime.settled():
                    try:
                        left = await runtime.tick()
                        await runtime.alerts.observe()
                    except Exception as exc:  # a failed round is reported; the next one goes on
                        self.supervisor.failed(record, exc)
                    else:
                        self.left = len(left)
                    self.rounds += 1
                await runtime.pause(self.cluster.poll_interval, least=time.monotonic() - began)
        finally:
            await runtime.dispatcher.drain()
            await runtime.alerts.drain()
            runtime.release()

    async def close(self) -> None:
        """Each step has a deadline: a busy tab, a client's open request or a node's connection in the middle of
        its handshake never holds the exit (a loaded machine once took over 20 s)."""
        for queue in list(self.subscribers):
            queue.put_nowait(None)
        steps = [self.stop_web(), self.supervisor.stop(), *([self._runner.cleanup()] if self._runner else []),
                 self.pool.close()]
        for step in steps:
            try:
                await asyncio.wait_for(step, CLOSE_STEP)
            except (TimeoutError, OSError, RuntimeError) as exc:  # past its deadline, or a socket already gone
                log.warning("exit: a step did not finish cleanly (%s); going on", exc or type(exc).__name__)
        record = read_record()
        if record and record.get("pid") == os.getpid():
            where.record_path().unlink(missing_ok=True)
            Path(record.get("socket") or "").unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()

    def stop(self) -> None:
        self.stopping.set()

    def stop_soon(self) -> None:
        """`stop`, from any thread."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)

    # --- what changes, pushed ----------------------------------------------------------------------------------

    def publish(self, message: dict[str, Any]) -> None:
        for queue in list(self.subscribers):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # too slow to follow: it is dropped and reconnects
                self.subscribers.discard(queue)
                queue._queue.clear()  # type: ignore[attr-defined]
                queue.put_nowait(None)

    def _node_changed(self, status: NodeStatus) -> None:
        fresh = self._pushed.get(status.name) != status.received_at
        self._pushed[status.name] = status.received_at
        self.publish({"kind": "node", "node": {**to_wire(status), "sample": fresh}})

    async def _watch_config(self) -> None:
        """One config reader: an edit from any client or a text editor takes effect within a poll interval; a bad
        one is reported to every client and the old config kept. Unchanged nodes keep their connections."""
        seen = file_stamp(self.config)
        while True:
            await asyncio.sleep(max(0.5, self.cluster.poll_interval))
            now = file_stamp(self.config)
            if now == seen or self.config is None:
                continue
            seen = now
            try:
                cluster = await asyncio.to_thread(load_cluster, self.config)
            except ConfigError as exc:
                self.config_problem = str(exc)
                log.error("config: %s; keeping the config it had", exc)
                self.publish({"kind": "config-error", "message": f"{exc}; the daemon keeps the config it had"})
                continue
            self.config_problem = None
            await self.use(cluster)

    async def use(self, cluster: Cluster) -> None:
        old = self.state.nodes
        self.cluster = cluster
        self.api.cluster = cluster
        await self.pool.use(cluster)
        self.state = ClusterState([(n.name, n.address) for n in cluster.nodes], cluster.history)
        for name, status in old.items():
            if name in self.state.nodes and status.address == self.state.nodes[name].address:
                self.state.nodes[name] = status
        self.follow_config()
        log.info("config: nodes now %s", ", ".join(n.name for n in cluster.nodes))
        self.publish({"kind": "config", "nodes": [to_wire(s, history=True) for s in self.state.nodes.values()]})

    # --- the socket --------------------------------------------------------------------------------------------

    @web.middleware
    async def same_user(self, request: web.Request, handler) -> web.StreamResponse:
        """Only our own uid: the folder is private too, but a peer's credentials are the proof."""
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None and sock.family == socket.AF_UNIX:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
            if uid != os.getuid():
                return web.json_response({"error": f"uid {uid} may not use this daemon"}, status=403)
        return await handler(request)

    @web.middleware
    async def count(self, request: web.Request, handler) -> web.StreamResponse:
        self.requests += 1
        self.last_activity = time.monotonic()
        try:
            return await handler(request)
        finally:
            self.requests -= 1
            self.last_activity = time.monotonic()

    def routes(self) -> list[web.RouteDef]:
        from ugro_tui.core.daemon.actions import Actions
        from ugro_tui.core.daemon.reports import Reports
        from ugro_tui.web.api import PREFIX

        return [
            *self.api.routes(),
            *Actions(self).routes(PREFIX),
            *Reports(self).routes(PREFIX),
            web.post(f"{PREFIX}/daemon/web", self.web_request),
            web.post(f"{PREFIX}/daemon/web/stop", self.web_stop_request),
            web.get(f"{PREFIX}/daemon", self.status_doc),
            web.get(f"{PREFIX}/daemon/nodes", self.nodes_doc),
            web.post(f"{PREFIX}/daemon/kick", self.kick),
            web.post(f"{PREFIX}/daemon/retry/{{node}}", self.retry),
            web.post(f"{PREFIX}/daemon/stop", self.stop_request),
            web.get(f"{PREFIX}/stream", self.stream),
        ]

    def note(self) -> str:
        if not self.dispatch:
            return "not dispatching here (--no-dispatch)"
        return self.runtime.note if self.runtime is not None else "dispatch: starting"

    def status(self) -> dict[str, Any]:
        connections = {n.name: self.pool.connected(n.name) for n in self.cluster.nodes}
        return {"pid": os.getpid(), "version": __version__, "uptime_s": round(time.time() - self.started, 1),
                "socket": str(where.socket_path()), "config": str(self.config) if self.config else None,
                "clients": len(self.subscribers), "connections": connections,
                "dispatcher": self.note(), "dispatching": bool(self.runtime and self.runtime.mine),
                "rounds": self.rounds, "left": self.left, "config_problem": self.config_problem,
                "idle_exit_s": idle_limit(self.cluster), "tasks": self.supervisor.to_json()}

    async def status_doc(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    def hello(self) -> dict[str, Any]:
        """What a new client needs for its first frame: every node with its history, and who dispatches."""
        return {"kind": "hello", "version": __version__, "pid": os.getpid(), "dispatcher": self.note(),
                "nodes": [to_wire(s, history=True) for s in self.state.nodes.values()]}

    async def nodes_doc(self, request: web.Request) -> web.Response:
        return web.json_response(self.hello())

    async def kick(self, request: web.Request) -> web.Response:
        if self.runtime is not None:  # (a round in progress on an old runtime ends within the interval anyway)
            self.runtime.kick()
        return web.json_response({"ok": True, "rounds": self.rounds})

    async def retry(self, request: web.Request) -> web.Response:
        """Skip a node's reconnect backoff (a client's user pressed retry, or trusted its host key)."""
        name = request.match_info["node"]
        if name not in self.state.nodes or self.monitor is None:
            return web.json_response({"error": f"no node {name!r}"}, status=404)
        self.monitor.retry_now(name)
        return web.json_response({"ok": True})

    async def stop_request(self, request: web.Request) -> web.Response:
        asyncio.get_running_loop().call_later(0.05, self.stop)
        return web.json_response({"ok": True, "pid": os.getpid()})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Newline-delimited JSON: a hello with every node (history included), then each change as it happens."""
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE)
        self.subscribers.add(queue)
        try:
            await response.write(json.dumps(self.hello()).encode() + b"\n")
            while True:
                message = await queue.get()
                if message is None:
                    break
                await response.write(json.dumps(message).encode() + b"\n")
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.subscribers.discard(queue)
        return response


def run_foreground(cluster: Cluster, config: Path | None, *, level: int = logging.INFO, dispatch: bool = True,
                   until_idle: bool = False, on_ready: Callable[[Daemon], Awaitable[None]] | None = None) -> int:
    """`ugro daemon run`, `ugro scheduler` and `ugro web`: until SIGTERM/SIGINT, `ugro daemon stop` or idle
    exit. `on_ready` runs once the socket accepts, before the runtime starts (the web view listens there)."""
    logging.raiseExceptions = False  # a full disk while logging must never stop dispatching
    logging.basicConfig(level=level, format="%(asctime)s ugro daemon: %(message)s")
    # asyncssh logs every channel (with its whole command) at INFO: a running job's log copies alone would add
    # megabytes a day to daemon.log. Its warnings and errors still reach it.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    daemon = Daemon(cluster, config, dispatch=dispatch, until_idle=until_idle)
    daemon.claim()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, daemon.stop)
        await daemon.serve(None if on_ready is None else lambda: on_ready(daemon))

    asyncio.run(main())
    return 0
