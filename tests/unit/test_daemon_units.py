"""The daemon's small rules: where its socket lives (private, short), a node's status over the wire, another
version's note, the idle limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ugro_tui import __version__
from ugro_tui.config import DaemonConfig
from ugro_tui.core.daemon import where
from ugro_tui.core.daemon.client import version_note
from ugro_tui.core.daemon.watchers import idle_limit
from ugro_tui.core.telemetry.model import ClusterState, NodeState
from ugro_tui.core.telemetry.wire import apply_hello, apply_wire, to_wire

from ..conftest import cluster_from

SAMPLE = {"gpus": [{"index": 0, "name": "RTX 4070", "utilization_pct": 40.0, "memory_used_mib": 100,
                    "memory_total_mib": 12282, "processes": [{"pid": 7, "user": "ob", "used_mib": 90}]}],
          "host": {"cpu_pct": 12.5, "cores": 8}, "source": "nvml", "t": 100.0}


def test_a_status_crosses_the_wire_with_its_history_then_sample_by_sample() -> None:
    here = ClusterState([("gpu1", "ob@gpu1")], history=5)
    for i in range(3):
        here.nodes["gpu1"].apply_sample({**SAMPLE, "gpus": [{**SAMPLE["gpus"][0], "utilization_pct": 10.0 * i}]},
                                        100.0 + i)
    there = ClusterState([("gpu1", "ob@gpu1")], history=5)
    apply_hello(there, {"nodes": [to_wire(here.nodes["gpu1"], history=True)]})
    got = there.nodes["gpu1"]
    assert got.state is NodeState.ONLINE and list(got.history[0]) == [0.0, 10.0, 20.0]
    assert got.gpus[0].processes[0].pid == 7 and got.host is not None and got.host.cpu_pct == 12.5
    here.nodes["gpu1"].apply_sample(SAMPLE, 104.0)
    apply_wire(got, {**to_wire(here.nodes["gpu1"]), "sample": True})  # one more point, appended
    assert list(got.history[0]) == [0.0, 10.0, 20.0, 40.0] and list(got.cpu_history)[-1] == 12.5
    apply_wire(got, {"name": "gpu1", "state": "nonsense", "gpus": "x", "sampled_at": True})  # never raises
    assert got.state is NodeState.CONNECTING and got.gpus == () and got.sampled_at is None


def test_another_version_says_what_to_run() -> None:
    assert version_note({"version": __version__}) is None
    assert "ugro daemon restart" in (version_note({"version": "0.0.1"}) or "")


def test_the_idle_limit_comes_from_the_config_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = cluster_from('[daemon]\nidle_exit = 30\n[[nodes]]\nname = "a"\nhost = "localhost"\n')
    assert cluster.daemon == DaemonConfig(idle_exit=30.0, autostart=True)
    monkeypatch.delenv("UGRO_IDLE_EXIT", raising=False)
    assert idle_limit(cluster) == 30.0
    monkeypatch.setenv("UGRO_IDLE_EXIT", "0")
    assert idle_limit(cluster) == 0.0
    monkeypatch.setenv("UGRO_IDLE_EXIT", "soon")
    assert idle_limit(cluster) == 30.0


def test_the_socket_path_is_short_and_private_whatever_the_state_dir(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / ("very-long-name-" * 8)))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / ("long-runtime-" * 8)))
    path = where.socket_path()
    assert len(str(path)) < where.SOCKET_MAX and path.parent == Path("/tmp") / f"ugro-{os.getuid()}"
    short = tmp_path / "rt"
    short.mkdir()
    if len(str(short)) + 40 < where.SOCKET_MAX:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(short))
        assert where.socket_path().parent == short / "ugro-daemon"
        folder = where.private_folder()
        assert folder.stat().st_mode & 0o777 == 0o700
        folder.chmod(0o750)
        with pytest.raises(where.UnsafeFolder, match="mode 750"):
            where.private_folder()
