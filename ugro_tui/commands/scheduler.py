"""`ugro scheduler [--until-idle]`: the dispatcher, headless, with its own telemetry."""

from __future__ import annotations

import asyncio
from argparse import Namespace

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.pool import Pool
from ugro_tui.core.runtime import Runtime
from ugro_tui.core.telemetry.monitor import Monitor
from ugro_tui.errors import UgroError


async def _run(cluster: Cluster, until_idle: bool) -> int:
    async with Pool(cluster) as pool, Monitor(cluster, pool=pool) as monitor:
        runtime = Runtime(cluster, JobStore(), monitor.state, pool, "scheduler")
        if not runtime.acquire():
            raise UgroError(f"another dispatcher runs already ({runtime.lock.holder() or 'unknown'}); only one may")
        try:
            await monitor.wait_settled(cluster.connect_timeout + 3 * cluster.poll_interval)
            await runtime.run(cluster.poll_interval, until_idle=until_idle)
        finally:
            runtime.release()
    return 0


def run(args: Namespace, cluster: Cluster) -> int:
    return asyncio.run(_run(cluster, args.until_idle))
