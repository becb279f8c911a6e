"""`ugro demo`: the simulated reference lab over real loopback SSH, then the live view; cleans up on exit."""

from __future__ import annotations

import shutil
import sys
import tempfile
from argparse import Namespace
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ugro_tui import paths
from ugro_tui.config import Cluster, parse_cluster


@contextmanager
def demo_cluster(poll_interval: float = 1.0) -> Iterator[tuple[Cluster, Path]]:
    """Start 3 sshd nodes on 127.0.0.2-4 with the reference lab's simulated GPUs; yields (cluster, config path)."""
    import tomllib

    from ugro_tui.core.sim.loopback import REFERENCE_LAB, LoopbackCluster

    base = paths.runtime_dir()
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="demo-", dir=base))
    lab = LoopbackCluster(root)
    try:
        lab.start()
        text = lab.cluster_toml(names=[n for n, _, _ in REFERENCE_LAB],
                                sim=[([model], "nvml") for _, model, _ in REFERENCE_LAB],
                                poll_interval=poll_interval)
        text = text.replace('name = "loopback"', 'name = "demo-lab"')
        config = root / "cluster.toml"
        config.write_text(text)
        yield parse_cluster(tomllib.loads(text), str(config)), config
    finally:
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)


def run(args: Namespace) -> int:
    from ugro_tui.commands import status

    print("ugro demo: starting gpu-master, gpu1 and gpu2 as SSH servers on 127.0.0.2-4 (simulated GPUs)…",
          flush=True)
    with demo_cluster() as (cluster, config):
        print(f"ugro demo: config at {config}; press Ctrl+C to stop", flush=True)
        if not args.plain and sys.stdout.isatty():
            from ugro_tui.ui.app import make_app

            app = make_app(cluster)
            if args.duration is not None:
                app.call_later(lambda: app.set_timer(args.duration, app.exit))
            app.run()
            print("ugro demo: stopped, and every node process cleaned up.")
            return 0
        args.watch, args.json = True, False
        args.count = None if args.duration is None else max(1, int(args.duration / cluster.poll_interval))
        with suppress(KeyboardInterrupt):
            status.run(args, cluster)
    print("ugro demo: stopped, and every node process cleaned up.")
    return 0
