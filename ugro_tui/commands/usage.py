"""`ugro usage [--since 7d|DATE] [--until DATE] [--by user|node|job|sweep|day] [--json]`: GPU-hours, energy and
what it cost, from the daemon's ledger, with totals."""

from __future__ import annotations

import json
import sys
import time
from argparse import Namespace

from ugro_tui.commands.table import render
from ugro_tui.config import Cluster
from ugro_tui.core.ledger.book import Book
from ugro_tui.core.ledger.meter import Usage
from ugro_tui.core.ledger.report import moment, rows_by


def run(args: Namespace, cluster: Cluster) -> int:
    now = time.time()
    since = moment(args.since, "--since", now) if args.since else now - 7 * 86400
    until = moment(args.until, "--until", now) if args.until else now
    book = Book(reader=True)
    for line in book.recovered:
        print(f"ugro usage: {line}", file=sys.stderr)
    rows = rows_by(book, cluster, args.by, since, until)
    money = cluster.currency
    if args.json:
        print(json.dumps({"by": args.by, "since": since, "until": until, "currency": money, "rows": [
            {args.by: key, "gpu_hours": round(u.gpu_seconds / 3600, 4), "kwh": round(u.wh / 1000, 6),
             "cost": round(cost, 4), "energy_source": u.energy_source, "mean_util": u.mean_util,
             "peak_memory_mib": u.peak_memory_mib} for key, (u, cost) in sorted(rows.items())]}, indent=1))
        return 0
    total, total_cost = Usage(), 0.0
    table = []
    for key, (usage, cost) in sorted(rows.items(), key=lambda kv: -kv[1][0].wh):
        total.merge(usage)
        total_cost += cost
        table.append((key, f"{usage.gpu_seconds / 3600:.2f}", f"{usage.wh / 1000:.3f}", f"{cost:.2f} {money}",
                      usage.energy_source))
    table.append(("total", f"{total.gpu_seconds / 3600:.2f}", f"{total.wh / 1000:.3f}", f"{total_cost:.2f} {money}",
                  total.energy_source))
    print(render((args.by.upper(), "GPU-HOURS", "KWH", "COST", "ENERGY FROM"), table))
    return 0
