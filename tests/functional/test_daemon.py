"""The daemon on the loopback lab: auto-started by `ugro submit`, the only dispatcher, one SSH connection per
node, killed and replaced without losing a job, one per state dir, private to its user."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ugro_tui.core.daemon.client import running
from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import daemon_lab
from ..helpers import job, ugro, wait

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def config(lab: LoopbackCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with daemon_lab(lab, tmp_path, monkeypatch) as path:
        yield path


def status(config: Path) -> dict | None:
    done = ugro(config, "daemon", "status", "--json")
    doc = json.loads(done.stdout)
    return doc if doc["running"] else None


def ssh_connections_to(port: int) -> dict[int, int]:
    """Established TCP connections to a node's sshd port, per client pid (counted with ss), leaving out this
    test process (the session's lab is shared with in-process tests)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"( dport = :{port} )"], capture_output=True,
                         text=True, check=True).stdout
    counts: dict[int, int] = {}
    for pid in (int(p) for p in re.findall(r"pid=(\d+)", out)):
        if pid != os.getpid():
            counts[pid] = counts.get(pid, 0) + 1
    return counts


def test_submit_starts_the_daemon_which_runs_the_job_over_one_connection_per_node(config: Path,
                                                                                   lab: LoopbackCluster) -> None:
    done = ugro(config, "submit", "--kind", "command", "--nnodes", "2", "--", "sh", "-c", "sleep 2")
    assert done.returncode == 0 and done.stdout == "1\n", done.stderr
    doc = status(config)
    assert doc is not None and doc["dispatcher"] == "dispatch: here"
    wait(lambda: job(config, 1)["state"] == "running", 30, "the job to run with nothing but the daemon")
    assert set(job(config, 1)["placement"]) <= {"node0", "node1", "node2"}
    doc = status(config)
    assert doc["connections"] == {"node0": 1, "node1": 1, "node2": 1}, doc
    for node in lab.nodes:  # the daemon's, and no other process's: exactly one per node
        assert ssh_connections_to(node.port) == {doc["pid"]: 1}, node
    wait(lambda: job(config, 1)["state"] == "succeeded", 30, "the job to end")
    from ugro_tui.core.daemon import where

    log = where.log_path().read_text()  # the daemon's own events, not an SSH channel's every open and close
    assert f"pid {doc['pid']}" in log and "Requesting new SSH session" not in log and "conn=" not in log, log[-2000:]
    # Waiting on the daemon: the scheduler does not dispatch a second time.
    done = ugro(config, "scheduler", "--until-idle", timeout=60)
    assert done.returncode == 0, done.stderr
    second = ugro(config, "scheduler")
    assert second.returncode == 2 and f"pid {doc['pid']}" in second.stderr


