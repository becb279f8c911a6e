"""The monitor: one long-lived agent stream per node, node states, reconnect with backoff and jitter."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

from ugro_tui.config import Cluster, Node
from ugro_tui.core.pool import Pool
from ugro_tui.core.telemetry.model import ClusterState, NodeState, NodeStatus
from ugro_tui.core.transport import (
    ConnectError,
    LineStream,
    Transport,
    export_env,
    make_transport,
    path_word,
    python_command,
)

HERE = Path(__file__).resolve().parent
PACKAGE_ONLY = "# package only"


def _node_script() -> bytes:
    """hostinfo.py then agent.py as one file: a node needs no package, and one copy keeps one hash."""
    agent = [line for line in (HERE / "agent.py").read_text().splitlines(keepends=True) if PACKAGE_ONLY not in line]
    return ((HERE / "hostinfo.py").read_text() + "\n\n" + "".join(agent)).encode()


AGENT_SOURCE = _node_script()
AGENT_PATH = f"~/.cache/ugro/agent-{hashlib.sha256(AGENT_SOURCE).hexdigest()[:12]}.py"
STALE_AFTER = 3          # intervals without a sample
AGENT_FAILS = 3          # agent starts in a row without a sample, on a live connection, before the node says so
RECONNECT_AFTER = 10     # intervals without a sample: the stream is dead even if TCP says otherwise
BACKOFF_CAP = 30.0       # seconds
NO_RETRY = {"auth-failed": NodeState.AUTH_FAILED, "host-key-mismatch": NodeState.HOST_KEY_MISMATCH,
            "unknown-host-key": NodeState.UNKNOWN_HOST_KEY}

TransportFactory = Callable[[Node, Cluster], Transport]


def agent_command(node: Node, interval: float) -> str:
    return (f"{node.prelude}{export_env(node.env)}"
            f"exec {python_command(node)} -u {path_word(AGENT_PATH)} --interval {interval:g} "
            f"--workdir {path_word(node.workdir)}")


def backoff_delay(attempt: int, base: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter in [0.5, 1.5) of the step, capped."""
    step = min(BACKOFF_CAP, base * (2 ** min(attempt, 16)))
    return step * (0.5 + rng.random())


