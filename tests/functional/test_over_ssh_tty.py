"""`ugro` through a real OpenSSH client with a pty (ssh -tt to the loopback sshd), inside tmux, read back with
`tmux capture-pane -p` — the way a user runs it from a laptop at 80x24."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ugro_tui.core.daemon.client import running
from ugro_tui.sim.loopback import LoopbackCluster

pytestmark = pytest.mark.skipif(not (shutil.which("tmux") and shutil.which("ssh")), reason="needs tmux and ssh")


def capture(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


def wait_for(session: str, words: list[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = capture(session)
        if all(w in screen for w in words):
            return screen
        time.sleep(0.2)
    raise AssertionError(f"never showed {words}; screen was:\n{screen}")


def test_ugro_over_ssh_in_tmux(lab: LoopbackCluster, lab_config, tmp_path: Path) -> None:
    _, config = lab_config
    node = lab.nodes[0]
    remote = " ".join([
        "env", f"XDG_CONFIG_HOME={shlex.quote(str(tmp_path / 'cfg'))}", f"XDG_STATE_HOME={shlex.quote(str(tmp_path))}",
        shlex.quote(sys.executable), "-m", "ugro_tui", "--config", shlex.quote(str(config))])
    ssh = ["ssh", "-tt", "-F", "/dev/null", "-i", str(lab.client_key_path), "-p", str(node.port),
           "-o", f"UserKnownHostsFile={lab.known_hosts_path}", "-o", "StrictHostKeyChecking=yes",
           "-o", "BatchMode=yes", node.host, remote]
    session = f"ugro-test-{node.port}"
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", shlex.join(ssh)], check=True)
    try:
        screen = wait_for(session, ["node0", "node1", "node2", "RTX 5070 Ti", "online", "no driver", "nodes 2/3"], 30)
        lines = screen.splitlines()
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        subprocess.run(["tmux", "send-keys", "-t", session, "j"], check=True)
        wait_for(session, ["processes on node1 GPU 0"], 10)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 10
        while "ugro" in capture(session) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "nodes 2/3" not in capture(session)  # the app quit and the ssh session closed
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        # The app started a daemon on that state dir, as it does for a user: stop it, as its idle exit would.
        record = tmp_path / "ugro" / "daemon.json"
        started = record.exists()
        if started:
            pid = json.loads(record.read_text())["pid"]
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while running(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not running(pid)
    assert started, "the app over SSH did not start a daemon"