def test_a_killed_daemon_is_replaced_and_its_running_job_is_adopted_not_started_twice(config: Path,
                                                                                      tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    script = f"echo $$ >> {marker}; sleep 4"
    assert ugro(config, "submit", "--kind", "command", "--", "sh", "-c", script).returncode == 0
    wait(lambda: job(config, 1)["state"] == "running", 30, "the job to run")
    first = status(config)
    os.kill(first["pid"], signal.SIGKILL)
    wait(lambda: not running(first["pid"]), 10, "the daemon to die")
    # Its socket file is left behind; the next client detects it is stale and starts a new daemon.
    assert Path(first["socket"]).exists()
    done = ugro(config, "daemon", "start")
    assert done.returncode == 0 and "started" in done.stdout, done.stderr
    assert status(config)["pid"] != first["pid"]
    wait(lambda: job(config, 1)["state"] == "succeeded", 40, "the adopted job to end")
    assert len(marker.read_text().split()) == 1  # started once
    assert job(config, 1)["attempt"] == 1


def test_two_daemons_at_once_end_with_exactly_one_which_the_other_names(config: Path) -> None:
    argv = [sys.executable, "-m", "ugro_tui", "daemon", "run", "--config", str(config)]
    both = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        wait(lambda: any(p.poll() is not None for p in both), 30, "one of the two to give way")
        loser = next(p for p in both if p.poll() is not None)
        winner = next(p for p in both if p is not loser)
        assert loser.returncode == 2
        assert f"pid {winner.pid}" in loser.stderr.read(), "the loser names the daemon that runs"
        wait(lambda: status(config) is not None, 30, "the winner to answer")
        assert status(config)["pid"] == winner.pid
    finally:
        for p in both:
            p.terminate()
            p.wait(timeout=30)


def test_a_socket_folder_others_may_enter_is_refused_with_the_reason(config: Path) -> None:
    folder = Path(os.environ["XDG_RUNTIME_DIR"]) / "ugro-daemon"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    done = ugro(config, "daemon", "start")
    assert done.returncode == 1 and "mode 755" in done.stderr and "chmod 700" in done.stderr, done.stderr
    done = ugro(config, "submit", "--kind", "command", "--", "true")
    assert done.returncode == 0 and done.stdout == "1\n" and "mode 755" in done.stderr  # stored, and said


def test_a_malformed_request_gets_one_line_and_the_daemon_goes_on(config: Path) -> None:
    assert ugro(config, "daemon", "start").returncode == 0
    path = status(config)["socket"]
    for garbage in (b"\x00\xffnot http at all\r\n\r\n", b"POST /api/v1/jobs HTTP/1.1\r\nContent-Length: 5\r\n\r\n{{{{{",
                    b"GET /api/v1/" + b"x" * 20000 + b" HTTP/1.1\r\n\r\n"):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(garbage)
            answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.") and b" 4" in answer.split(b"\r\n")[0], answer[:200]
    assert status(config) is not None  # still serving


def test_the_daemon_exits_by_itself_when_idle(config: Path) -> None:
    config.write_text(config.read_text() + "\n[daemon]\nidle_exit = 1\n")
    assert ugro(config, "daemon", "start").returncode == 0
    pid = status(config)["pid"]
    wait(lambda: not running(pid), 30, "the idle daemon to exit")
    assert status(config) is None


def test_ugro_web_beside_a_running_daemon_is_served_by_it_with_no_runtime_of_its_own(config: Path,
                                                                                     lab: LoopbackCluster) -> None:
    import urllib.request

    from ..helpers import free_ports

    assert ugro(config, "daemon", "start").returncode == 0
    daemon = status(config)
    wait(lambda: status(config)["connections"] == {"node0": 1, "node1": 1, "node2": 1}, 30, "the daemon's nodes")
    port = free_ports(1, ("127.0.0.1",))
    proc = subprocess.Popen([sys.executable, "-m", "ugro_tui", "web", "--port", str(port), "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()  # printed once the daemon accepts on the port
        assert url.startswith(f"http://127.0.0.1:{port}/?token="), proc.stderr.read() if proc.poll() else url
        token = url.split("token=")[1]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/cluster/health",
                                         headers={"Authorization": f"Bearer {token}"})
        health = json.loads(urllib.request.urlopen(request, timeout=10).read())
        assert health["nodes_total"] == 3
        for node in lab.nodes:  # still the daemon's one connection per node, none of `ugro web`'s
            assert ssh_connections_to(node.port) == {daemon["pid"]: 1}, node
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    with pytest.raises(OSError):  # the view went with `ugro web`; the daemon stays
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=5)
    assert status(config)["pid"] == daemon["pid"]


def test_a_task_that_raises_is_in_the_status_and_the_events_and_the_daemon_goes_on(
        config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real daemon (in this process, on its real socket and the lab) whose event reader raises once."""
    import asyncio
    import threading

    from ugro_tui.config import load_cluster
    from ugro_tui.core.daemon import service, watchers

    calls = 0

    async def breaks_once(publish, every: float = 0.5) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the journal reader broke")
        await watchers.watch_events(publish, every)

    monkeypatch.setattr(service, "watch_events", breaks_once)
    daemon = service.Daemon(load_cluster(config), config)
    daemon.claim()
    thread = threading.Thread(target=lambda: asyncio.run(daemon.serve()), daemon=True)
    thread.start()
    try:
        def failed_and_restarted() -> bool:
            doc = status(config)
            task = next((t for t in doc["tasks"] if t["name"] == "events"), None) if doc else None
            return bool(task and task["restarts"] >= 1 and calls >= 2)

        wait(failed_and_restarted, 30, "the failed task to be restarted")
        task = next(t for t in status(config)["tasks"] if t["name"] == "events")
        assert task["last_error"] == "RuntimeError: the journal reader broke"
        events = json.loads(ugro(config, "events", "--json").stdout)["events"]
        said = [e for e in events if e["event"] == "daemon-error"]
        assert [e["message"] for e in said] == [
            "daemon task events failed: RuntimeError: the journal reader broke; restarting it"], events
        assert ugro(config, "submit", "--kind", "command", "--", "true").returncode == 0  # still dispatching
        wait(lambda: job(config, 1)["state"] == "succeeded", 30, "the job to run")
    finally:
        daemon.stop_soon()
        thread.join(30)


def daemon_links(port: int, pid: int) -> list[str]:
    """The daemon's connections to a node's sshd port, by their local address (the same after a restart of the
    agent means the connection was kept)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"( dport = :{port} )"], capture_output=True,
                         text=True, check=True).stdout
    return sorted(line.split()[2] for line in out.splitlines() if f"pid={pid}," in line)


