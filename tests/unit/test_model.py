"""Node status, history and cluster health."""

from __future__ import annotations

from ugro_tui.core.telemetry.model import ClusterState, NodeState


def gpu(index: int, util: float | None, used: int, total: int, procs: int = 0) -> dict:
    return {"index": index, "uuid": f"GPU-{index}", "name": "NVIDIA GeForce RTX 4070", "utilization_pct": util,
            "memory_used_mib": used, "memory_total_mib": total, "temperature_c": 40, "power_w": 20.0,
            "power_limit_w": 200.0, "fan_pct": None,
            "processes": [{"pid": 100 + i, "user": "ob", "command": "python", "used_mib": 100} for i in range(procs)]}


def test_health_counts_online_nodes_only() -> None:
    state = ClusterState([("a", "a"), ("b", "b"), ("c", "c")])
    state.nodes["a"].apply_sample({"t": 1.0, "gpus": [gpu(0, 90, 4096, 8192, procs=1), gpu(1, 0, 1024, 8192)]}, 1.0)
    state.nodes["b"].apply_sample({"t": 1.0, "gpus": [gpu(0, None, 2048, 12288)]}, 1.0)
    state.nodes["b"].state = NodeState.STALE
    state.nodes["c"].apply_sample({"t": 1.0, "gpus": [], "error": "no GPU driver"}, 1.0)
    h = state.health()
    assert (h.nodes_total, h.nodes_healthy, h.gpus_total, h.gpus_busy) == (3, 1, 2, 1)
    assert h.memory_total_gb == 16.0 and h.memory_used_gb == 5.0
    assert h.utilization_pct == 45.0


def test_history_is_a_fixed_ring_per_gpu() -> None:
    state = ClusterState([("a", "a")], history=5)
    node = state.nodes["a"]
    for t in range(12):
        node.apply_sample({"t": t, "gpus": [gpu(0, t, 1, 2), gpu(1, None, 1, 2)]}, t)
    assert list(node.history[0]) == [7, 8, 9, 10, 11]
    assert list(node.history[1]) == [None] * 5


def test_status_json_shape() -> None:
    state = ClusterState([("a", "ob@127.0.0.3")])
    state.nodes["a"].apply_sample({"t": 5.0, "source": "nvml", "gpus": [gpu(0, 50, 1, 2, procs=1)]}, 5.1)
    out = state.to_json()
    assert set(out) == {"health", "nodes"}
    node = out["nodes"][0]
    assert {"name", "state", "error", "gpus"} <= set(node)
    assert set(node["gpus"][0]) == {"index", "uuid", "name", "utilization_pct", "memory_used_mib",
                                    "memory_total_mib", "temperature_c", "power_w", "power_limit_w", "fan_pct",
                                    "processes", "energy_mj"}
    assert node["gpus"][0]["processes"][0] == {"pid": 100, "user": "ob", "command": "python", "used_mib": 100,
                                               "ugro_job": None}
