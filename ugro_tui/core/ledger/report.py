"""A job's ledger row in words and in JSON: its GPUs' hours, energy, cost and history."""

from __future__ import annotations

from typing import Any

from ugro_tui.config import Cluster
from ugro_tui.core.ledger.meter import Usage


def price(cluster: Cluster, node: str) -> float:
    found = next((n for n in cluster.nodes if n.name == node), None)
    return found.energy_price if found is not None and found.energy_price is not None else cluster.energy_price


def totals(row: dict[str, Any], cluster: Cluster) -> tuple[Usage, float]:
    total, cost = Usage(), 0.0
    for key, usage in row["gpus"].items():
        total.merge(usage)
        cost += usage.cost(price(cluster, key.rpartition(":")[0]))
    return total, cost


def energy_doc(row: dict[str, Any] | None, cluster: Cluster) -> dict[str, Any]:
    if row is None:
        return {"energy": None, "gpu_history": {}}
    total, cost = totals(row, cluster)
    return {"energy": {"gpu_hours": round(total.gpu_seconds / 3600, 4), "kwh": round(total.wh / 1000, 6),
                       "cost": round(cost, 4), "currency": cluster.currency, "energy_source": total.energy_source,
                       "mean_util": total.mean_util, "peak_util": total.peak_util,
                       "peak_memory_mib": total.peak_memory_mib},
            "gpu_history": {key: history.to_json() for key, history in row.get("history", {}).items()}}


def energy_lines(row: dict[str, Any] | None, cluster: Cluster) -> list[str]:
    if row is None:
        return []
    total, cost = totals(row, cluster)
    mean = "-" if total.mean_util is None else f"{total.mean_util:.0f}%"
    return [f"  energy     : {total.gpu_seconds / 3600:.2f} GPU-hours, {total.wh / 1000:.3f} kWh, "
            f"{cost:.2f} {cluster.currency} (from the {total.energy_source}); GPU use mean {mean}, "
            f"peak {total.peak_util:.0f}%, peak memory {total.peak_memory_mib} MiB"]
