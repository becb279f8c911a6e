"""`ugro doctor [--json] [--smoke]`: preflight checks of every node and of the cluster as a whole."""

from __future__ import annotations

import asyncio
import json
import sys
from argparse import Namespace

from ugro_tui.commands.table import render
from ugro_tui.config import Cluster
from ugro_tui.core.doctor.checks import Check, Report, Status
from ugro_tui.core.doctor.run import run_doctor

MARK = {Status.OK: "ok", Status.WARN: "WARN", Status.FAIL: "FAIL", Status.SKIP: "-"}


def rows(checks: list[Check]) -> list[tuple[str, ...]]:
    return [(c.node, c.name, MARK[c.status], c.detail + (f"  → {c.hint}" if c.hint and c.status in
                                                           (Status.WARN, Status.FAIL) else "")) for c in checks]


async def _run(cluster: Cluster, smoke: bool) -> Report:
    """Without a daemon (auto-start off): over connections of its own."""
    from ugro_tui.core.pool import Pool
    from ugro_tui.core.telemetry.monitor import Monitor

    # Telemetry gathers samples while the checks run, for the starving-GPU check (a few seconds of history).
    async with Pool(cluster) as pool, Monitor(cluster, pool=pool) as monitor:
        report = await run_doctor(cluster, pool=pool, telemetry=monitor.state)
    if smoke:
        from ugro_tui.core.doctor.smoke import run_smoke

        report.checks.append(await run_smoke(cluster, report))
    return report


def run(args: Namespace, cluster: Cluster) -> int:
    if not args.json:
        print(f"checking {len(cluster.nodes)} node(s){' and a smoke run' if args.smoke else ''}…", file=sys.stderr)
    from ugro_tui.core.daemon import ask
    from ugro_tui.core.daemon.client import connect

    daemon = connect(cluster)  # its warm connections, and its dispatcher runs the smoke job
    report = ask.doctor(daemon, args.smoke) if daemon is not None else asyncio.run(_run(cluster, args.smoke))
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(render(("NODE", "CHECK", "RESULT", "DETAIL"), rows(report.checks)))
        counts = report.counts()
        print(f"\n{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail, {counts['skip']} skipped "
              f"(master: {report.master})")
    return 1 if report.failed else 0
