"""/metrics text: dcgm-exporter's names and labels for every GPU of an online node, ugro's own series, and a
format Prometheus's own parser reads."""

from __future__ import annotations

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from ugro_tui.core.jobs.model import Job, JobSpec, JobState
from ugro_tui.core.ledger.metrics import UgroCollector, render
from ugro_tui.core.telemetry.model import ClusterState, GpuSample, NodeState


def lab() -> ClusterState:
    state = ClusterState([("gpu-master", "127.0.0.2"), ("gpu1", "127.0.0.3"), ("gpu2", "127.0.0.4")], 10)
    for name, model, power in (("gpu-master", "RTX 5070 Ti", 250.5), ("gpu1", "RTX 4070", 180.0)):
        status = state.nodes[name]
        status.state = NodeState.ONLINE
        status.gpus = (GpuSample(0, f"GPU-{name}", model, 97.0, 10000, 16303, 71.0, power, 300.0, 55.0,
                                 energy_mj=1.5e9 if name == "gpu1" else None),)
    state.nodes["gpu2"].state = NodeState.OFFLINE
    return state


def test_dcgm_names_and_labels_and_ugro_series() -> None:
    jobs = [Job(1, JobSpec("a", ("x.py",)), JobState.RUNNING), Job(2, JobSpec("b", ("x.py",)))]
    text = render(UgroCollector(lab, lambda: jobs)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    util = {s.labels["Hostname"]: s for s in families["DCGM_FI_DEV_GPU_UTIL"].samples}
    assert set(util) == {"gpu-master", "gpu1"}  # the offline node's GPUs are absent, not stale
    assert util["gpu1"].value == 97.0 and util["gpu1"].labels == {"gpu": "0", "UUID": "GPU-gpu1",
                                                                   "modelName": "RTX 4070", "Hostname": "gpu1"}
    free = {s.labels["Hostname"]: s.value for s in families["DCGM_FI_DEV_FB_FREE"].samples}
    assert free == {"gpu-master": 6303.0, "gpu1": 6303.0}
    energy = families["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].samples  # its name as dashboards query it
    assert [(s.name, s.labels["Hostname"], s.value) for s in energy] == [
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "gpu1", 1.5e9)]
    states = {s.labels["state"]: s.value for s in families["ugro_jobs"].samples}
    assert states["running"] == 1 and states["queued"] == 1
    online = {s.labels["node"]: s.value for s in families["ugro_node_online"].samples}
    assert online == {"gpu-master": 1.0, "gpu1": 1.0, "gpu2": 0.0}
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1


def test_label_values_are_escaped_as_openmetrics_says() -> None:
    state = lab()
    status = state.nodes["gpu1"]
    status.gpus = (GpuSample(0, 'GPU-"q"', "RTX \\ 4070\nx", 1.0, 1, 2, 3.0, 4.0, 5.0, None),)
    text = render(UgroCollector(lambda: state, lambda: [])).decode()
    [sample] = [s for f in text_string_to_metric_families(text) if f.name == "DCGM_FI_DEV_GPU_UTIL"
                for s in f.samples if s.labels["Hostname"] == "gpu1"]
    assert sample.labels["UUID"] == 'GPU-"q"' and sample.labels["modelName"] == "RTX \\ 4070\nx"
