"""Code sync against rsync: a tree of 2,000 files / 50 MB to 3 nodes, cold, warm (nothing changed) and after
one edit, side by side in one run. Both go over OpenSSH's sshd on 127.0.6.2-4, to all three nodes at once, and both
are timed as a user runs them: `ugro sync DIR` (a new process: start-up, scan, connect, copy) against `rsync -a`
over `ssh` (a new process per node). Goals: warm <= 1.2x rsync's warm; cold <= 1.5x rsync's cold.
(The edit case has no goal in the issue; it is shown beside the others.)
Usage: python bench/sync.py [--rounds N]. Only 127.0.0.0/8 is used.
"""

from __future__ import annotations

import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ugro_tui.sim.loopback import LoopbackCluster

HOSTS = ["127.0.6.2", "127.0.6.3", "127.0.6.4"]


def make_tree(root: Path, rng: random.Random) -> None:
    """1,990 source-sized files in 40 folders and 10 larger ones: 2,000 files, about 50 MB."""
    for i in range(1990):
        folder = root / f"pkg{i % 40:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"mod{i:04d}.py").write_bytes(rng.randbytes(4000 + i % 2000))
    for i in range(10):
        (root / f"weights{i}.bin").write_bytes(rng.randbytes(4_000_000))


def timed(argvs: list[list[str]]) -> float:
    """Run the commands at once (one per node, or one for all); seconds until the last ends."""
    t = time.perf_counter()
    procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for a in argvs]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(argvs[0][:3])}...: {err.decode()[-400:]}")
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="ugro-bench-sync-") as tmp:
        base = Path(tmp)
        lab = LoopbackCluster(base / "lab", hosts=HOSTS, use_openssh=True).start()
        os.environ["XDG_STATE_HOME"] = str(base / "state")
        try:
            src = base / "src"
            make_tree(src, rng)
            config = base / "cluster.toml"
            lines = []
            for line in lab.cluster_toml().splitlines():
                lines.append(line)
                if line.startswith("workdir = "):
                    work = Path(line.split('"')[1])
                    lines.append(f'code_dir = "{work.parent.parent / "code" / work.name}"')
            config.write_text("\n".join(lines).replace("[cluster]\n", "[cluster]\nsync_limit_mb = 500\n") + "\n")
            ugro = [sys.executable, "-m", "ugro_tui", "sync", str(src), "--config", str(config)]

            def rsync(node) -> list[str]:
                ssh = (f"ssh -p {node.port} -i {lab.client_key_path} -o UserKnownHostsFile={lab.known_hosts_path} "
                       "-o StrictHostKeyChecking=yes -o BatchMode=yes")
                return ["rsync", "-a", "-e", ssh, f"{src}/", f"{node.host}:{node.folder / 'rsync-copy'}/"]

            def fresh_targets() -> None:
                for node in lab.nodes:
                    shutil.rmtree(node.folder / "rsync-copy", ignore_errors=True)
                shutil.rmtree(base / "lab" / "code", ignore_errors=True)
                shutil.rmtree(base / "state", ignore_errors=True)  # ugro's kept copy and hash cache too

            rows: dict[str, list[float]] = {k: [] for k in ("ugro cold", "rsync cold", "ugro warm", "rsync warm",
                                                            "ugro edit", "rsync edit")}
            for r in range(args.rounds):
                fresh_targets()
                rows["ugro cold"].append(timed([ugro]))
                rows["rsync cold"].append(timed([rsync(n) for n in lab.nodes]))
                rows["ugro warm"].append(timed([ugro]))
                rows["rsync warm"].append(timed([rsync(n) for n in lab.nodes]))
                edited = src / "pkg07" / "mod0007.py"
                edited.write_bytes(edited.read_bytes() + f"# edit {r}\n".encode())
                rows["ugro edit"].append(timed([ugro]))
                rows["rsync edit"].append(timed([rsync(n) for n in lab.nodes]))
        finally:
            lab.stop()
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"sync benchmark: 2,000 files / 50 MB to 3 nodes at once, median of {args.rounds} rounds")
    for kind, goal in (("cold", "(goal <= 1.5x)"), ("warm", "(goal <= 1.2x)"), ("edit", "(no goal set)")):
        ratio = med[f"ugro {kind}"] / med[f"rsync {kind}"]
        print(f"  {kind:4s}: ugro {med[f'ugro {kind}']:6.2f} s   rsync -a {med[f'rsync {kind}']:6.2f} s   "
              f"ratio {ratio:5.2f}x   {goal}")


if __name__ == "__main__":
    main()