class Monitor:
    """Keeps ClusterState current. `on_change(status)` runs after every state change or sample of a node."""

    def __init__(self, cluster: Cluster, *, on_change: Callable[[NodeStatus], None] | None = None,
                 transport_factory: TransportFactory = make_transport, clock: Callable[[], float] = time.time,
                 seed: int | None = None, state: ClusterState | None = None, pool: Pool | None = None) -> None:
        self.cluster = cluster
        self.interval = cluster.poll_interval
        self.state = state or ClusterState([(n.name, n.address) for n in cluster.nodes], history=cluster.history)
        self.on_change = on_change
        self._factory = pool.for_node if pool is not None else transport_factory
        self._owns_transports = pool is None  # a pool's owner closes its transports, once
        self._clock = clock
        self._rng = random.Random(seed)
        self._tasks: list[asyncio.Task[None]] = []
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._streams: dict[str, LineStream] = {}
        self.transports: dict[str, Transport] = {}
        self._wake: dict[str, asyncio.Event] = {}

    def start(self) -> None:
        for node in self.cluster.nodes:
            self.transports[node.name] = self._factory(node, self.cluster)
            self._wake[node.name] = asyncio.Event()
            self._start_follower(node)
        self._tasks.append(asyncio.create_task(self._watch_staleness(), name="telemetry:staleness"))
        if self.cluster.slurm is not None and self.cluster.backend == "slurm":
            from ugro_tui.core.backends.slurm.nodes import follow_slurm_nodes

            follow = follow_slurm_nodes(self.cluster, self.state, self.transports.__getitem__, self._emit, self._clock)
            self._tasks.append(asyncio.create_task(follow, name="telemetry:slurm"))

    def _start_follower(self, node: Node) -> None:
        task = asyncio.create_task(self._follow(node), name=f"telemetry:{node.name}")
        self._followers[node.name] = task
        self._tasks.append(task)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.gather(*(s.close() for s in self._streams.values()), return_exceptions=True)
        self._streams.clear()
        if self._owns_transports:
            await asyncio.gather(*(t.close() for t in self.transports.values()), return_exceptions=True)

    async def __aenter__(self) -> Monitor:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_forever(self) -> None:
        """Until cancelled (the app's worker owns the monitor's lifetime)."""
        await asyncio.Event().wait()

    def retry_now(self, name: str) -> None:
        """Skip the backoff wait for one node (the user pressed retry); after an auth or host key problem the
        user has fixed, start following it again."""
        follower = self._followers.get(name)
        if follower is not None and follower.done():
            status = self.state.nodes[name]
            status.state, status.error = NodeState.CONNECTING, None
            self._emit(status)
            self._start_follower(self.cluster.node(name))
        else:
            self._wake[name].set()

    async def wait_settled(self, timeout: float) -> None:
        """Until every node has a sample or has failed once (for one-shot `ugro status`)."""
        deadline = self._clock() + timeout
        while self._clock() < deadline:
            slurm = self.cluster.backend != "slurm" or any(n.slurm for n in self.state.nodes.values())
            if slurm and all(n.state is not NodeState.CONNECTING for n in self.state.nodes.values()):
                return
            await asyncio.sleep(0.05)

    def _emit(self, status: NodeStatus) -> None:
        if self.on_change is not None:
            self.on_change(status)

    async def _follow(self, node: Node) -> None:
        status = self.state.nodes[node.name]
        transport = self.transports[node.name]
        attempt = 0
        while True:
            try:
                await transport.connect()
                await transport.copy_file(AGENT_SOURCE, AGENT_PATH, mode=0o644)
                stream = self._streams[node.name] = await transport.stream(agent_command(node, self.interval))
                async for line in stream:
                    try:
                        raw = json.loads(line)
                    except ValueError:
                        continue  # a stray line (a motd, a warning) is not a sample
                    if isinstance(raw, dict) and "gpus" in raw:
                        status.apply_sample(raw, self._clock())
                        attempt = 0
                        self._emit(status)
                reason = "telemetry stream ended (the agent or the connection stopped)"
            except ConnectError as exc:
                if exc.kind in NO_RETRY:
                    status.state, status.error, status.next_retry_at = NO_RETRY[exc.kind], exc.reason, None
                    self._emit(status)
                    return
                reason = exc.reason
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any other drop is a reason to reconnect, never to die
                reason = str(exc) or type(exc).__name__
            finally:
                stream = self._streams.pop(node.name, None)
                if stream is not None:
                    await stream.close()
            delay = backoff_delay(attempt, self.interval, self._rng)
            attempt += 1
            if await self._still_answers(transport):
                # Only the agent ended (killed on the node, or it crashed): start it again on the same
                # connection; what else is in flight on it (a launch, a log copy, a sync) goes on. One that
                # keeps failing (no writable ~/.cache, a wrong `python`) is said, and retried with backoff.
                if attempt >= AGENT_FAILS:
                    status.error = f"the telemetry agent does not run: {reason}"
                    self._emit(status)
                await asyncio.sleep(delay if attempt >= AGENT_FAILS else min(delay, self.interval))
                continue
            await transport.close()
            status.state, status.error = NodeState.OFFLINE, reason
            status.next_retry_at = self._clock() + delay
            self._emit(status)
            wake = self._wake[node.name]
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)
            status.state, status.next_retry_at = NodeState.CONNECTING, None
            self._emit(status)

    async def _still_answers(self, transport: Transport) -> bool:
        """Whether the node's connection is alive: it answers a command within the connect timeout."""
        if not transport.connected:
            return False
        try:
            done = await transport.run("true", timeout=self.cluster.connect_timeout)
        except (ConnectError, OSError, TimeoutError):
            return False
        return done.ok

    async def _watch_staleness(self) -> None:
        while True:
            await asyncio.sleep(self.interval / 2)
            now = self._clock()
            for name, status in list(self.state.nodes.items()):
                if name not in self.transports:  # a Slurm node without an agent: sinfo keeps it current
                    continue
                if status.state not in (NodeState.ONLINE, NodeState.STALE) or status.received_at is None:
                    continue
                silent = now - status.received_at
                if silent > RECONNECT_AFTER * self.interval:
                    stream = self._streams.get(name)
                    if stream is not None:  # the follower sees the end and reconnects
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stream.close(), self.interval)
                        await self.transports[name].close()
                elif silent > STALE_AFTER * self.interval and status.state is NodeState.ONLINE:
                    status.state = NodeState.STALE
                    self._emit(status)
