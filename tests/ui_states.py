"""Deterministic cluster states for the snapshot and pilot tests (no network, a fixed clock)."""

from __future__ import annotations

from ugro_tui.config import Cluster
from ugro_tui.core.telemetry.model import ClusterState, GpuProcess, NodeState

from .conftest import cluster_from

NOW = 1_800_000_000.0
LAB = cluster_from("""
[cluster]
name = "home-lab"
[[nodes]]
name = "gpu-master"
host = "127.0.0.2"
user = "ugro"
labels = ["master"]
[[nodes]]
name = "gpu1"
host = "127.0.0.3"
user = "ob"
labels = ["worker"]
[[nodes]]
name = "gpu2"
host = "127.0.0.4"
user = "ollie"
labels = ["worker"]
""")


def gpu(index: int, name: str, util, used, total, temp, power, limit, fan=30, procs=()) -> dict:
    return {"index": index, "uuid": f"GPU-{index}", "name": name, "utilization_pct": util,
            "memory_used_mib": used, "memory_total_mib": total, "temperature_c": temp, "power_w": power,
            "power_limit_w": limit, "fan_pct": fan,
            "processes": [{"pid": pid, "user": user, "command": cmd, "used_mib": mib} for pid, user, cmd, mib in procs]}


def online(cluster: Cluster = LAB) -> ClusterState:
    state = ClusterState([(n.name, n.address) for n in cluster.nodes], history=60)
    samples = {
        "gpu-master": [gpu(0, "NVIDIA GeForce RTX 5070 Ti", 97, 10900, 12227, 84, 291.0, 300.0, 88,
                           procs=[(4242, "ugro", "python train.py --lr 3e-4", 10500)])],
        "gpu1": [gpu(0, "NVIDIA GeForce RTX 4070", 63, 5200, 8188, 66, 150.5, 200.0, 55,
                     procs=[(5151, "ob", "torchrun --nproc-per-node 1 train.py", 4900)])],
        "gpu2": [gpu(0, "NVIDIA GeForce RTX 3070 Ti", 1, 310, 8192, 35, 21.0, 290.0, 0)],
    }
    for name, node in state.nodes.items():
        for t in range(40):  # history for the sparklines
            wave = [dict(g, utilization_pct=(g["utilization_pct"] or 0) * ((t % 10) / 10)) for g in samples[name]]
            node.apply_sample({"t": NOW - 40 + t, "gpus": wave}, NOW - 40 + t)
        node.apply_sample({"t": NOW - 1, "source": "nvml", "gpus": samples[name]}, NOW - 1)
    return state


HOSTS = {  # a data loader starving gpu-master's GPU; gpu1 in a container with a 16 GB limit; gpu2 loopback-only
    "gpu-master": {"cpu_pct": 97.5, "cores": 16, "load1": 15.8, "load5": 14.9, "load15": 12.0, "mem_used_mib": 22700,
                   "mem_total_mib": 31900, "swap_used_mib": 512, "disk_free_gib": 412.5, "net_rx_bps": 118e6,
                   "net_tx_bps": 2.4e6, "uptime_s": 864000},
    "gpu1": {"cpu_pct": 41.0, "cores": 8, "load1": 3.3, "load5": 3.0, "load15": 2.8, "mem_used_mib": 9300,
             "mem_total_mib": 16384, "swap_used_mib": 0, "disk_free_gib": 88.0, "net_rx_bps": 950.0,
             "net_tx_bps": 31e3, "uptime_s": 3600, "mem_limited": True},
    "gpu2": {"cpu_pct": 2.0, "cores": 12, "load1": 0.1, "load5": 0.2, "load15": 0.2, "mem_used_mib": 2100,
             "mem_total_mib": 15900, "swap_used_mib": None, "disk_free_gib": 3.1, "net_rx_bps": 0.0,
             "net_tx_bps": 0.0, "uptime_s": 120, "net_loopback_only": True},
}


def with_host(state: ClusterState) -> ClusterState:
    """The same nodes with host metrics and a CPU history, as an agent with host metrics sends them."""
    from collections import deque

    from ugro_tui.core.telemetry.model import HostSample

    for name, node in state.nodes.items():
        raw = HOSTS[name]
        node.host = HostSample.from_agent(raw)
        node.cpu_history = deque(((raw["cpu_pct"] or 0) * ((t % 8) / 8) for t in range(40)), maxlen=60)
    return state


