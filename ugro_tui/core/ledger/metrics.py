"""`/metrics` in OpenMetrics text, from the daemon's state at scrape time.

GPU series carry the names and labels of NVIDIA's dcgm-exporter (`DCGM_FI_DEV_*` with `gpu`, `UUID`, `modelName`,
`Hostname`), so a Grafana dashboard made for it works unchanged; ugro's own series carry the `ugro_` prefix and are
written by prometheus-client. The GPU series are written here: 7 per GPU at 64 nodes x 8 GPUs is 3,584 samples,
which prometheus-client formats at about 25 us each (its label escaping goes character by character), 90 ms a
scrape; here each GPU's labels are escaped once and shared by its 7 lines (bench/ledger.py measures both).
`DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` is typed `unknown`: an OpenMetrics counter's samples must end in `_total`,
which would rename the series dashboards query."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.utils import floatToGoString

from ugro_tui.core.jobs.model import Job, JobState
from ugro_tui.core.ledger.meter import Usage
from ugro_tui.core.telemetry.model import ClusterState, GpuSample, NodeState

# dcgm-exporter's field, its type, its help, and how to read it off a sample (None: the GPU did not say)
DCGM: tuple[tuple[str, str, str, Callable[[GpuSample], float | int | None]], ...] = (
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", lambda g: g.utilization_pct),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", lambda g: g.memory_used_mib),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).",
     lambda g: None if g.memory_used_mib is None or g.memory_total_mib is None
     else g.memory_total_mib - g.memory_used_mib),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", lambda g: g.temperature_c),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", lambda g: g.power_w),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "unknown", "Total energy consumption since boot (in mJ); a counter.",
     lambda g: g.energy_mj),
)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') + '"'


def gpu_text(state: ClusterState) -> str:
    """The DCGM families of every online node's GPUs (a node that is not online has none: its series go absent,
    as dcgm-exporter's do when it stops)."""
    lines: dict[str, list[str]] = {name: [] for name, *_ in DCGM}
    for name, status in state.nodes.items():
        if status.state is not NodeState.ONLINE:
            continue
        host = _quoted(name)
        for gpu in status.gpus:
            labels = (f'{{gpu="{gpu.index}",UUID={_quoted(gpu.uuid or "")},modelName={_quoted(gpu.name or "")},'
                      f"Hostname={host}}} ")
            for field, _, _, read in DCGM:
                value = read(gpu)
                if value is not None:
                    lines[field].append(field + labels + floatToGoString(value) + "\n")
    out = []
    for field, kind, text, _ in DCGM:
        out.append(f"# HELP {field} {text}\n# TYPE {field} {kind}\n")
        out.extend(lines[field])
    return "".join(out)


class UgroCollector:
    """Reads the state when scraped; `jobs()` gives the active jobs, `usage(id)` a job's ledger so far."""

    def __init__(self, state: Callable[[], ClusterState], jobs: Callable[[], Iterable[Job]],
                 usage: Callable[[int], Usage | None] = lambda _: None) -> None:
        self.state = state
        self.jobs = jobs
        self.usage = usage

    def collect(self) -> Iterator[Metric]:
        state = self.state()
        online = GaugeMetricFamily("ugro_node_online", "1 when the node answers and reports, else 0.",
                                   labels=["node", "state"])
        cpu = GaugeMetricFamily("ugro_node_cpu_percent", "The node's CPU use (in %).", labels=["node"])
        load = GaugeMetricFamily("ugro_node_load1", "The node's load average over 1 minute.", labels=["node"])
        memory = GaugeMetricFamily("ugro_node_memory_used_bytes", "The node's memory in use.", labels=["node"])
        for name, status in sorted(state.nodes.items()):
            online.add_metric([name, str(status.state)], 1.0 if status.state is NodeState.ONLINE else 0.0)
            host = status.host if status.state is NodeState.ONLINE else None
            if host is not None and host.cpu_pct is not None:
                cpu.add_metric([name], host.cpu_pct)
            if host is not None and host.load1 is not None:
                load.add_metric([name], host.load1)
            if host is not None and host.mem_used_mib is not None:
                memory.add_metric([name], host.mem_used_mib * 1048576.0)
        yield from (online, cpu, load, memory)
        yield from self._jobs(list(self.jobs()))

    def _jobs(self, jobs: list[Job]) -> Iterator[Metric]:
        counts = Counter(j.state for j in jobs)
        per_state = GaugeMetricFamily("ugro_jobs", "Jobs in the queue, by state.", labels=["state"])
        for s in JobState:
            if not s.finished:
                per_state.add_metric([s.value], float(counts.get(s, 0)))
        yield per_state
        now = time.time()
        waits = [now - j.submitted_at for j in jobs if j.state is JobState.QUEUED]
        wait = GaugeMetricFamily("ugro_queue_oldest_wait_seconds", "How long the oldest queued job has waited.")
        wait.add_metric([], max(waits, default=0.0))
        yield wait
        energy = CounterMetricFamily("ugro_job_energy_wh", "A running job's GPU energy so far (in Wh).",
                                     labels=["job", "name"])
        gpu_hours = CounterMetricFamily("ugro_job_gpu_hours", "A running job's GPU-hours so far.",
                                        labels=["job", "name"])
        healthy = GaugeMetricFamily("ugro_service_healthy", "1 when the service answers its health probe, else 0.",
                                    labels=["job", "name", "health"])
        for job in jobs:
            labels = [str(job.id), job.spec.name]
            if job.state is JobState.RUNNING and (usage := self.usage(job.id)) is not None:
                energy.add_metric(labels, usage.wh)
                gpu_hours.add_metric(labels, usage.gpu_seconds / 3600)
            if job.spec.kind == "service" and job.state.active:
                healthy.add_metric([*labels, job.health], 1.0 if job.health == "ready" else 0.0)
        yield from (energy, gpu_hours, healthy)


def render(collector: UgroCollector) -> bytes:
    """The GPU families, then ugro's (prometheus-client ends the text with `# EOF`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    return gpu_text(collector.state()).encode() + generate_latest(registry)
