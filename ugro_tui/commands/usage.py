"""`ugro usage [--since 7d|DATE] [--until DATE] [--by user|node|job|sweep|day] [--json]`: GPU-hours, energy and
what it cost, from the daemon's ledger, with totals."""

from __future__ import annotations

import json
import re
import sys
import time
from argparse import Namespace
from collections import defaultdict

from ugro_tui.commands.table import render
from ugro_tui.config import Cluster
from ugro_tui.core.ledger.book import Book, day_of
from ugro_tui.core.ledger.meter import Usage
from ugro_tui.core.ledger.report import price
from ugro_tui.errors import UsageError

SPAN_RE = re.compile(r"^(\d+)([hdw])$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def moment(text: str, what: str, now: float) -> float:
    """`7d`, `24h`, `2w` ago, or a date (its midnight, local time)."""
    span = SPAN_RE.match(text)
    if span:
        return now - int(span.group(1)) * {"h": 3600, "d": 86400, "w": 7 * 86400}[span.group(2)]
    if DATE_RE.match(text):
        try:
            return time.mktime(time.strptime(text, "%Y-%m-%d"))
        except ValueError:
            pass
    raise UsageError(f"ugro usage {what}: expected 7d, 24h, 2w or a date such as 2026-12-01, got {text!r}")


def rows_by(book: Book, cluster: Cluster, by: str, since: float, until: float) -> dict[str, tuple[Usage, float]]:
    """key -> (usage, cost) for the span."""
    out: dict[str, tuple[Usage, float]] = {}

    def add(key: str, node: str, usage: Usage) -> None:
        total, cost = out.get(key, (Usage(), 0.0))
        total.merge(usage)
        out[key] = (total, cost + usage.cost(price(cluster, node)))

    if by in ("job", "sweep"):
        sweeps: dict[int, str] = defaultdict(str)
        if by == "sweep":
            from ugro_tui.core.jobs.store import JobStore

            sweeps.update({j.id: j.spec.sweep_id for j in JobStore().all() if j.spec.sweep_id})
        for job_id, row in sorted(book.jobs.items()):
            ended = row["ended"]
            if ended is not None and ended < since:
                continue
            key = str(job_id) if by == "job" else sweeps.get(job_id, "")
            if key:
                for gpu, usage in row["gpus"].items():
                    add(key, gpu.rpartition(":")[0], usage)
        return out
    first, last = day_of(since), day_of(until)
    for day, nodes in sorted(book.days.items()):
        if first <= day <= last:
            for node, users in nodes.items():
                for user, usage in users.items():
                    add({"user": user, "node": node, "day": day}[by], node, usage)
    return out


def run(args: Namespace, cluster: Cluster) -> int:
    now = time.time()
    since = moment(args.since, "--since", now) if args.since else now - 7 * 86400
    until = moment(args.until, "--until", now) if args.until else now
    book = Book()
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