def with_state(kind: str) -> ClusterState:
    state = online()
    if kind == "host":
        return with_host(state)
    node = state.nodes["gpu1"]
    if kind == "offline":
        node.state, node.error, node.next_retry_at = NodeState.OFFLINE, "connection refused on port 22", NOW + 8
    elif kind == "stale":
        node.state, node.received_at = NodeState.STALE, NOW - 5
    elif kind == "auth-failed":
        node.state, node.error = NodeState.AUTH_FAILED, "authentication failed for ob (no accepted key)"
        node.gpus = ()
    elif kind == "no-driver":
        node.apply_sample({"t": NOW - 1, "source": "none", "gpus": [],
                           "error": "no GPU driver (NVML: Driver Not Loaded; nvidia-smi: not found)"}, NOW - 1)
    elif kind == "missing-values":
        node.apply_sample({"t": NOW - 1, "source": "nvidia-smi", "gpus": [
            gpu(0, "NVIDIA H100 80GB HBM3", None, 59, 81559, None, None, 700.0, fan=None)]}, NOW - 1)
    return state


def job_store(root, count: int = 8):
    """A store with jobs in every state, at fixed times, for the Jobs view."""
    from ugro_tui.core.jobs.model import JobSpec, JobState
    from ugro_tui.core.jobs.store import JobStore

    store = JobStore(root)
    specs = [JobSpec(f"sweep-lr{i}", ("examples/train_tiny.py", "--lr", f"{i}e-4"), nnodes=1 + i % 3,
                     nproc_per_node=1, gpus_per_node=1, priority=i % 4) for i in range(count)]
    jobs = store.submit(specs, now=NOW - 3600)
    S = JobState
    plan = {0: S.SUCCEEDED, 1: S.FAILED, 2: S.RUNNING, 3: S.HELD, 4: S.CANCELLED, 5: S.RUNNING}
    for i, job in enumerate(jobs[:6]):
        target = plan[i]
        if target is S.HELD:
            store.move(job.id, S.HELD, reason="held by the user")
            continue
        if target is S.CANCELLED:
            store.move(job.id, S.CANCELLED, reason="cancelled by the user", finished_at=NOW - 100)
            continue
        placement = (("gpu-master", (0,)), ("gpu1", (0,)), ("gpu2", (0,)))[: job.spec.nnodes]
        store.move(job.id, S.STARTING, placement=placement, started_at=NOW - 1800)
        store.move(job.id, S.RUNNING, reason="running")
        if target is S.SUCCEEDED:
            store.move(job.id, S.SUCCEEDED, reason="every node exited 0", finished_at=NOW - 600)
        elif target is S.FAILED:
            store.move(job.id, S.FAILED, reason="gpu1 exited 1", finished_at=NOW - 900)
    waiting = {6: "needs 1 node with 1 free GPU ≥ 8 GB; 0 such nodes free now; starts ≈ 08:21 (estimate)",
               7: "waits for job 2 to succeed"}
    import dataclasses

    from ugro_tui.core.jobs.progress import Progress

    if count > 5:  # job 6 reports its steps over a known total: 37% done, 630 steps to go at 0.5 a second
        store.update(6, lambda j: dataclasses.replace(j, progress=Progress(370, 1000, 0.5, NOW - 30)))

    store.update_active({jid + 1: (lambda j, r=r: dataclasses.replace(j, reason=r))
                         for jid, r in waiting.items() if jid < count})
    return store


