"""`ugro scheduler [--until-idle]`: the dispatcher, headless, with its own telemetry."""

from __future__ import annotations

import asyncio
from argparse import Namespace

from ugro_tui import paths
from ugro_tui.config import Cluster
from ugro_tui.core.jobs.dispatcher import Dispatcher, DispatcherLock
from ugro_tui.core.jobs.launcher import SshLauncher
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.telemetry.model import NodeState
from ugro_tui.core.telemetry.monitor import Monitor
from ugro_tui.errors import UgroError


async def _run(cluster: Cluster, until_idle: bool) -> int:
    store = JobStore()
    lock = DispatcherLock(paths.state_dir())
    if not lock.acquire("scheduler"):
        raise UgroError(f"another dispatcher runs already ({lock.holder() or 'unknown'}); only one may")
    launcher = SshLauncher(cluster, store)
    try:
        async with Monitor(cluster) as monitor:
            await monitor.wait_settled(cluster.connect_timeout + 3 * cluster.poll_interval)
            dispatcher = Dispatcher(cluster, store, monitor.state, launcher)

            def ready() -> bool:  # place only once every node has said something
                return all(n.state is not NodeState.CONNECTING for n in monitor.state.nodes.values())

            await dispatcher.run(interval=cluster.poll_interval, until_idle=until_idle, ready=ready)
    finally:
        await launcher.close()
        lock.release()
    return 0


def run(args: Namespace, cluster: Cluster) -> int:
    return asyncio.run(_run(cluster, args.until_idle))
