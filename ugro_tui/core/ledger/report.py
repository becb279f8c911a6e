"""The ledger read for people: a job's row in words and JSON, `ugro usage`'s rows, and the Usage view's days and
top jobs. Every figure is priced per node."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from typing import Any

from ugro_tui.config import Cluster
from ugro_tui.core.doctor.starving import HINT, WINDOW, starved
from ugro_tui.core.ledger.book import Book, day_of
from ugro_tui.core.ledger.meter import Usage
from ugro_tui.errors import UsageError


def price(cluster: Cluster, node: str) -> float:
    found = next((n for n in cluster.nodes if n.name == node), None)
    return found.energy_price if found is not None and found.energy_price is not None else cluster.energy_price


def totals(row: dict[str, Any], cluster: Cluster) -> tuple[Usage, float]:
    total, cost = Usage(), 0.0
    for key, usage in row["gpus"].items():
        total.merge(usage)
        cost += usage.cost(price(cluster, key.rpartition(":")[0]))
    return total, cost


def starving(row: dict[str, Any]) -> list[tuple[str, float, float, float, float]]:
    """Per node where the job's GPUs idled while the node's CPU was saturated (the doctor's rule, judged on each
    WINDOW of the history): (node, CPU mean, GPU mean, over those windows, their minutes, the history's minutes).
    A window or two in a long job is noise: at least two, and a tenth of the job."""
    out: dict[str, tuple[str, float, float, float, float]] = {}
    for key, history in sorted(row.get("history", {}).items()):
        node = key.rpartition(":")[0]
        points = [p for p in history.points if p[1] is not None and p[4] is not None]
        windows = [points[i:i + WINDOW] for i in range(0, len(points) - WINDOW + 1, WINDOW)]
        found = [(w, judged) for w in windows if (judged := starved([p[4] for p in w], [p[1] for p in w]))]
        if len(found) < 2 or len(found) * 10 < len(windows):
            continue
        cpu = sum(j[0] for _, j in found) / len(found)
        gpu = sum(j[1] for _, j in found) / len(found)
        minutes = len(found) * WINDOW * history.step / 60
        if node not in out or minutes > out[node][3]:
            out[node] = (node, cpu, gpu, minutes, len(windows) * WINDOW * history.step / 60)
    return list(out.values())


def energy_doc(row: dict[str, Any] | None, cluster: Cluster) -> dict[str, Any]:
    if row is None:
        return {"energy": None, "gpu_history": {}, "starved": []}
    total, cost = totals(row, cluster)
    return {"energy": {"gpu_hours": round(total.gpu_seconds / 3600, 4), "kwh": round(total.wh / 1000, 6),
                       "cost": round(cost, 4), "currency": cluster.currency, "energy_source": total.energy_source,
                       "mean_util": total.mean_util, "peak_util": total.peak_util,
                       "peak_memory_mib": total.peak_memory_mib},
            "gpu_history": {key: history.to_json() for key, history in row.get("history", {}).items()},
            "starved": [{"node": n, "cpu_mean": round(c, 1), "gpu_mean": round(g, 1), "minutes": round(m, 1),
                         "of_minutes": round(t, 1)} for n, c, g, m, t in starving(row)]}


def energy_lines(row: dict[str, Any] | None, cluster: Cluster) -> list[str]:
    if row is None:
        return []
    total, cost = totals(row, cluster)
    mean = "-" if total.mean_util is None else f"{total.mean_util:.0f}%"
    lines = [f"  energy     : {total.gpu_seconds / 3600:.2f} GPU-hours, {total.wh / 1000:.3f} kWh, "
             f"{cost:.2f} {cluster.currency} (from the {total.energy_source}); GPU use mean {mean}, "
             f"peak {total.peak_util:.0f}%, peak memory {total.peak_memory_mib} MiB"]
    for node, cpu, gpu, minutes, of in starving(row):
        lines.append(f"  starved    : on {node} for {minutes:.0f} of {of:.0f} min the GPUs averaged {gpu:.0f}% while "
                     f"the CPU was {cpu:.0f}% busy: they waited for data ({HINT})")
    return lines


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


def daily(book: Book, cluster: Cluster, by: str, since: float, until: float
          ) -> tuple[list[str], dict[str, list[float]], dict[str, list[float]]]:
    """Every day of the span (an empty one too), and per user or node its kWh and its cost on each day."""
    days, at = [], since
    while day_of(at) <= day_of(until):
        if not days or days[-1] != day_of(at):
            days.append(day_of(at))
        at += 6 * 3600  # steps shorter than a day: a daylight-saving day is never skipped
    energy: dict[str, list[float]] = {}
    cost: dict[str, list[float]] = {}
    for i, day in enumerate(days):
        for node, users in book.days.get(day, {}).items():
            for user, usage in users.items():
                key = user if by == "user" else node
                energy.setdefault(key, [0.0] * len(days))[i] += usage.wh / 1000
                cost.setdefault(key, [0.0] * len(days))[i] += usage.cost(price(cluster, node))
    return days, energy, cost


def top_jobs(book: Book, cluster: Cluster, since: float, count: int) -> list[tuple[int, str, Usage, float]]:
    """The jobs that used the most energy in the span (ended in it or still running): id, user, use, cost."""
    rows = [(job_id, row["user"], *totals(row, cluster)) for job_id, row in book.jobs.items()
            if row["ended"] is None or row["ended"] >= since]
    return sorted(rows, key=lambda r: -r[2].wh)[:count]


def job_costs(book: Book, cluster: Cluster, job_ids: list[int]) -> dict[int, tuple[float, float]]:
    """kWh and cost per job the ledger has (a sweep's leaderboard, its total)."""
    out = {}
    for job_id in job_ids:
        row = book.jobs.get(job_id)
        if row is not None:
            usage, cost = totals(row, cluster)
            out[job_id] = (usage.wh / 1000, cost)
    return out