def job_with_logs(root):
    """A finished 2-node, 4-rank job whose logs are already copied locally (no node is asked)."""
    import dataclasses
    import json

    from ugro_tui.core.jobs.logs import local_copy, rank_copy
    from ugro_tui.core.jobs.model import JobSpec, JobState, NodeRun
    from ugro_tui.core.jobs.store import JobStore

    store = JobStore(root)
    [job] = store.submit([JobSpec("tiny", ("examples/train_tiny.py", "--steps", "40"), nnodes=2, nproc_per_node=2,
                                  gpus_per_node=2)], now=NOW - 120)
    placement = (("gpu-master", (0, 1)), ("gpu1", (0, 1)))
    store.move(job.id, JobState.STARTING, placement=placement, started_at=NOW - 100)
    runs = tuple((n, NodeRun(pid=100 + i, run_dir=f"/nonexistent/{n}", exit_code=0))
                 for i, (n, _) in enumerate(placement))
    job = store.update(job.id, lambda j: dataclasses.replace(j, runs=runs))
    job = store.move(job.id, JobState.RUNNING)
    for i, (node, _) in enumerate(placement):  # laid out as sync_node leaves them: console, rank files, rank map
        console = ["INFO:torch.distributed.run:Using nproc_per_node=2."]
        for local in range(2):
            rank = i * 2 + local
            lines = [f"step {step} loss {8.0 * 0.9 ** step + 0.01 * rank:.5f}" for step in range(40)]
            console += [f"[rank{rank}.{local}]:{line}" for line in lines]
            out = rank_copy(job, node, local, "stdout")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(lines) + "\n")
            rank_copy(job, node, local, "stderr").write_text("")
        path = local_copy(job, node)
        path.write_text("\n".join(console) + "\n")
        (path.parent / node / "ranks.json").write_text(json.dumps(
            {"scanned": path.stat().st_size, "ranks": {"0": i * 2, "1": i * 2 + 1}}))
    store.move(job.id, JobState.SUCCEEDED, reason="every node exited 0", finished_at=NOW - 20)
    return store, job.id


def doctor_report():
    """A doctor run on the reference lab: gpu2 has another torch and no torchrun on its PATH; gpu1's clock drifts."""
    from ugro_tui.core.doctor.checks import CLUSTER, Check, Report, Status

    S = Status
    checks = []
    for node, torch, run, clock in (("gpu-master", "2.13.0+cu128", (S.OK, "/opt/torch/bin/torchrun"),
                                     (S.OK, "the master (reference)")),
                                    ("gpu1", "2.13.0+cu128", (S.OK, "/home/ob/env/bin/torchrun"),
                                     (S.WARN, "+2300 ms against gpu-master (±4 ms)")),
                                    ("gpu2", "2.4.1+cu121",
                                     (S.WARN, "not on PATH; found at /home/ollie/env/bin/torchrun"),
                                     (S.OK, "+12 ms against gpu-master (±5 ms)"))):
        checks += [
            Check(node, "ssh", S.OK, "connected in 41 ms, round trip 3 ms"),
            Check(node, "host key", S.OK, "matches known_hosts"),
            Check(node, "python", S.OK, "3.11.9 /opt/torch/bin/python"),
            Check(node, "torch", S.OK, torch),
            Check(node, "cuda", S.OK, "CUDA 12.8, torch sees 1 GPU(s)"),
            Check(node, "nccl", S.OK, "2.27.3" if node != "gpu2" else "2.20.5"),
            Check(node, "torchrun", run[0], run[1], "" if run[0] is S.OK else "add the env's bin folder to PATH"),
            Check(node, "driver", S.OK, "570.86.15 (nvml), 1 GPU(s)"),
            Check(node, "disk", S.OK, "812 GiB free in ~/ugro"),
            Check(node, "clock", clock[0], clock[1], "" if clock[0] is S.OK else "run NTP on every node"),
            Check(node, "interface", S.OK, "exists"),
            Check(node, "rendezvous", S.OK, "127.0.0.2:29500 reached in 1 ms"),
        ]
    checks += [
        Check(CLUSTER, "torch versions", S.FAIL, "2.13.0+cu128 on gpu-master, gpu1; 2.4.1+cu121 on gpu2",
              "install the same torch everywhere: a multi-node run needs matching versions"),
        Check(CLUSTER, "NCCL versions", S.FAIL, "2.27.3 on gpu-master, gpu1; 2.20.5 on gpu2",
              "install the same NCCL everywhere: a multi-node run needs matching versions"),
        Check(CLUSTER, "gpu counts", S.OK, "1 on every node"),
        Check(CLUSTER, "hostnames", S.OK, "3 names resolve the same on every node"),
    ]
    return Report(checks=checks, master="gpu-master")


def press_then(keys, then=None):
    async def run(pilot) -> None:
        await pilot.press(*keys)
        if then is not None:
            await then(pilot)
        still_cursors(pilot)
        await pilot.pause()

    return run


def still_cursors(pilot) -> None:
    """A blinking cursor is caught on or off at random: keep it on so the snapshot is the same every time."""
    from textual.widgets import Input

    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False


async def wait_for(pilot, condition, timeout: float = 10.0, what: str = "the condition") -> None:
    """Pause the pilot until `condition()` holds (never a fixed sleep: a busy machine needs longer)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


def showing(app, screen_type: type) -> bool:
    """The app's top screen is a `screen_type` whose widgets are composed and mounted (pushed is not enough)."""
    return isinstance(app.screen, screen_type) and app.screen.is_mounted


