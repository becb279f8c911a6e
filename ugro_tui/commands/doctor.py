"""`ugro doctor [--json] [--smoke]`: preflight checks of every node and of the cluster as a whole."""

from __future__ import annotations

import json
import sys
from argparse import Namespace

from ugro_tui.commands.table import render
from ugro_tui.config import Cluster
from ugro_tui.core.daemon import ask
from ugro_tui.core.daemon.client import require
from ugro_tui.core.doctor.checks import Check, Status

MARK = {Status.OK: "ok", Status.WARN: "WARN", Status.FAIL: "FAIL", Status.SKIP: "-"}


def rows(checks: list[Check]) -> list[tuple[str, ...]]:
    return [(c.node, c.name, MARK[c.status], c.detail + (f"  → {c.hint}" if c.hint and c.status in
                                                           (Status.WARN, Status.FAIL) else "")) for c in checks]


def run(args: Namespace, cluster: Cluster) -> int:
    # The daemon's warm connections and telemetry (the starving-GPU check reads its history), and its
    # dispatcher runs the smoke job.
    daemon = require(cluster, "doctor")
    if not args.json:
        print(f"checking {len(cluster.nodes)} node(s){' and a smoke run' if args.smoke else ''}…", file=sys.stderr)
    report = ask.doctor(daemon, args.smoke)
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(render(("NODE", "CHECK", "RESULT", "DETAIL"), rows(report.checks)))
        counts = report.counts()
        print(f"\n{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail, {counts['skip']} skipped "
              f"(master: {report.master})")
    return 1 if report.failed else 0
