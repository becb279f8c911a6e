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
from ..helpers import jobs, ugro, wait

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(not (shutil.which("tmux") and shutil.which("ssh")), reason="needs tmux and ssh")]


@pytest.fixture
def config(lab: LoopbackCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with private_lab(lab, tmp_path, ports=2) as path:
        text = path.read_text()
        text = text.replace('gpus = ["RTX 5070 Ti"]', 'gpus = ["RTX 5070 Ti", "RTX 5070 Ti"]', 1)
        path.write_text(text.replace("[cluster]\n", "[cluster]\nsession_grace = 3\n", 1))  # 10 s: for people
        with daemon_on(path, monkeypatch):
            yield path


def status(config: Path, sid: int) -> dict:
    """The session's status as the daemon's watch stored it; {} until its first look."""
    return jobs(config)[sid]["session"] or {}


def session_processes(sid: int) -> list[int]:
    """Processes of this test's session `sid` still alive (the loopback nodes are this machine): by its id and
    this test's store (UGRO_STORE), as the daemon finds them."""
    from ugro_tui.core.jobs.store import JobStore

    ours = f"UGRO_STORE={JobStore().identity()}".encode()
    found = []
    for entry in os.listdir("/proc"):
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"UGRO_SESSION={sid}".encode() in env and ours in env:
            found.append(int(entry))
    return found


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
        wait(lambda: status(config, sid).get("shells") == 1, 30, "the attached shell counted")
        out = ugro(config, "session", "list").stdout
        assert f"{sid} " in out and "node0:1" in out, out
    finally:
        subprocess.run(["tmux", "kill-session", "-t", pane], capture_output=True)
    # Closing the terminal does not end the session.
    wait(lambda: status(config, sid).get("shells") == 0, 30, "the shell gone")
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
    busy, argv = start_session(config, "--node", "node2", "--idle-stop", "12s")  # room for its stand-in to show
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
        said = json.loads(ugro(config, "events", "--json").stdout)["events"]
        kinds = [e["event"] for e in said if e["job_id"] == idle]
        assert "session-ending" in kinds and "session-ended" in kinds, said  # notify_command and the app get them
        began = j[busy]["started_at"]
        # Seen busy past its idle limit, and still holding its GPU.
        wait(lambda: status(config, busy).get("active_at", 0) > began + 14, 30, "the busy one seen active")
        assert jobs(config)[busy]["state"] == "running"
    finally:
        stand_in.send_signal(signal.SIGTERM)
        stand_in.wait(10)
    ugro(config, "session", "end", str(busy))
    wait(lambda: jobs(config)[busy]["state"] == "succeeded", 40, "the busy one ended by hand")


def daemon_pid(config: Path) -> int:
    done = ugro(config, "daemon", "status", "--json")
    return int(json.loads(done.stdout)["pid"])


def test_a_killed_daemon_loses_no_session_and_the_next_one_warns_its_shell_and_ends_it_on_time(
        config: Path) -> None:
    sid, argv = start_session(config, "--node", "node1", "--hours", "0.012")  # 43 s: warned 21 s before its end
    pane = f"ugro-session-t-{os.getpid()}"
    subprocess.run(["tmux", "kill-session", "-t", pane], capture_output=True)
    subprocess.run(["tmux", "new-session", "-d", "-s", pane, "-x", "120", "-y", "30", shlex.join(argv)], check=True)
    try:
        wait(lambda: capture(pane).rstrip().endswith(("$", "#")), 30, "the session's shell prompt")
        pid = daemon_pid(config)
        os.kill(pid, signal.SIGKILL)
        wait(lambda: subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0, 10, "it died")
        assert jobs(config)[sid]["state"] == "running"  # the keeper and the run dir carry it
        assert ugro(config, "daemon", "start").returncode == 0
        wait(lambda: status(config, sid).get("shells") == 1, 30, "the new daemon counting the shell")
        wait(lambda: f"session {sid}" in capture(pane) and "ends in" in capture(pane), 40, "the wall message")
        extra = ugro(config, "session", "list").stdout
        assert f"{sid} " in extra and "node1:0" in extra, extra
        wait(lambda: jobs(config)[sid]["state"] == "succeeded", 60, "the session given back at its end")
        assert jobs(config)[sid]["reason"].startswith("given back: it reached its end"), jobs(config)[sid]["reason"]
        wait(lambda: "closed" in capture(pane) or not capture(pane).strip()
             or subprocess.run(["tmux", "has-session", "-t", pane], capture_output=True).returncode != 0,
             30, "its shell ended (TERM, then KILL)")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", pane], capture_output=True)


def test_no_wait_refuses_at_once_naming_why_and_extend_moves_the_end(config: Path) -> None:
    first, _ = start_session(config, "--node", "node2")
    refused = ugro(config, "session", "--node", "node2", "--no-wait", "--no-attach")
    assert refused.returncode != 0 and "no GPU for it now (--no-wait)" in refused.stderr, refused.stderr
    assert f"node2:0 is held by session {first}" in refused.stderr, refused.stderr
    second = max(jobs(config))
    assert jobs(config)[second]["state"] == "cancelled"
    wait(lambda: bool(status(config, first)), 30, "the watch's first look")
    before = status(config, first)["ends_at"]
    done = ugro(config, "session", "extend", str(first), "--hours", "2")
    assert done.returncode == 0, done.stderr
    assert abs(status(config, first)["ends_at"] - (before + 7200)) < 1
    wrong = ugro(config, "session", "attach", str(second))
    assert wrong.returncode != 0 and "cancelled" in wrong.stderr and "Traceback" not in wrong.stderr
    # A process of the session that ignores TERM (an editor that will not quit) is killed after its grace (3 s).
    attach = shlex.split(ugro(config, "session", "attach", str(first), "--no-attach").stdout.strip())
    remote = attach[-1].replace('UGRO_SHELL=$$ && export UGRO_SHELL && exec "${SHELL:-/bin/sh}" -i',
                                "trap '' TERM && exec sleep 600")
    stubborn = subprocess.Popen([attach[0], "-T", *attach[2:-1], remote], stdin=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    try:
        wait(lambda: len(session_processes(first)) >= 2 or stubborn.poll() is not None, 20, "the stubborn process")
        assert stubborn.poll() is None, stubborn.stderr.read() if stubborn.stderr else ""
        asked = time.monotonic()
        ugro(config, "session", "end", str(first))
        wait(lambda: jobs(config)[first]["state"] == "succeeded", 60, "ended")
        assert time.monotonic() - asked >= 2.5  # it had its grace: TERM, then KILL after session_grace
        assert not session_processes(first)
    finally:
        stubborn.kill()
        stubborn.wait(10)


def test_d_in_the_nodes_view_suspends_the_app_into_a_session_shell_and_comes_back(config: Path) -> None:
    """As a user does it in a terminal (tmux at 80x24): select a GPU, `d`, a shell on that GPU, `exit`, the app."""
    import sys

    keep = ("HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR", "UGRO_AUTOSTART", "PATH")
    app = ["env", *(f"{k}={os.environ[k]}" for k in keep if k in os.environ), sys.executable, "-m", "ugro_tui",
           "--config", str(config)]
    pane = f"ugro-app-{os.getpid()}"
    subprocess.run(["tmux", "kill-session", "-t", pane], capture_output=True)
    subprocess.run(["tmux", "new-session", "-d", "-s", pane, "-x", "80", "-y", "24", shlex.join(app)], check=True)
    try:
        wait(lambda: "RTX 4070" in capture(pane) and "online" in capture(pane), 40, "the Nodes view")
        wait(lambda: "processes on node0 GPU 0" in capture(pane), 10, "the first GPU selected")
        tmux(pane, "j")
        chosen = 1
        wait(lambda: "processes on node0 GPU 1" in capture(pane), 10, "node0's second GPU selected")
        tmux(pane, "d")
        wait(lambda: capture(pane).rstrip().endswith(("$", "#")), 40, "the session's shell in this terminal")
        tmux(pane, "echo CVD=$CUDA_VISIBLE_DEVICES NODE=$UGRO_NODE", "Enter")
        wait(lambda: f"CVD={chosen} NODE=node0" in capture(pane), 20, "the shell on the selected GPU")
        [sid] = [i for i, j in jobs(config).items() if j["spec"]["kind"] == "session"]
        assert jobs(config)[sid]["placement"] == {"node0": [chosen]}
        tmux(pane, "exit", "Enter")
        wait(lambda: f"back from session {sid}" in capture(pane), 30, "the app back, saying so")
        assert jobs(config)[sid]["state"] == "running"  # the session keeps its GPU until ended or idle
    finally:
        subprocess.run(["tmux", "kill-session", "-t", pane], capture_output=True)


def test_jupyter_in_a_session_is_forwarded_here_with_its_token(config: Path) -> None:
    import sys
    import urllib.request

    pytest.importorskip("jupyterlab")
    keep = {k: os.environ[k] for k in ("HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR", "PATH")}
    command = subprocess.Popen([sys.executable, "-m", "ugro_tui", "session", "--config", str(config), "--node",
                                "node1", "--jupyter", "--name", "notebook"], env={**os.environ, **keep},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Ctrl-C as from a terminal: a test run started in the background ignores SIGINT, and its children inherit it.
    try:
        url = command.stdout.readline().strip()  # blocks until the forward listens (or the command ends)
        assert url.startswith("http://127.0.0.1:") and "/lab?token=" in url, command.stderr.read()
        base, token = url.split("/lab?token=")
        with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=30) as reply:
            assert reply.status == 200 and "started" in json.loads(reply.read())
        with pytest.raises(urllib.error.HTTPError):  # the token is needed
            urllib.request.urlopen(f"{base}/api/sessions", timeout=30)
    finally:
        command.send_signal(signal.SIGINT)
        command.wait(20)
    [sid] = [i for i, j in jobs(config).items() if j["spec"]["kind"] == "session"]
    assert jobs(config)[sid]["state"] == "running"  # the forward stopped; the session did not
    assert session_processes(sid)  # JupyterLab, found by its environment
    ugro(config, "session", "end", str(sid))
    wait(lambda: jobs(config)[sid]["state"] == "succeeded", 40, "ended")
    assert not session_processes(sid)  # JupyterLab got TERM with the rest of it