def logs_shown(app) -> bool:
    """The Logs view has read its job to the end and every pane shows all its buffered lines."""
    from ugro_tui.ui.screens.logs import LogsScreen, Pane

    screen = app.screen
    if not isinstance(screen, LogsScreen) or screen.job is None or screen._pending:
        return False
    if any(w.group == "logs" and w.is_running for w in screen.workers):
        return False
    panes = list(screen.query(Pane))
    if screen.demux.losses and screen._losses_shown != len(screen.demux.losses):
        return False  # the loss plot is drawn on its own timer
    return bool(panes) and all(p.output.line_count == len(screen._buffer(p.key)) > 0 for p in panes) and all(
        p.output.scroll_y >= p.output.max_scroll_y for p in panes)  # settled: every pane at its bottom


def sweep_store(root):
    """A sweep of 8 trials with median stopping: finished, pruned, running and queued ones, at fixed times."""
    import dataclasses
    import math

    from ugro_tui.core.jobs.model import JobSpec, JobState
    from ugro_tui.core.jobs.store import JobStore
    from ugro_tui.core.jobs.sweep import expand, parse_search

    store = JobStore(root)
    spec = JobSpec("lr-search", ("train.py", "--lr", "{lr}"), early_stop="median", min_trials=2, max_concurrent=2)
    jobs = store.submit(expand(spec, parse_search(["lr=loguniform:1e-5:1e-1"], trials=8, seed=3), "3fa2c1"),
                        now=NOW - 3600)
    S = JobState
    plan = [(S.SUCCEEDED, 40), (S.SUCCEEDED, 40), (S.SUCCEEDED, 40), (S.SUCCEEDED, 40), (S.PRUNED, 12),
            (S.PRUNED, 8), (S.RUNNING, 25), (S.QUEUED, 0)]
    for job, (state, steps) in zip(jobs, plan, strict=True):
        if state is S.QUEUED:
            store.update(job.id, lambda j: dataclasses.replace(
                j, reason="waits: 2 trials of its sweep already running"))
            continue
        base = (math.log10(float(dict(job.spec.params)["lr"])) + 3) ** 2
        metric = tuple((s, round(base + 2.0 / (s + 1), 5), NOW - 3000 + job.id * 100 + s) for s in range(steps))
        store.move(job.id, S.STARTING, placement=(("gpu-master", (0,)),), started_at=NOW - 3000 + job.id * 100)
        store.move(job.id, S.RUNNING, reason="running")
        store.update(job.id, lambda j, m=metric: dataclasses.replace(j, metric=m))
        if state is S.SUCCEEDED:
            store.move(job.id, S.SUCCEEDED, reason="every node exited 0", finished_at=NOW - 2900 + job.id * 100)
        elif state is S.PRUNED:
            store.move(job.id, S.PRUNED, finished_at=NOW - 2900 + job.id * 100,
                       reason=f"pruned (median) at step {steps - 1}: loss 3.1 worse than the median 0.31 of 4 "
                              "other trials")
    return store


