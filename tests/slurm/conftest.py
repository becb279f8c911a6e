"""A real Slurm 22.05 for the Slurm backend's tests: one lab per session (munged, slurmctld, `slurmd -N n1`, `-N n2`,
two fake GPUs each), driven through the shared loopback lab's first node as the login node."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ugro_tui.sim.loopback import LoopbackCluster
from ugro_tui.sim.slurm import SlurmLab, missing

from ..conftest import free_ports, processes_in


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmLab]:
    why = missing()
    if why:
        pytest.skip(f"no Slurm here: {why}")
    lab = SlurmLab(tmp_path_factory.mktemp("slurm")).start()
    yield lab
    lab.stop()


def slurm_toml(lab: LoopbackCluster, slurm: SlurmLab, work: Path, *, extra: str = "") -> str:
    """The shared lab's first node alone, as the login node of the Slurm lab; a workdir and ports of its own."""
    port = free_ports(8, hosts=("127.0.0.1",))
    text = lab.cluster_toml(poll_interval=0.5, rendezvous=(port, port + 7))
    login = text.split("[[nodes]]")[1]
    login = re.sub(r'workdir = "[^"]*"', f'workdir = "{work}"', login)
    head = text.split("[[nodes]]")[0].replace("[cluster]\n", '[cluster]\nbackend = "slurm"\n')
    return (f"{head}[[nodes]]{login}\n[slurm]\nlogin = \"{lab.nodes[0].name}\"\nconf = \"{slurm.conf}\"\n"
            f'partition = "{slurm.partition}"\n{extra}')


@pytest.fixture
def config(lab: LoopbackCluster, slurm: SlurmLab, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "cluster.toml"
    path.write_text(slurm_toml(lab, slurm, tmp_path / "work"))
    yield path
    slurm.cancel_all()
    assert not processes_in(tmp_path / "work"), "a job's process outlived the test"


