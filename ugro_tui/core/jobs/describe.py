"""How jobs read in a table or a detail view, shared by the CLI and the app."""

from __future__ import annotations

import time

from ugro_tui.core.jobs.elastic import node_count
from ugro_tui.core.jobs.metric import best
from ugro_tui.core.jobs.model import Job, JobState
from ugro_tui.core.telemetry.model import ClusterState, byte_rate

DASH = "–"


def shape(job: Job) -> str:
    """nodes × GPUs (`2:3×1` elastic), the GB per rank of a job that may share its cards (`1×1·3G`), `·P` when
    preemptible."""
    mem = f"·{job.spec.gpu_mem_gb:g}G" if job.spec.gpu_mem_gb is not None else ""
    return f"{node_count(job.spec)}×{job.spec.gpus_per_node}{mem}" + ("·P" if job.spec.preemptible else "")


def placement_text(job: Job) -> str:
    return " ".join(f"{node}:{','.join(map(str, gpus))}" if gpus else node  # Slurm's nodes: it picks the GPUs
                    for node, gpus in job.placement) or DASH


def age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def runtime(job: Job, now: float) -> str:
    if job.started_at is None:
        return DASH
    return age((job.finished_at or now) - job.started_at)


def clock_time(when: float, now: float) -> str:
    """14:20 today or within a day, else `Dec 05 14:20`."""
    fmt = "%H:%M" if abs(when - now) < 86400 else "%b %d %H:%M"
    return time.strftime(fmt, time.localtime(when))


def progress_text(job: Job, now: float) -> str:
    """`37% · ETA 14:20` for a running job (`step 1234` without a known total, no ETA until there is a rate)."""
    p = job.progress
    if p is None or job.state is not JobState.RUNNING:
        return DASH
    fraction, eta = p.fraction(), p.eta()
    if fraction is None:
        return f"step {p.step}"
    return f"{fraction:.0%}" + (f" · ETA {clock_time(eta, now)}" if eta is not None else "")


def detail(job: Job) -> list[str]:
    s = job.spec
    lines = [
        f"job {job.id}: {s.name}  [{job.health}]",
        f"  command    : {s.kind} {' '.join(s.command)}",
        f"  shape      : {s.nnodes} node(s) × {s.nproc_per_node} proc(s), {s.gpus_per_node} GPU(s)/node"
        + (f", ≥ {s.min_gpu_mem_gb:g} GB free" if s.min_gpu_mem_gb else "")
        + (f", {s.gpu_mem_gb:g} GB per rank (may share a card{'; enforced' if s.gpu_mem_enforce else ''})"
           if s.gpu_mem_gb is not None else ""),
        f"  priority   : {s.priority}" + (f"   after: {', '.join(map(str, s.after))}" if s.after else ""),
        f"  placement  : {placement_text(job)}" + (f"   rendezvous {job.rendezvous}" if job.rendezvous else ""),
        f"  attempt    : {job.attempt - job.preemptions}" + ("" if s.kind == "service" else f" of {s.max_retries + 1}")
        + (f"   preempted {job.preemptions}× (no retry spent; run {job.attempt}, `ugro logs --attempt N`)"
           if job.preemptions else "")
        + ("   preemptible" if s.preemptible else ""),
        f"  reason     : {job.reason or DASH}",
    ]
    if job.progress is not None and job.state is JobState.RUNNING:
        p = job.progress
        of = f" of {p.total}" if p.total else ""
        rate = f" · {p.rate:.3g} steps/s" if p.rate else ""
        lines.append(f"  progress   : {progress_text(job, time.time())} (step {p.step}{of}{rate})")
    if job.warning:
        lines.append(f"  warning    : {job.warning}")
    if job.diagnosis:
        lines.append(f"  diagnosis  : {job.diagnosis}")
    if job.slurm is not None:
        lines.append(f"  slurm      : job {job.slurm.job_id or '(being submitted)'}"
                     + (f"  partition {job.slurm.partition}" if job.slurm.partition else "")
                     + (f"  {job.slurm.state}" if job.slurm.state else ""))
    if s.sweep_id:
        params = ", ".join(f"{k}={v}" for k, v in s.params)
        rule = f"   early stop: {s.early_stop}" if s.early_stop else ""
        lines.append(f"  sweep      : {s.sweep_id}  {params}{rule}")
    if job.metric:
        top = best(job.metric, s.goal)
        shown = f"best {top[1]:.4g} at step {top[0]}, " if top else ""
        lines.append(f"  {s.metric[:10]:10s} : {shown}last {job.metric[-1][1]:.4g} at step {job.metric[-1][0]}"
                     f" ({len(job.metric)} points)")
    if s.sync_hash:
        moved = ", ".join(f"{n} {f} files/{b} B" for n, f, b in job.sync_sent) or "nothing yet"
        lines.append(f"  code       : {s.sync} as tree {s.sync_hash} (sent: {moved})")
    if s.data:
        lines.append("  data       : " + ", ".join(p + (f" ≥{g:g} GB" if g else "") + (" sha256" if h else "")
                                           for p, g, h in s.data))
    lines += service_lines(job)
    if s.kind == "session":
        from ugro_tui.core.sessions.watch import reason_of

        lines.append(f"  session    : idle stop {s.idle_stop_min:g} min, --hours {s.hours:g}"
                     + (f"; {reason_of(job, time.time())}" if job.state is JobState.RUNNING else "")
                     + (f"; JupyterLab on the node's port {job.session.jupyter_port} (`ugro forward {job.id}`)"
                        if job.session and job.session.jupyter_port else ""))
    for node, run in job.runs:
        code = DASH if run.exit_code is None else run.exit_code
        lines.append(f"  {node:10s} : pid {run.pid or DASH}  exit {code}  {run.run_dir or ''}")
    return lines


