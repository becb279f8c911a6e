"""Shared fixtures: an isolated XDG environment and the real loopback SSH cluster (127.0.0.2-4 only)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ugro_tui.config import Cluster, parse_cluster
from ugro_tui.sim.loopback import LoopbackCluster

FIXTURES = Path(__file__).parent / "fixtures"
# node0: NVML path, node1: nvidia-smi path, node2: no driver at all.
LAB_SIM = [(["RTX 5070 Ti"], "nvml"), (["RTX 4070", "RTX 4070"], "nvidia-smi"), (["RTX 3070 Ti"], "none")]


@pytest.fixture(autouse=True)
def isolated_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read or write the developer's own home, config or state (local nodes' ~/.cache included)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.delenv("UGRO_CONFIG", raising=False)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCluster]:
    cluster = LoopbackCluster(tmp_path_factory.mktemp("lab")).start()
    yield cluster
    cluster.stop()


def cluster_from(text: str, source: str = "test.toml") -> Cluster:
    return parse_cluster(tomllib.loads(text), source)


@pytest.fixture
def lab_config(lab: LoopbackCluster, tmp_path: Path) -> tuple[Cluster, Path]:
    text = lab.cluster_toml(sim=LAB_SIM, poll_interval=0.5)
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return cluster_from(text, str(path)), path


@pytest.fixture
def solo_lab(tmp_path: Path) -> Iterator[LoopbackCluster]:
    """A one-node cluster of its own, for tests that kill a node or change its host key."""
    cluster = LoopbackCluster(tmp_path / "solo", hosts=["127.0.0.5"]).start()
    yield cluster
    cluster.stop()


def run_ugro(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ugro_tui", *args], capture_output=True, text=True, timeout=timeout)
