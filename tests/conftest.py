"""Shared fixtures: an isolated XDG environment and the real loopback SSH cluster (127.0.W.2-4 only, W the
xdist worker)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ugro_tui.config import Cluster, parse_cluster
from ugro_tui.sim.loopback import LoopbackCluster

from . import helpers
from .helpers import SERVICE_PORTS, host, run_ugro, ugro  # noqa: F401  (the tests import run_ugro from here)

FIXTURES = Path(__file__).parent / "fixtures"
# node0: NVML path, node1: nvidia-smi path, node2: no driver at all.
LAB_SIM = [(["RTX 5070 Ti"], "nvml"), (["RTX 4070", "RTX 4070"], "nvidia-smi"), (["RTX 3070 Ti"], "none")]


def pytest_configure(config: pytest.Config) -> None:
    """Before the workers start: ugro_tui compiled once, as an installed package is. An editable install's
    modules are not, and where PYTHONDONTWRITEBYTECODE is set (as on the CI machine) every `ugro` the tests start
    would compile what it imports again (30 ms of a command's 100, 80 ms of a daemon's start)."""
    if not hasattr(config, "workerinput"):
        import compileall

        compileall.compile_dir(Path(__file__).parents[1] / "ugro_tui", quiet=1)


@pytest.fixture(autouse=True)
def isolated_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read or write the developer's own home, config or state (local nodes' ~/.cache included)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.delenv("UGRO_CONFIG", raising=False)
    monkeypatch.setenv("UGRO_AUTOSTART", "0")  # a test that wants the daemon starts it, and stops it
    monkeypatch.setenv("TZ", "UTC")  # clock times (an ETA) read the same on every machine
    time.tzset()


@pytest.fixture(scope="session", autouse=True)
def worker_scope(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Where this worker's tests run their jobs: helpers.job_processes looks no further."""
    helpers.SCOPE[:] = [tmp_path_factory.getbasetemp().resolve()]


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCluster]:
    cluster = LoopbackCluster(tmp_path_factory.mktemp("lab"), hosts=[host(2), host(3), host(4)],
                              service_ports=SERVICE_PORTS).start()
    port = free_ports(100)  # this worker's: torch's store listens on every address, so labs must not share ports
    cluster.rendezvous = (port, port + 99)
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
    cluster = LoopbackCluster(tmp_path / "solo", hosts=[host(5)], service_ports=SERVICE_PORTS).start()
    yield cluster
    cluster.stop()


SIM3 = [(["RTX 5070 Ti"], "nvml"), (["RTX 4070"], "nvml"), (["RTX 3070 Ti"], "nvml")]  # one GPU per node


def free_ports(count: int, hosts: tuple[str, ...] = ()) -> int:
    """The first of `count` consecutive ports free on every host (jobs that run at once use one each)."""
    return helpers.free_ports(count, hosts or (host(2), host(3), host(4)))


@contextlib.contextmanager
def private_lab(lab: LoopbackCluster, tmp_path: Path, ports: int = 1) -> Iterator[Path]:
    """A cluster.toml of the shared lab for one test: workdirs and rendezvous ports of its own (each test's store
    counts job ids from 1); whatever the test left running is killed afterwards, so it never meets the next one."""
    path = tmp_path / "cluster.toml"
    port = free_ports(ports)
    text = lab.cluster_toml(sim=SIM3, poll_interval=0.5, rendezvous=(port, port + ports - 1))
    path.write_text(text.replace(str(lab.root / "work"), str(tmp_path / "lab-work")))
    try:
        yield path
    finally:
        for verb in ("scheduler", "daemon run"):
            subprocess.run(["pkill", "-9", "-f", f"ugro_tui {verb} --config {path}"], check=False)
        for pid in processes_in(tmp_path / "lab-work"):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def daemon_lab(lab: LoopbackCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private lab with auto-start on, and a short runtime dir of its own for the daemon's socket; whatever
    daemon the test started is stopped afterwards."""
    runtime = Path(tempfile.mkdtemp(prefix="ugro-rt-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("UGRO_AUTOSTART")
    with private_lab(lab, tmp_path, ports=2) as path:
        try:
            yield path
        finally:
            ugro(path, "daemon", "stop", strict=False)
            shutil.rmtree(runtime, ignore_errors=True)


@contextlib.contextmanager
def daemon_on(config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The daemon on this test's state dir and `config` (auto-start stays off: the test starts this one and
    stops it), with a short runtime dir of its own for the socket. Yields the config."""
    runtime = Path(tempfile.mkdtemp(prefix="ugro-rt-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    try:
        started = ugro(config, "daemon", "start")
        assert started.returncode == 0, started.stderr
        yield config
    finally:
        ugro(config, "daemon", "stop", strict=False)
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def autostart(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Auto-start on, as a user has it: the first verb that needs the daemon starts one on this test's state dir
    (with a short runtime dir of its own for the socket); it is stopped afterwards."""
    from ugro_tui.commands.daemon import stop

    runtime = Path(tempfile.mkdtemp(prefix="ugro-rt-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("UGRO_AUTOSTART")
    try:
        yield
    finally:
        stop(quiet=True)
        shutil.rmtree(runtime, ignore_errors=True)


def processes_in(folder: Path) -> list[int]:
    """Live processes whose working dir is inside `folder` (a job's processes run in its node's workdir)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            out.append(int(entry.name))
    return out