def agents_of(folder: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                words = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(w.endswith(b".py") and b"agent-" in w for w in words) and str(folder).encode() in words:
                found.append(int(entry.name))
    return found


def test_a_killed_agent_is_restarted_on_the_same_connection_while_a_50_mb_sync_completes(
        config: Path, lab: LoopbackCluster, tmp_path: Path) -> None:
    import hashlib

    assert ugro(config, "daemon", "start").returncode == 0
    pid = status(config)["pid"]
    workdir = config.parent / "lab-work" / "node0"
    wait(lambda: len(agents_of(workdir)) == 1, 30, "node0's agent")
    port = lab.nodes[0].port
    before = daemon_links(port, pid)
    assert len(before) == 1
    code = tmp_path / "code"
    code.mkdir()
    (code / "weights.bin").write_bytes(os.urandom(50 << 20))
    (code / "train.py").write_text("print('hi')\n")
    sync = subprocess.Popen([sys.executable, "-m", "ugro_tui", "sync", str(code), "--nodes", "node0",
                             "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    [agent] = agents_of(workdir)
    os.kill(agent, signal.SIGKILL)  # while the copy travels on the same connection
    out, err = sync.communicate(timeout=120)
    assert sync.returncode == 0, err
    target = Path(out.split("-> ")[1].strip().replace("~", str(lab.nodes[0].folder / "home"), 1))
    assert hashlib.sha256((target / "weights.bin").read_bytes()).digest() == \
        hashlib.sha256((code / "weights.bin").read_bytes()).digest()
    wait(lambda: agents_of(workdir) and agents_of(workdir) != [agent], 30, "a new agent on node0")
    wait(lambda: json.loads(ugro(config, "status", "--json").stdout)["nodes"][0]["state"] == "online", 30,
         "node0 online again")
    assert daemon_links(port, pid) == before  # the same connection: the copy on it was not cut


def test_the_daemon_killed_again_and_again_loses_no_job_starts_none_twice_and_logs_stay_exact(
        config: Path, tmp_path: Path) -> None:
    import random
    import time

    marker = tmp_path / "starts"
    script = f'echo "$UGRO_JOB_ID $UGRO_NODE" >> {marker}; for i in $(seq 1 50); do echo line $i; sleep 0.1; done'
    ids = []
    for _ in range(3):
        done = ugro(config, "submit", "--kind", "command", "--nnodes", "3", "--", "sh", "-c", script)
        assert done.returncode == 0, done.stderr
        ids.append(int(done.stdout))
    rng = random.Random(5)
    for _ in range(20):
        wait(lambda: status(config) is not None, 30, "a daemon")
        time.sleep(rng.uniform(0.1, 1.2))
        pid = status(config)["pid"]
        os.kill(pid, signal.SIGKILL)
        wait(lambda pid=pid: not running(pid), 10, "the daemon to go")
        assert ugro(config, "daemon", "start").returncode == 0  # the next client starts the next daemon
    for job_id in ids:
        wait(lambda job_id=job_id: job(config, job_id)["state"] == "succeeded", 90, f"job {job_id} to succeed")
    starts = marker.read_text().split("\n")
    assert sorted(s for s in starts if s) == sorted(f"{j} node{n}" for j in ids for n in range(3))  # once each
    for job_id in ids:
        assert job(config, job_id)["attempt"] == 1
        for n in range(3):  # every line once, in order, whichever daemon copied it
            expected = "".join(f"node{n}| line {i}\n" for i in range(1, 51))
            assert ugro(config, "logs", str(job_id), "--node", f"node{n}").stdout == expected, (job_id, n)


async def test_ugro_kill_goes_through_the_daemon_with_the_same_rules(config: Path) -> None:
    from ugro_tui.config import load_cluster

    from .test_signals import gone, gpu_sleeper

    assert ugro(config, "daemon", "start").returncode == 0
    pid = await gpu_sleeper(load_cluster(config))

    def listed() -> bool:
        nodes = json.loads(ugro(config, "status", "--json").stdout)["nodes"]
        return any(p["pid"] == pid for g in nodes[0]["gpus"] for p in g["processes"])

    try:
        wait(listed, 30, "the daemon's telemetry to list the process")
        out = ugro(config, "kill", "node0", "999999")
        assert out.returncode == 2 and "pid 999999 is not a GPU process on node0" in out.stderr, out.stderr
        assert out.stderr.count("\n") == 1
        out = ugro(config, "kill", "node0", str(pid), "--signal", "kill")
        assert out.returncode == 0 and out.stdout.strip() == f"KILL sent to pid {pid} on node0", out.stderr
        wait(lambda: gone(pid), 10, "the process to go")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_ugro_forward_rides_the_daemons_connection_and_ends_with_the_command(config: Path) -> None:
    import urllib.request

    done = ugro(config, "submit", "--kind", "service", "--health-period", "0.5", "--nodes", "node0", "--",
                "python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1")
    assert done.returncode == 0, done.stderr
    sid = int(done.stdout)
    wait(lambda: job(config, sid).get("health") == "ready", 60, "the service to be ready")
    forward = subprocess.Popen([sys.executable, "-m", "ugro_tui", "forward", str(sid), "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = forward.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), forward.stderr.read() if forward.poll() is not None else url
        assert urllib.request.urlopen(url, timeout=10).status == 200
        assert "through the ugro daemon" in forward.stderr.readline()
    finally:
        forward.terminate()
        assert forward.wait(10) == 0
    port = int(url.rstrip("/").rsplit(":", 1)[1])

    def closed() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) != 0

    wait(closed, 10, "the daemon to close the forward")
    # The app's `f`: the same forward, held by a request of its own until the app closes it.
    from ugro_tui.core.daemon.client import Client, RemoteForward

    held = RemoteForward(Client(), sid)
    port = held.get_port()
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).status == 200
    held.close()
    wait(closed, 10, "the daemon to close the app's forward")
    assert ugro(config, "cancel", str(sid)).returncode == 0
    wait(lambda: job(config, sid)["state"] == "cancelled", 30, "the service to stop")


def test_a_full_disk_under_the_daemons_log_never_stops_dispatching(config: Path) -> None:
    """daemon.log on a device that is always full (/dev/full: every write fails with ENOSPC): the daemon still
    starts, dispatches and answers (every line it logs goes nowhere, and nothing raises)."""
    from ugro_tui.core.daemon import where

    log = where.log_path()
    log.parent.mkdir(parents=True, exist_ok=True)
    log.symlink_to("/dev/full")
    done = ugro(config, "submit", "--kind", "command", "--nnodes", "3", "--", "sh", "-c", "echo hi")
    assert done.returncode == 0, done.stderr
    wait(lambda: job(config, 1)["state"] == "succeeded", 60, "the job, dispatched with a full log")
    doc = status(config)
    assert doc is not None and all(t["restarts"] == 0 for t in doc["tasks"]), doc
    assert ugro(config, "submit", "--kind", "command", "--", "true").returncode == 0
    wait(lambda: job(config, 2)["state"] == "succeeded", 60, "a second job")
    assert status(config)["pid"] == doc["pid"]  # the same daemon all along


def test_checkpoints_list_prune_and_pull_go_through_the_daemon(config: Path, tmp_path: Path) -> None:
    """`ugro checkpoints` with a daemon running: listed, pruned and pulled over its connections, as without one."""
    import dataclasses

    from ugro_tui.core.jobs.model import JobSpec, JobState, NodeRun
    from ugro_tui.core.jobs.store import JobStore

    folder = config.parent / "lab-work" / "node0" / "ckpt"
    for step in (10, 20, 30):
        where = folder / f"step-{step:06d}"
        where.mkdir(parents=True)
        (where / "state.pt").write_bytes(bytes([step]) * 4096)
        (where / ".complete").touch()
    store = JobStore()
    [j] = store.submit([JobSpec("tiny", ("train.py",), checkpoint_dir="ckpt", keep_last=1)])
    store.move(j.id, JobState.STARTING, placement=(("node0", (0,)),))
    store.update(j.id, lambda x: dataclasses.replace(x, runs=(("node0", NodeRun(1, "/x", 1)),), ran_on=("node0",)))
    store.move(j.id, JobState.RUNNING)
    store.move(j.id, JobState.FAILED, reason="node0 exited 1")
    assert ugro(config, "daemon", "start").returncode == 0
    pid = status(config)["pid"]
    listed = ugro(config, "checkpoints", "1", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(c["step"] for c in json.loads(listed.stdout)["checkpoints"]) == [10, 20, 30]
    to = tmp_path / "pulled"
    pulled = ugro(config, "checkpoints", "1", "--pull", "20", "--to", str(to))
    assert pulled.returncode == 0, pulled.stderr
    assert (to / "node0" / "step-000020" / "state.pt").read_bytes() == bytes([20]) * 4096
    dry = ugro(config, "checkpoints", "1", "--prune", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would delete") == 2 and folder.joinpath("step-000010").exists()
    pruned = ugro(config, "checkpoints", "1", "--prune")
    assert pruned.returncode == 0 and pruned.stdout.count("deleted") == 2, pruned.stdout + pruned.stderr
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("step-")) == ["step-000030"]
    bad = ugro(config, "checkpoints", "1", "--pull", "10")
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "step 10" in bad.stderr, bad.stderr
    assert status(config)["pid"] == pid  # the same daemon did all of it


def test_a_client_of_another_uid_is_refused_by_its_credentials(config: Path) -> None:
    """Even with the folder and socket opened up (as a careless admin might), a peer of another uid gets a 403
    naming its uid: the daemon checks SO_PEERCRED, not only the file modes."""
    import shutil as sh

    from ugro_tui.core.daemon import where

    if os.geteuid() != 0 or sh.which("setpriv") is None:
        pytest.skip("needs root and setpriv to connect as another uid")
    assert ugro(config, "daemon", "start").returncode == 0
    sock = where.socket_path()
    opened = [(p, p.stat().st_mode & 0o777) for p in (*reversed(sock.parents[:2]), sock)]
    try:
        for path, _ in opened:
            path.chmod(0o777 if path == sock else 0o755)
        ask = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
               "s.sendall(b'GET /api/v1/daemon HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n'); "
               "print(s.makefile('rb').read().decode())")
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3",
                              "-c", ask, str(sock)], capture_output=True, text=True, timeout=30)
    finally:
        for path, mode in opened:
            path.chmod(mode)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HTTP/1.1 403") and "uid 65534 may not use this daemon" in out.stdout, out.stdout
    assert status(config) is not None  # and it goes on serving its own user
