"""`/metrics` in OpenMetrics text, written by prometheus-client from the daemon's state at scrape time.

GPU series carry the names and labels of NVIDIA's dcgm-exporter (`DCGM_FI_DEV_*` with `gpu`, `UUID`, `modelName`,
`Hostname`), so a Grafana dashboard made for it works unchanged; ugro's own series carry the `ugro_` prefix."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST, generate_latest

from ugro_tui.core.jobs.model import Job, JobState
from ugro_tui.core.telemetry.model import ClusterState, NodeState

GPU_LABELS = ["gpu", "UUID", "modelName", "Hostname"]
# dcgm-exporter's field, its help, and how to read it off a sample (None: the GPU did not say)
DCGM = (
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda g: g.utilization_pct),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lambda g: g.memory_used_mib),
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).",
     lambda g: None if g.memory_used_mib is None or g.memory_total_mib is None
     else g.memory_total_mib - g.memory_used_mib),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda g: g.temperature_c),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lambda g: g.power_w),
)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class UgroCollector:
    """Reads the state when scraped; `jobs()` gives the active jobs."""

    def __init__(self, state: Callable[[], ClusterState], jobs: Callable[[], Iterable[Job]]) -> None:
        self.state = state
        self.jobs = jobs

    def collect(self) -> Iterator[Metric]:
        state = self.state()
        families = {name: GaugeMetricFamily(name, text, labels=GPU_LABELS) for name, text, _ in DCGM}
        energy = CounterMetricFamily("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                                     "Total energy consumption since boot (in mJ).", labels=GPU_LABELS)
        online = GaugeMetricFamily("ugro_node_online", "1 when the node answers and reports, else 0.",
                                   labels=["node", "state"])
        cpu = GaugeMetricFamily("ugro_node_cpu_percent", "The node's CPU use (in %).", labels=["node"])
        for name, status in sorted(state.nodes.items()):
            online.add_metric([name, str(status.state)], 1.0 if status.state is NodeState.ONLINE else 0.0)
            if status.host is not None and status.host.cpu_pct is not None:
                cpu.add_metric([name], status.host.cpu_pct)
            if status.state is not NodeState.ONLINE:
                continue  # no stale GPU figures: the series goes absent, as dcgm-exporter's do when it stops
            for gpu in status.gpus:
                labels = [str(gpu.index), gpu.uuid or "", gpu.name or "", name]
                for field, _, read in DCGM:
                    value = read(gpu)
                    if value is not None:
                        families[field].add_metric(labels, float(value))
                if gpu.energy_mj is not None:  # the GPU's own counter, as dcgm-exporter reads it
                    energy.add_metric(labels, gpu.energy_mj)
        yield from families.values()
        yield energy
        yield online
        yield cpu
        counts = Counter(j.state for j in self.jobs())
        jobs = GaugeMetricFamily("ugro_jobs", "Jobs in the queue, by state.", labels=["state"])
        for s in JobState:
            if not s.finished:
                jobs.add_metric([s.value], float(counts.get(s, 0)))
        yield jobs


def render(collector: UgroCollector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    return generate_latest(registry)
