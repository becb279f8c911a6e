"""Interactive sessions on the loopback lab (real OpenSSH, the simulated GPUs; node0 given two cards here): a
session holds GPU 1 of node0, a job that needs that card waits naming it, the printed ssh command opens a shell
(in tmux) with CUDA_VISIBLE_DEVICES=1, its `--ssh-config` entry works with `ssh -F` and is removed at its end; an
idle session is given back, a busy one is not; a killed daemon loses none."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import daemon_on, private_lab
from ..helpers import ugro, wait

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(not (shutil.which("tmux") and shutil.which("ssh")), reason="needs tmux and ssh")]


@pytest.fixture
def config(lab: LoopbackCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with private_lab(lab, tmp_path, ports=2) as path:
        text = path.read_text()
        path.write_text(text.replace('gpus = ["RTX 5070 Ti"]', 'gpus = ["RTX 5070 Ti", "RTX 5070 Ti"]', 1))
        with daemon_on(path, monkeypatch):
            yield path


def jobs(config: Path) -> dict[int, dict]:
    done = ugro(config, "queue", "--json")
    assert done.returncode == 0, done.stderr
    return {j["id"]: j for j in json.loads(done.stdout)["jobs"]}


def capture(pane: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", pane], capture_output=True, text=True).stdout


def tmux(pane: str, *keys: str) -> None:
    subprocess.run(["tmux", "send-keys", "-t", pane, *keys], check=True)


def start_session(config: Path, *args: str) -> tuple[int, list[str]]:
    done = ugro(config, "session", "--no-attach", *args, timeout=60)
    assert done.returncode == 0, done.stderr
    session_id = int(done.stderr.split("session ", 1)[1].split(":", 1)[0])
    return session_id, shlex.split(done.stdout.strip().splitlines()[-1])


def test_a_session_holds_its_gpu_opens_a_shell_there_and_its_ssh_config_entry_goes_with_it(
        config: Path, tmp_path: Path) -> None:
    sid, argv = start_session(config, "--node", "node0:1", "--ssh-config", "--name", "ob-notebook")
    assert argv[:2] == ["ssh", "-t"] and "StrictHostKeyChecking=yes" in argv
    j = jobs(config)[sid]
    assert j["state"] == "running" and j["placement"] == {"node0": [1]} and j["spec"]["kind"] == "session"
    # A job that needs every card of node0 waits, naming the session that holds GPU 1.
    job = ugro(config, "submit", "--nodes", "node0", "--gpus-per-node", "2", "--kind", "command", "--", "true")
    assert job.returncode == 0, job.stderr
    waiting = int(job.stdout.split()[0])
    wait(lambda: "node0:1 is held by session" in jobs(config)[waiting]["reason"], 30, "the reason naming it")
    assert f"session {sid} (ob-notebook)" in jobs(config)[waiting]["reason"]

    pane = f"ugro-session-{os.getpid()}"
    subprocess.run(["tmux", "kill-session", "-t", pane], capture_output=True)
    subprocess.run(["tmux", "new-session", "-d", "-s", pane, "-x", "100", "-y", "30", shlex.join(argv)], check=True)
    try:
        wait(lambda: capture(pane).rstrip().endswith(("$", "#")), 30, "the session's shell prompt")
        tmux(pane, "echo CVD=$CUDA_VISIBLE_DEVICES S=$UGRO_SESSION", "Enter")
        wait(lambda: f"CVD=1 S={sid}" in capture(pane), 20, "the shell's GPUs")
        wait(lambda: jobs(config)[sid]["session"]["shells"] == 1, 30, "the attached shell counted")
        out = ugro(config, "session", "list").stdout
        assert f"{sid} " in out and "node0:1" in out, out
    finally:
        subprocess.run(["tmux", "kill-session", "-t", pane], capture_output=True)
    # Closing the terminal does not end the session.
    wait(lambda: jobs(config)[sid]["session"]["shells"] == 0, 30, "the shell gone")
    assert jobs(config)[sid]["state"] == "running"

    entry = Path(os.environ["HOME"]) / ".ssh" / "config.d" / "ugro"
    assert f"Host ugro-session-{sid}" in entry.read_text()
    shell = subprocess.run(["ssh", "-F", str(entry), "-tt", "-o", "BatchMode=yes", f"ugro-session-{sid}"],
                           input="echo VIA=$CUDA_VISIBLE_DEVICES\nexit\n", capture_output=True, text=True, timeout=30)
    assert "VIA=1" in shell.stdout, shell.stdout + shell.stderr

    ended = ugro(config, "session", "end", str(sid))
    assert ended.returncode == 0, ended.stderr
    wait(lambda: jobs(config)[sid]["state"] == "succeeded", 40, "the session ended")
    assert jobs(config)[sid]["reason"] == "ended by the user"
    wait(lambda: f"ugro-session-{sid}" not in entry.read_text(), 20, "its ssh config entry removed")
    wait(lambda: jobs(config)[waiting]["state"] == "succeeded", 60, "the waiting job placed on the card given back")


def test_an_idle_session_is_given_back_and_a_busy_one_is_not(config: Path) -> None:
    idle, _ = start_session(config, "--node", "node1", "--idle-stop", "6s")
    busy, argv = start_session(config, "--node", "node2", "--idle-stop", "6s")
    # A stand-in for a notebook's kernel in the busy session: a process of it on its GPU (the simulator shows it).
    remote = argv[-1].replace('UGRO_SHELL=$$ && export UGRO_SHELL && exec "${SHELL:-/bin/sh}" -i',
                              "export UGRO_SIM_MEM_MIB=900 && exec sleep 600")  # no shell: only the GPU counts
    assert remote != argv[-1]
    stand_in = subprocess.Popen([*argv[:1], "-T", *argv[2:-1], remote], stdin=subprocess.DEVNULL)
    try:
        wait(lambda: jobs(config)[idle]["state"] == "succeeded", 60, "the idle session given back")
        j = jobs(config)
        assert j[idle]["reason"].startswith("given back: idle for 6 s"), j[idle]["reason"]
        assert j[busy]["state"] == "running", j[busy]
        events = ugro(config, "show", str(idle)).stdout
        assert "ends in" in events and "session ended: given back" in events, events
        began = j[busy]["started_at"]
        # Seen busy past its idle limit, and still holding its GPU.
        wait(lambda: jobs(config)[busy]["session"]["active_at"] > began + 8, 30, "the busy one seen active")
        assert jobs(config)[busy]["state"] == "running"
    finally:
        stand_in.send_signal(signal.SIGTERM)
        stand_in.wait(10)
    ugro(config, "session", "end", str(busy))
    wait(lambda: jobs(config)[busy]["state"] == "succeeded", 40, "the busy one ended by hand")
