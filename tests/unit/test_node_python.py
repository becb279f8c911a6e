"""Code that runs on nodes (agent, probe, stand-ins) works on the oldest Python this machine has (3.8 on nodes)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ugro_tui.core.doctor.run import PROBE_SOURCE
from ugro_tui.core.telemetry import monitor
from ugro_tui.sim.stage import NODE_DIR

SIM = json.dumps({"node": "n", "source": "nvml", "gpus": [["RTX 4070", 12282, 200], ["RTX 3070 Ti", 8192, 290]]})


def oldest_python() -> str:
    """The oldest Python 3.8+ here: pyenv's versions first, then python3.8 / python3.9 on PATH."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for minor in ("3.8", "3.9", "3.10"):
        found = sorted(glob.glob(f"{root}/versions/{minor}.*/bin/python{minor}"))
        found += [p for p in (f"/usr/bin/python{minor}", f"/usr/local/bin/python{minor}") if os.path.exists(p)]
        if found:
            return found[0]
    pytest.skip("no Python older than 3.11 on this machine (pyenv 3.8/3.9 expected): node code untested on 3.8")


@pytest.fixture(scope="module")
def py() -> str:
    return oldest_python()


def run(py: str, args: list[str], tmp_path: Path, *, pythonpath: str | None = None, path: str | None = None,
        source: str = "nvml") -> subprocess.CompletedProcess[str]:
    env = {"PATH": path or os.environ["PATH"], "HOME": str(tmp_path), "UGRO_SIM": SIM.replace("nvml", source),
           "UGRO_SIM_STATE": str(tmp_path / "sim")}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([py, *args], capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)


def test_the_oldest_python_is_older_than_the_app(py: str) -> None:
    version = subprocess.run([py, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                             text=True).stdout
    assert version.strip() in ("(3, 8)", "(3, 9)", "(3, 10)")


def test_agent_samples_through_the_nvml_stand_in(py: str, tmp_path: Path) -> None:
    agent = tmp_path / "agent.py"
    agent.write_bytes(monitor.AGENT_SOURCE)
    done = run(py, [str(agent), "--once"], tmp_path, pythonpath=str(NODE_DIR))
    assert done.returncode == 0, done.stderr
    sample = json.loads(done.stdout)
    assert sample["source"] == "nvml" and sample["error"] is None
    assert [g["name"] for g in sample["gpus"]] == ["RTX 4070", "RTX 3070 Ti"]


def test_agent_falls_back_to_the_nvidia_smi_stand_in(py: str, tmp_path: Path) -> None:
    """No pynvml: the agent parses nvidia-smi's CSV (the zip that once had strict= runs here)."""
    agent = tmp_path / "agent.py"
    agent.write_bytes(monitor.AGENT_SOURCE)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"  # the stand-in itself on the old Python too
    smi.write_text(f'#!/bin/sh\nPYTHONPATH={NODE_DIR} exec {py} {NODE_DIR / "nvidia_smi.py"} "$@"\n')
    smi.chmod(0o755)
    done = run(py, [str(agent), "--once"], tmp_path, path=f"{bin_dir}:/usr/bin:/bin", source="nvidia-smi")
    assert done.returncode == 0, done.stderr
    sample = json.loads(done.stdout)
    assert sample["source"] == "nvidia-smi" and sample["error"] is None, sample
    assert [g["memory_total_mib"] for g in sample["gpus"]] == [12282, 8192]


def test_doctor_probe_reports_facts(py: str, tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_bytes(PROBE_SOURCE)
    request = {"workdir": str(tmp_path), "ifname": "lo", "hosts": ["127.0.0.1"], "rendezvous": None}
    done = run(py, [str(probe), "facts", json.dumps(request)], tmp_path, pythonpath=str(NODE_DIR))
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["python"]["version"].startswith(py.rsplit("python", 1)[1])
    assert facts["driver"]["source"] == "nvml" and facts["driver"]["models"] == ["RTX 4070", "RTX 3070 Ti"]
    assert facts["interface"]["exists"] and facts["disk"]["writable"]


def test_the_job_fixtures_run_on_the_oldest_python(py: str, tmp_path: Path) -> None:
    script = Path(__file__).parents[1] / "fixtures" / "jobs" / "rank_pieces.py"
    env = dict(os.environ, RANK="0")
    done = subprocess.run([py, str(script), "2"], capture_output=True, env=env, timeout=30)
    assert done.returncode == 0 and done.stdout.endswith(b"done rank 0\n")
    assert sys.version_info >= (3, 11)
