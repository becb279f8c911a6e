"""The Slurm lab itself and what the parsers assume of the real Slurm commands."""

from __future__ import annotations

from ugro_tui.core.backends.slurm.states import hostnames, parse_sinfo
from ugro_tui.sim.slurm import SlurmLab


def test_hostnames_agrees_with_scontrol_show_hostnames(slurm: SlurmLab) -> None:
    lists = "gpu[01-03,7],login-a,n[8-10]"
    done = slurm.run("scontrol", "show", "hostnames", lists)
    assert done.returncode == 0, done.stderr
    assert hostnames(lists) == done.stdout.split()


def test_the_lab_has_two_idle_nodes_with_two_gpus_each(slurm: SlurmLab) -> None:
    nodes = parse_sinfo(slurm.run("sinfo", "--json").stdout)
    assert [(n.name, n.gpus, n.gpus_used, n.state) for n in nodes] == [("n1", 2, 0, "idle"), ("n2", 2, 0, "idle")]
    assert all(n.address == "127.0.0.1" for n in nodes)  # loopback only