def service_store(root):
    """Services in each of their states, at fixed times: ready after a restart (with its probes), starting,
    unhealthy, waiting to restart, and one that gave up; a training job beside them."""
    import dataclasses

    from ugro_tui.core.jobs.model import JobSpec, JobState
    from ugro_tui.core.jobs.store import JobStore
    from ugro_tui.core.services.status import ServiceStatus

    S = JobState
    store = JobStore(root)
    tiny = ("{python}", "examples/serve_tiny.py", "--port", "{port}")
    specs = [JobSpec("serve-tiny", tiny, kind="service", health="/health", health_period=5.0),
             JobSpec("vllm-qwen", ("vllm", "serve", "Qwen/Qwen2.5-1.5B-Instruct", "--port", "{port}"), kind="service",
                     health="/health"),
             JobSpec("llama-rpc", ("llama-server", "--rpc", "{workers}", "--port", "{port}"), kind="service",
                     nnodes=2, worker_command=("rpc-server", "--host", "{host}", "--port", "{port}"), health="/health"),
             JobSpec("echo-api", ("python3", "-m", "http.server", "{port}"), kind="service"),
             JobSpec("broken-api", ("./api", "--port", "{port}"), kind="service", health="/healthz", max_restarts=2),
             JobSpec("train-tiny", ("examples/train_tiny.py",), nnodes=1)]
    store.submit(specs, now=NOW - 3600)
    probes = tuple((NOW - 50 + 5 * i, i not in (2, 3, 4), None if i in (2, 3) else 1.2 + i / 10,
                    "" if i not in (2, 3, 4) else ("gpu-master cannot reach 127.0.0.1:8000: Connection refused"
                                                   if i in (2, 3) else "GET /health: HTTP 503 Service Unavailable"))
                   for i in range(10))
    statuses = {
        1: ServiceStatus("ready", 8000, "gpu-master:8000", restarts=1, probes=probes, since=NOW - 20,
                         ready_at=NOW - 20, last_error="GET /health: HTTP 503 Service Unavailable"),
        2: ServiceStatus("starting", 8001, "gpu1:8001", probes=((NOW - 4, False, 0.9, "GET /health: HTTP 503 "
                                                                 "Service Unavailable"),), since=NOW - 120,
                         last_error="GET /health: HTTP 503 Service Unavailable"),
        3: ServiceStatus("unhealthy", 8002, "gpu2:8002", workers=(("gpu1", 8003),), failures=3,
                         probes=((NOW - 2, False, None, "no answer within 5s"),), since=NOW - 10,
                         last_error="no answer within 5s"),
    }
    placements = {1: (("gpu-master", (0,)),), 2: (("gpu1", (0,)),), 3: (("gpu2", (0,)), ("gpu1", (1,))),
                  6: (("gpu1", (1,)),)}
    reasons = {1: "ready on gpu-master:8000 (probe 2 ms, 1 restart)",
               2: "starting: waiting for GET /health to answer (last: GET /health: HTTP 503 Service Unavailable)",
               3: "unhealthy: 3 failed probe(s) in a row: no answer within 5s", 6: "running"}
    for job_id, placement in placements.items():
        store.move(job_id, S.STARTING, placement=placement, started_at=NOW - 1800)
        store.move(job_id, S.RUNNING, reason=reasons[job_id])
    store.update_active({jid: (lambda j, s=s: dataclasses.replace(j, service=s)) for jid, s in statuses.items()})
    store.update_active({4: lambda j: dataclasses.replace(j, reason="restarting in 4s (restart 3 of 5): gpu1 exited "
                                                             "137", service=ServiceStatus(
        "restarting", 8004, "gpu1:8004", restarts=3, since=NOW - 1, next_start=NOW + 4))})
    store.move(5, S.STARTING, placement=(("gpu2", (0,)),), started_at=NOW - 900)
    store.move(5, S.RUNNING, reason="starting")
    store.move(5, S.FAILED, reason="gave up after 2 restart(s): gpu2 exited 1", finished_at=NOW - 300,
               diagnosis="ModuleNotFoundError: No module named 'fastapi'",
               service=ServiceStatus("starting", 8005, "gpu2:8005", restarts=2, since=NOW - 300))
    return store


def ledger_book() -> None:
    """A week of the lab's use in the ledger (in this test's state dir): jobs 1 and 3 on the master's GPU and gpu1's,
    idle GPUs, and a notebook of ollie's on gpu2; power sampled every 20 s for an hour a day."""
    from ugro_tui.core.ledger.book import Book
    from ugro_tui.core.telemetry.model import GpuSample

    book = Book()
    for day in range(7):
        start = NOW - (6 - day) * 86400 - 3600
        holders = {("gpu-master", 0): 1 if day < 4 else 3, ("gpu1", 0): 1 if day < 4 else None}
        for step in range(181):
            at = start + step * 20
            for node, watts in (("gpu-master", 250.0 + 10 * day), ("gpu1", 180.0), ("gpu2", 25.0 + 40 * (day % 3))):
                procs = () if node != "gpu2" or day % 3 == 0 else (GpuProcess(77, "ollie", "jupyter-lab", 900),)
                sample = GpuSample(0, f"GPU-{node}", "RTX", 90.0 if holders.get((node, 0)) else 5.0, 4000, 12000,
                                   60.0, watts if holders.get((node, 0)) or node == "gpu2" else 18.0, 300.0, 30.0,
                                   procs)
                book.observe(node, at, [sample], lambda n, g, h=holders: h.get((n, g)),
                             {"gpu-master": "ugro", "gpu1": "ob", "gpu2": "ollie"}[node])
    book.ended(1, NOW - 2 * 86400)
    book.save()
