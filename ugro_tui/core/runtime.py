"""The dispatching runtime: the lock, the launcher and the dispatcher, set up one way for every host of it.

The daemon (and `ugro scheduler --until-idle` or the doctor's smoke run where no daemon runs) makes one `Runtime`
over its store, telemetry state and connection pool. Only the holder of the dispatcher lock dispatches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from ugro_tui import paths
from ugro_tui.config import Cluster
from ugro_tui.core.alerts.service import AlertService
from ugro_tui.core.backends import Backend
from ugro_tui.core.jobs.dispatch_lock import DispatcherLock
from ugro_tui.core.jobs.dispatcher import Dispatcher
from ugro_tui.core.jobs.launcher import SshLauncher
from ugro_tui.core.jobs.model import Job
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.pool import Pool
from ugro_tui.core.telemetry.model import ClusterState, NodeState


class Runtime:
    def __init__(self, cluster: Cluster, store: JobStore, state: ClusterState, pool: Pool, owner: str) -> None:
        self.owner = owner
        self.state = state
        self.lock = DispatcherLock(paths.state_dir())
        self.dispatcher: Backend
        if cluster.backend == "slurm":  # Slurm places and runs; the store, states and logs stay ugro's
            from ugro_tui.core.backends.slurm.dispatcher import SlurmDispatcher

            self.dispatcher = SlurmDispatcher(cluster, store, pool)
        else:
            self.dispatcher = Dispatcher(cluster, store, state, SshLauncher(cluster, store, pool))
        self.alerts = AlertService(cluster.alerts, store, state)
        self.mine = False
        self.wake = asyncio.Event()  # set by `kick`: a submit or an edit asks for a round now

    def kick(self) -> None:
        """Run the next round at once instead of after the interval (a job that fits starts without waiting)."""
        self.wake.set()

    async def pause(self, interval: float, least: float = 0.0) -> None:
        """Until the interval passes or a kick comes; a kick waits at least `least` (as long as the last round
        took), so kicks in a row (a script submitting in a loop) leave the daemon half its time."""
        began = time.monotonic()
        with contextlib.suppress(TimeoutError):  # the interval passed with no kick: the usual round
            await asyncio.wait_for(self.wake.wait(), interval)
        rest = min(least, interval) - (time.monotonic() - began)
        if rest > 0:
            await asyncio.sleep(rest)
        self.wake.clear()  # the round to come sees every change made so far

    def acquire(self) -> bool:
        """Take the dispatcher lock if it is free; True while we hold it."""
        self.mine = self.mine or self.lock.acquire(self.owner)
        return self.mine

    @property
    def note(self) -> str:
        """Who dispatches, for a header: "dispatch: here" or "dispatch: scheduler pid 4242"."""
        note = "dispatch: here" if self.mine else f"dispatch: {self.lock.holder() or 'elsewhere'}"
        problem = getattr(self.dispatcher, "problem", None)  # Slurm's queue unreadable: the login node is away
        return f"{note} · {problem}" if problem and self.mine else note

    def settled(self) -> bool:
        """Place only once every node has said something (a node still connecting might have free GPUs)."""
        return all(n.state is not NodeState.CONNECTING for n in self.state.nodes.values())

    async def tick(self) -> list[Job]:
        return await self.dispatcher.tick()

    async def run(self, interval: float, *, until_idle: bool = False,
                  on_error: Callable[[Exception], None] | None = None,
                  on_note: Callable[[str], None] | None = None, stop: Callable[[], bool] | None = None) -> None:
        """Dispatch each interval while we hold the lock (trying to take it each round); a failed round is
        reported to `on_error` and the next one goes on."""
        while stop is None or not stop():
            self.acquire()
            if on_note is not None:
                on_note(self.note)
            began = time.monotonic()
            if self.mine and self.settled():
                try:
                    left = await self.tick()
                    await self.alerts.observe()  # after the round, so its starts and ends are seen at once
                except Exception as exc:
                    if on_error is None:
                        raise
                    on_error(exc)
                else:
                    if until_idle and not left:
                        await self.dispatcher.drain()
                        await self.alerts.drain()
                        return
            await self.pause(interval, least=time.monotonic() - began)
        await self.dispatcher.drain()
        await self.alerts.drain()

    def release(self) -> None:
        self.lock.release()
        self.mine = False
