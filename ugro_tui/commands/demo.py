"""`ugro demo`: the simulated reference lab over real loopback SSH, then the live view; cleans up on exit."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sys
import tempfile
from argparse import Namespace
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ugro_tui import paths
from ugro_tui.config import Cluster, parse_cluster
from ugro_tui.errors import UgroError


@contextmanager
def demo_cluster(poll_interval: float = 1.0) -> Iterator[tuple[Cluster, Path]]:
    """Start 3 sshd nodes on 127.0.0.2-4 with the reference lab's simulated GPUs; yields (cluster, config path)."""
    import tomllib

    from ugro_tui.sim.loopback import REFERENCE_LAB, LoopbackCluster

    base = paths.runtime_dir()
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="demo-", dir=base))
    lab = LoopbackCluster(root)

    def hung_up(signum: int, _frame: object) -> None:
        """The terminal went away (or a kill): clean up as on Ctrl+C, then go; nothing of the demo stays."""
        from ugro_tui.commands.daemon import stop

        with suppress(UgroError):
            stop(timeout=10, quiet=True)
        _stop_demo_jobs(root)
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)
        os._exit(128 + signum)

    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, hung_up)
    try:
        lab.start()
        text = lab.cluster_toml(names=[n for n, _, _ in REFERENCE_LAB],
                                sim=[([model], "nvml") for _, model, _ in REFERENCE_LAB],
                                poll_interval=poll_interval)
        text = text.replace('name = "loopback"', 'name = "demo-lab"')
        # Each node its own code store (they are one machine): `--sync` then copies to each, as on a real lab.
        text = "\n".join(line + (f'\ncode_dir = "{root / "code" / line.split(chr(34))[1].rsplit("/", 1)[-1]}"'
                                 if line.startswith("workdir = ") else "") for line in text.splitlines())
        text += (f'\n[alerts]\nnotify_command = "{sys.executable} -m ugro_tui.sim.notify_log '
                 f'{root / "notifications.log"}"\n')
        config = root / "cluster.toml"
        config.write_text(text)
        yield parse_cluster(tomllib.loads(text), str(config)), config
    finally:
        _stop_demo_jobs(root)
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)


def _stop_demo_jobs(root: Path) -> None:
    """Jobs run detached (they outlive sshd on purpose); the demo's own must not outlive the demo.

    TERM to each job's process group first (torchrun passes it on to its workers, which run in sessions of
    their own), then KILL whatever still runs in the demo's folders."""
    import os
    import signal
    import time

    def ours() -> list[int]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with suppress(OSError):
                if os.readlink(f"/proc/{pid}/cwd").startswith(str(root)) or \
                        str(root).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(int(pid))
        return [p for p in found if p != os.getpid()]

    for pid in ours():
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3
    while ours() and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in ours():
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def submit_demo_job(cluster: Cluster) -> str:
    """Queue serve-tiny as a service on the last node (from its shipped template) and a train_tiny run on the
    others, so the Jobs and Logs views have something real to show."""
    import importlib.util

    from ugro_tui import data
    from ugro_tui.core.jobs.model import JobSpec
    from ugro_tui.core.jobs.store import JobStore

    script = data.train_tiny()
    if importlib.util.find_spec("torch") is None or not script.exists():
        return "no demo job: install the demo extra (pip install -e '.[demo]') to watch a torchrun job"
    service = demo_service(cluster)
    trainers = tuple(n.name for n in cluster.nodes[:-1])
    [serving, job] = JobStore().submit([service, JobSpec(
        "train-tiny-demo", (str(script), "--steps", "400", "--sleep", "0.25"), nnodes=len(trainers), nodes=trainers,
        checkpoint_dir="checkpoints/train-tiny-demo", keep_last=2, max_retries=1)])
    return (f"queued job {serving.id}: serve-tiny as a service on {service.nodes[0]} (press 2; f on it forwards "
            f"its port here), and job {job.id}: a {len(trainers)}-node torchrun of examples/train_tiny.py (then l)")


def demo_service(cluster: Cluster):
    """The shipped serve-tiny template, run from the installed package's copy of the script."""
    from ugro_tui import data
    from ugro_tui.core.jobs.request import Request, spec_from_request

    spec, _ = spec_from_request(Request(template="serve-tiny", nodes=cluster.nodes[-1].name), cluster)
    command = tuple(str(data.serve_tiny()) if w == "examples/serve_tiny.py" else w for w in spec.command)
    return dataclasses.replace(spec, command=command)


def start_stray_notebook(cluster: Cluster, root: Path) -> None:
    """Once the demo job runs, someone's forgotten notebook shows up on gpu2's GPU (for 2 minutes): `K` in the Nodes
    view can terminate it, while the job's own rank there is refused."""
    import subprocess
    import threading
    import time

    from ugro_tui.core.jobs.store import JobStore

    node = cluster.nodes[-1].name

    def wait_then_start() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and root.exists():
            if any(str(j.state) == "running" for j in JobStore().active()):
                env = {**os.environ, "UGRO_NODE": node, "CUDA_VISIBLE_DEVICES": "0", "UGRO_SIM_MEM_MIB": "900"}
                notebook = subprocess.Popen(["bash", "-c", 'exec -a "jupyter-lab --no-browser" sleep 120'], cwd=root,
                                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True)
                notebook.wait()  # reaped here, so a terminated notebook leaves no zombie on the GPU's list
                return
            time.sleep(1)

    threading.Thread(target=wait_then_start, daemon=True, name="demo-notebook").start()


def notifications(root: Path) -> str:
    try:
        lines = (root / "notifications.log").read_text().splitlines()
    except OSError:
        return "ugro demo: the notify command ran 0 times (no job started or ended)"
    return f"ugro demo: the notify command ran {len(lines)} time(s), once per event:\n" + "\n".join(
        f"  {line}" for line in lines)


def run(args: Namespace) -> int:
    from ugro_tui.commands import status

    print("ugro demo: starting gpu-master, gpu1 and gpu2 as SSH servers on 127.0.0.2-4 (simulated GPUs)…",
          flush=True)
    with demo_cluster() as (cluster, config):
        print(f"ugro demo: config at {config}; press Ctrl+C to stop", flush=True)
        os.environ["XDG_STATE_HOME"] = str(config.parent / "state")  # the demo's queue is its own
        from ugro_tui.commands.daemon import stop
        from ugro_tui.core.daemon.client import spawn, wait_until_up

        daemon = wait_until_up(spawn(config))  # the demo's own, on its own state; it goes with the lab
        try:
            if not args.plain and sys.stdout.isatty():
                from ugro_tui.ui.app import make_app

                print(f"ugro demo: {submit_demo_job(cluster)}", flush=True)
                start_stray_notebook(cluster, config.parent)
                app = make_app(cluster, daemon=daemon)
                if args.duration is not None:
                    app.call_later(lambda: app.set_timer(args.duration, app.exit))
                app.run()
                stop(quiet=True)
                print(notifications(config.parent))
                print("ugro demo: stopped, and every node process cleaned up.")
                return 0
            args.watch, args.json = True, False
            args.count = None if args.duration is None else max(1, int(args.duration / cluster.poll_interval))
            with suppress(KeyboardInterrupt):
                status.run(args, cluster)
        finally:
            stop(quiet=True)
    print("ugro demo: stopped, and every node process cleaned up.")
    return 0
