"""An elastic torchrun job (`--nnodes 2:3`, gloo on the CPU) on a loopback lab of its own: one node dies (its
sshd and its processes killed, as a machine that goes away), and the job goes on with the two left from its
newest checkpoint, staying `running` while its loss keeps falling; when the node comes back, the job grows onto
it again. A node yielded under it is given up alone, and taken again once given back. Bad node counts are one
line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ..helpers import job, logs, needs_torch, ugro, wait
from .conftest import kill_job_processes, scheduler, write_config

pytestmark = pytest.mark.timeout(420)
TINY = str(Path(__file__).resolve().parents[2] / "examples" / "train_tiny.py")


def losses(config: Path, job_id: int) -> list[tuple[int, float]]:
    """(step, loss) as node0's rank printed them (node0 hosts the rendezvous: it is never the one lost)."""
    text = logs(config, job_id, node="node0")
    return [(int(s), float(v)) for s, v in re.findall(r"step (\d+) loss ([\d.]+)", text)]


def log(config: Path, job_id: int) -> str:
    return logs(config, job_id, node="node0")


def test_an_elastic_job_goes_on_without_a_lost_node_and_grows_back(lab3, tmp_path: Path) -> None:
    needs_torch()
    config = write_config(lab3, tmp_path / "cluster.toml")
    sched = scheduler(config)
    try:
        done = ugro(config, "submit", "--nnodes", "2:3", "--name", "elastic", "--checkpoint-dir",
                    str(tmp_path / "ckpt"), "--", TINY, "--steps", "100000", "--sleep", "0.1", "--save-every", "5")
        assert done.returncode == 0, done.stderr
        jid = int(done.stdout.split()[-1])
        j = job(config, jid)
        assert (j["spec"]["nnodes_min"], j["spec"]["nnodes"]) == (2, 3)
        wait(lambda: job(config, jid)["state"] == "running" and len(job(config, jid)["placement"]) == 3, 120,
             "the job on 3 nodes")
        wait(lambda: len(losses(config, jid)) >= 15, 180, "training on 3 nodes")
        lab3.kill_node(2)  # the machine goes away: its sshd and everything of the job there
        kill_job_processes(jid, "node2")
        wait(lambda: len(job(config, jid)["placement"]) == 2, 90, "the job going on with 2 nodes")
        j = job(config, jid)
        assert j["state"] == "running" and "node node2 lost" in j["reason"], j
        assert j["elastic"] == {"nnodes_min": 2, "nnodes_max": 3, "nodes": 2}, j
        wait(lambda: "with 2 ranks" in log(config, jid), 120, "the group re-formed with 2 ranks")
        at_loss = len(losses(config, jid))
        wait(lambda: len(losses(config, jid)) >= at_loss + 10, 120, "training on with 2 nodes")
        assert job(config, jid)["state"] == "running"
        shown = ugro(config, "show", str(jid)).stdout
        assert "goes on with 2 of 3 nodes (node0, node1), WORLD_SIZE 2" in shown, shown
        lab3.restart_node(2)
        wait(lambda: len(job(config, jid)["placement"]) == 3, 120, "the job growing back onto node2")
        wait(lambda: "with 3 ranks" in log(config, jid).rsplit("with 2 ranks", 1)[-1], 120,
             "the group re-formed with 3 ranks")
        trained = losses(config, jid)
        assert job(config, jid)["state"] == "running"
        first = [v for s, v in trained if s < 5]
        last = [v for s, v in trained[-5:]]
        assert max(last) < min(first), (first, last)  # the loss kept falling through both changes
        assert "grew onto node2" in ugro(config, "show", str(jid)).stdout
        # Yielded, node1 is given up alone: its agent gets TERM (the workers save), the others re-form without it.
        said = ugro(config, "yield", "node1", "--force", "--to", "ollie")
        assert said.returncode == 0, said.stderr
        wait(lambda: [n for n in job(config, jid)["placement"]] == ["node0", "node2"], 90, "node1 given up")
        j = job(config, jid)
        assert j["state"] == "running" and "node1 (every GPU) yielded to ollie" in j["reason"], j
        wait(lambda: "with 2 ranks" in log(config, jid).rsplit("with 3 ranks", 1)[-1], 120, "2 ranks again")
        assert ugro(config, "unyield", "node1").returncode == 0
        wait(lambda: len(job(config, jid)["placement"]) == 3, 120, "the job growing back onto node1")
        assert job(config, jid)["state"] == "running"
        assert ugro(config, "cancel", str(jid)).returncode == 0
        wait(lambda: job(config, jid)["state"] == "cancelled", 60, "the cancel")
    finally:
        sched.kill()
        sched.wait()


@pytest.mark.parametrize("nnodes, says", [("3:2", "MIN is more than MAX"), ("0:2", "MIN must be 1 or more"),
                                          ("a:b", "expected a node count such as 2, or MIN:MAX")])
def test_bad_node_counts_are_one_line(tmp_path: Path, nnodes: str, says: str) -> None:
    path = tmp_path / "job.toml"
    path.write_text(f'command = ["train.py"]\nnnodes = "{nnodes}"\n')
    config = tmp_path / "cluster.toml"
    config.write_text('[[nodes]]\nname = "a"\nhost = "127.0.0.1"\n')
    for args in (("--nnodes", nnodes, "--", "train.py"), ("--file", str(path))):
        out = ugro(config, "submit", *args)
        assert out.returncode == 2 and says in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr
