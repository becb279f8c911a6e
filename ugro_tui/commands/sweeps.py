"""`ugro sweeps` and `ugro sweep show|cancel ID`: a sweep's trials ranked by their metric."""

from __future__ import annotations

import json
import time
from argparse import Namespace

from ugro_tui.commands.table import DASH, render
from ugro_tui.config import Cluster
from ugro_tui.core.jobs import actions
from ugro_tui.core.jobs.leaderboard import Sweep, find, sweeps
from ugro_tui.core.jobs.model import IllegalTransition
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.errors import UsageError


def _value(value: float | None) -> str:
    return DASH if value is None else f"{value:.4g}"


def list_sweeps(args: Namespace, cluster: Cluster) -> int:
    found = sweeps(JobStore().all())
    if args.json:
        print(json.dumps({"sweeps": [s.to_json() | {"trials": len(s.trials)} for s in found]}, indent=1))
        return 0
    if not found:
        print("no sweeps yet; `ugro submit --sweep lr=loguniform:1e-5:1e-2 --trials 8 -- train.py` starts one")
        return 0
    rows = []
    for sweep in found:
        top = sweep.leaderboard()[0]
        states = " ".join(f"{n} {state}" for state, n in sorted(sweep.counts().items()))
        rows.append((sweep.id, sweep.name, str(len(sweep.trials)), states, f"{sweep.metric} ({sweep.goal})",
                     _value(top.best[1] if top.best else None), sweep.early_stop or DASH,
                     sweep.eta_text(time.time()).removeprefix("ETA ") or DASH))
    print(render(("SWEEP", "NAME", "TRIALS", "STATES", "METRIC", "BEST", "EARLY STOP", "ETA"), rows))
    return 0


def _sweep(sweep_id: str) -> Sweep:
    found = find(JobStore().all(), sweep_id)
    if found is None:
        raise UsageError(f"ugro sweep: no sweep {sweep_id!r} (`ugro sweeps` lists them)")
    return found


def show(args: Namespace, cluster: Cluster) -> int:
    from ugro_tui.core.ledger.book import Book
    from ugro_tui.core.ledger.report import job_costs

    sweep = _sweep(args.id)
    spent = job_costs(Book(reader=True), cluster, [j.id for j in sweep.trials])  # what each trial's GPUs used
    kwh, cost = sum(k for k, _ in spent.values()), sum(c for _, c in spent.values())
    if args.json:
        doc = sweep.to_json()
        for row in doc["trials"]:
            row["kwh"], row["cost"] = (round(x, 6) for x in spent[row["id"]]) if row["id"] in spent else (None, None)
        doc["energy"] = {"kwh": round(kwh, 6), "cost": round(cost, 4), "currency": cluster.currency}
        print(json.dumps(doc, indent=1))
        return 0
    ran, full = sweep.saved_steps()
    eta = sweep.eta_text(time.time())
    print(f"sweep {sweep.id}: {sweep.name}, {len(sweep.trials)} trials, {sweep.metric} ({sweep.goal} is best)"
          + (f", early stop {sweep.early_stop}: {full - ran} trial-steps saved" if sweep.early_stop else "")
          + (f", {eta}" if eta else ""))
    rows = []
    for place, row in enumerate(sweep.leaderboard(), 1):
        params = " ".join(f"{k}={v}" for k, v in row.job.spec.params)
        rows.append((str(place), str(row.job.id), params or DASH, _value(row.best[1] if row.best else None),
                     DASH if row.best is None else str(row.best[0]),
                     DASH if row.last_step is None else str(row.last_step), str(row.job.state),
                     *((f"{spent[row.job.id][0]:.3f}", f"{spent[row.job.id][1]:.2f}") if row.job.id in spent
                       else (DASH, DASH))))
    print(render(("#", "JOB", "PARAMS", f"BEST {sweep.metric.upper()}", "AT STEP", "LAST STEP", "STATE", "KWH",
                  f"COST {cluster.currency}"), rows))
    print(f"total: {kwh:.3f} kWh, {cost:.2f} {cluster.currency}")
    return 0


def cancel(args: Namespace, cluster: Cluster) -> int:
    sweep = _sweep(args.id)
    store = JobStore()
    said = 0
    for job in sweep.trials:
        if job.state.finished:
            continue
        try:
            print(actions.cancel(store, job.id))
            said += 1
        except IllegalTransition:  # it finished meanwhile
            continue
    if not said:
        print(f"sweep {sweep.id}: every trial has finished already")
    return 0