def service_lines(job: Job, probes: int = 10) -> list[str]:
    """A service's health, endpoint, restarts and its last probes."""
    s, status = job.spec, job.service
    if s.kind != "service":
        return []
    check = f"GET {s.health}" if s.health else "TCP connect"
    where = f" on {status.endpoint}" if status and status.endpoint else ""
    lines = [f"  service    : {job.health}{where}   restarts {status.restarts if status else 0} of at most "
             f"{s.max_restarts} ({s.restart})",
             f"  probe      : {check} every {s.health_period:g}s, timeout {s.health_timeout:g}s; unhealthy after "
             f"{s.health_failures} failures; {s.health_initial_delay:g}s to get ready"]
    if status is None:
        return lines
    if status.workers:
        lines.append("  workers    : " + ", ".join(f"{n}:{p}" for n, p in status.workers))
    if status.last_error:
        lines.append(f"  last error : {status.last_error}")
    if status.probes:
        lines.append("  probes     :")
        for t, ok, ms, err in status.probes[-probes:]:
            said = f"{ms:.1f} ms" if ms is not None else DASH
            lines.append(f"    {time.strftime('%H:%M:%S', time.localtime(t))}  {'ok  ' if ok else 'FAIL'}  {said:>9s}"
                         + (f"  {err}" if err else ""))
    return lines


def event_lines(happened: list[tuple[float, str]], last: int = 20) -> list[str]:
    """A job's events as the detail shows them (the last `last`)."""
    if not happened:
        return []
    return ["  events     :"] + [f"    {time.strftime('%H:%M:%S', time.localtime(t))}  {text}"
                                for t, text in happened[-last:]]


def node_lines(job: Job, state: ClusterState) -> list[str]:
    """A running job's nodes now: each node's CPU beside the job's GPUs there (a starved GPU shows at a glance)."""
    if not job.state.active or not job.placement:
        return []
    out = ["  nodes now  :"]
    for name, gpus in job.placement:
        node = state.nodes.get(name)
        if node is None:
            continue
        h = node.host
        cpu = (f"CPU {_n(h.cpu_pct)}% ×{h.cores or '?'}  load {_n(h.load1, 1)}  RAM {_n(_gib(h.mem_used_mib), 1)}/"
               f"{_n(_gib(h.mem_total_mib), 0)}G  net ↓{byte_rate(h.net_rx_bps)} ↑{byte_rate(h.net_tx_bps)}"
               if h is not None else "CPU –")
        by_index = {g.index: g for g in node.gpus}
        shown = []
        for index in gpus:
            gpu = by_index.get(index)
            shown.append(f"GPU {index} {_n(gpu.utilization_pct)}%" if gpu is not None else f"GPU {index} –")
        out.append(f"    {name:10s} {cpu}  |  {'  '.join(shown)}  ({node.state})")
    return out


def _n(value: float | None, digits: int = 0) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _gib(mib: int | None) -> float | None:
    return None if mib is None else mib / 1024
