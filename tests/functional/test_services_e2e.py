"""Services on the loopback cluster through `ugro submit --kind service`, `ugro scheduler`, `ugro services` and
`ugro forward`: real servers (examples/serve_tiny.py with torch, Python's http.server), real probes over SSH."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import free_ports, private_lab, processes_in
from ..helpers import host, job, job_processes, needs_torch, ugro, wait

pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "examples" / "serve_tiny.py")
HEAD = str(ROOT / "tests" / "fixtures" / "jobs" / "svc_head.py")
FAST = ("--health-period", "0.5", "--health-timeout", "2")


@pytest.fixture
def config(lab: LoopbackCluster, tmp_path: Path):
    with private_lab(lab, tmp_path) as path:
        first = free_ports(10)
        path.write_text(re.sub(r"service_ports = \[.*\]", f"service_ports = [{first}, {first + 9}]", path.read_text()))
        sched = subprocess.Popen([sys.executable, "-m", "ugro_tui", "scheduler", "--config", str(path)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            yield path
        finally:
            sched.kill()
            sched.wait()


def submit(config: Path, *args: str) -> int:
    done = ugro(config, "submit", "--kind", "service", *args)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[0])


def alive(config: Path, job_id: int) -> list[int]:
    """The job's live processes in this test's lab (another test's job 1 may still be ending in an earlier lab)."""
    return job_processes(job_id, under=config.parent / "lab-work")


def test_serve_tiny_is_ready_only_once_healthy_answers_through_forward_and_comes_back_when_killed(
        config: Path, tmp_path: Path) -> None:
    needs_torch()
    sid = submit(config, "--health", "/health", *FAST, "--health-initial-delay", "120", "--name", "tiny", "--",
                 "{python}", TINY, "--port", "{port}", "--load-seconds", "2")
    # The process is up before the service is ready: starting, while /health answers 503.
    wait(lambda: job(config, sid)["service"] and any("HTTP 503" in p[3] for p in job(config, sid)["service"]["probes"]),
         90, "a probe that sees the server loading")
    seen = job(config, sid)
    assert seen["state"] == "running" and seen["health"] == "starting" and alive(config, sid)
    wait(lambda: job(config, sid)["health"] == "ready", 90, "the service to be ready")
    ready = job(config, sid)
    assert ready["endpoint"] == f"node0:{ready['service']['port']}" and ready["restarts"] == 0
    assert ready["service"]["probes"][-1][1] is True
    listed = json.loads(ugro(config, "services", "--json").stdout)["services"]
    assert [(s["id"], s["health"], s["endpoint"]) for s in listed] == [(sid, "ready", ready["endpoint"])]

    forward = subprocess.Popen([sys.executable, "-m", "ugro_tui", "forward", str(sid), "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = forward.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:"), url
        request = urllib.request.Request(url + "v1/completions", data=b'{"prompt": "the queue ", "max_tokens": 12}',
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=20) as answer:
            body = json.loads(answer.read())
        assert body["object"] == "text_completion" and body["model"] == "serve-tiny"
        assert len(body["choices"][0]["text"]) == 12
    finally:
        forward.terminate()
        assert forward.wait(10) == 0

    for pid in alive(config, sid):  # the server dies: its service restarts by itself (on-failure)
        subprocess.run(["kill", "-9", str(pid)], check=False)
    wait(lambda: job(config, sid)["restarts"] == 1 and job(config, sid)["health"] == "ready", 120,
         "the service to come back ready after a restart")
    back = job(config, sid)
    assert back["attempt"] == 2 and back["state"] == "running"
    # Restarted in place: the same GPU (never given up meanwhile) and the same port, so a forward finds it again.
    assert (back["placement"], back["endpoint"]) == (ready["placement"], ready["endpoint"])

    assert ugro(config, "cancel", str(sid)).returncode == 0
    wait(lambda: job(config, sid)["state"] == "cancelled", 30, "the cancel")
    wait(lambda: not alive(config, sid) and not processes_in(tmp_path / "lab-work"), 10, "every process of it to end")


def test_restart_never_fails_with_the_exit_and_a_second_service_cannot_take_its_port(config: Path) -> None:
    first = submit(config, "--restart", "never", *FAST, "--nodes", "node1", "--port", str(_port(config, 5)), "--",
                   "{python}", "-m", "http.server", "{port}", "--bind", "127.0.0.1")
    wait(lambda: job(config, first)["health"] == "ready", 60, "the TCP probe to pass")
    # The same fixed port on the same node: refused at submit, nothing queued.
    def queued() -> list[tuple[int, str]]:  # what is queued, not the running service's probes, which move on
        return [(j["id"], j["state"]) for j in json.loads(ugro(config, "queue", "--json").stdout)["jobs"]]

    before = queued()
    taken = ugro(config, "submit", "--kind", "service", "--nodes", "node1", "--port", str(_port(config, 5)), "--",
                 "sleep", "1")
    assert taken.returncode == 2 and f"is held on node1 by service job {first}" in taken.stderr, taken.stderr
    assert queued() == before
    for pid in alive(config, first):
        subprocess.run(["kill", "-9", str(pid)], check=False)
    wait(lambda: job(config, first)["state"] == "failed", 30, "the service to fail")
    failed = job(config, first)
    assert "exited" in failed["reason"] and "restart policy never" in failed["reason"], failed["reason"]
    assert failed["restarts"] == 0


def test_a_service_that_never_gets_healthy_fails_after_its_initial_delay_with_the_last_probe_error(
        config: Path) -> None:
    sid = submit(config, "--health", "/ready", *FAST, "--health-initial-delay", "3", "--", "{python}", "-m",
                 "http.server", "{port}", "--bind", "127.0.0.1")
    took = wait(lambda: job(config, sid)["state"] == "failed", 60, "the service to give up")
    failed = job(config, sid)
    assert failed["reason"].startswith("never became healthy within 3s (last probe: GET /ready: HTTP 404"), \
        failed["reason"]
    assert took < 30 and not alive(config, sid)  # failed: its processes were stopped (KILLed after a grace) first


def test_two_roles_on_three_nodes_the_head_gets_and_reaches_every_worker(config: Path, tmp_path: Path) -> None:
    sid = submit(config, "--nnodes", "3", "--health", "/health", *FAST,
                 "--worker-command", "{python} -m http.server {port} --bind {host}", "--",
                 "{python}", HEAD, "{port}", "{workers}")
    wait(lambda: job(config, sid)["health"] == "ready", 90, "the head to be ready")
    ready = job(config, sid)
    head, *workers = list(ready["placement"])
    hosts = {"node0": host(2), "node1": host(3), "node2": host(4)}
    wanted = [f"{hosts[n]}:{ready['service']['workers'][n]}" for n in workers]
    log = ugro(config, "logs", str(sid), "--node", head).stdout
    for address in wanted:
        assert f"reached {address} HTTP 200" in log, log
    ports = {ready["service"]["port"], *ready["service"]["workers"].values()}
    assert len(ports) == 3  # a port each: on a loopback lab the nodes share one machine
    assert ugro(config, "cancel", str(sid)).returncode == 0
    wait(lambda: job(config, sid)["state"] == "cancelled", 30, "the cancel")
    wait(lambda: not alive(config, sid), 10, "every role on every node to stop")
    ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
    assert str(tmp_path) not in ps and not any(f"http.server {p}" in ps for p in ports), ps


@pytest.mark.parametrize("args, said", [
    (["--port", "0"], "expected a port number 1-65535, got '0'"),
    (["--port", "70000"], "expected a port number 1-65535, got '70000'"),
    (["--health", "health"], "health: expected a URL path that starts with /, got 'health'"),
    (["--health-initial-delay", "-5"], "--health-initial-delay: expected 0 or more, got -5"),
    (["--restart", "sometimes"], "invalid choice: 'sometimes'"),
    (["--set", "restart=sometimes", "--template", "serve-tiny"], "restart: expected never, on-failure, always"),
    (["--kind", "torchrun", "--health", "/h"], "health: only a service has one (--kind service)"),
    (["--worker-command", "rpc-server"], "worker_command: workers run on the other nodes; give --nnodes 2 or more"),
])
def test_bad_service_input_is_one_line_exit_2_and_nothing_queued(config: Path, args: list[str], said: str) -> None:
    kind = [] if "--kind" in args or "--template" in args else ["--kind", "service"]
    done = ugro(config, "submit", *kind, *args, *([] if "--template" in args else ["--", "sleep", "1"]))
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert json.loads(ugro(config, "queue", "--json").stdout)["jobs"] == []


def _port(config: Path, offset: int) -> int:
    text = config.read_text()
    return int(text.split("service_ports = [", 1)[1].split(",", 1)[0]) + offset


def test_a_worker_that_exits_at_once_fails_the_start_without_waiting_out_the_initial_delay(config: Path) -> None:
    sid = submit(config, "--nnodes", "2", "--restart", "never", "--health-initial-delay", "300",
                 "--worker-command", "sh -c 'echo no model here; exit 3' {port}", "--", "sleep", "600")
    took = wait(lambda: job(config, sid)["state"] == "failed", 60, "the service to fail")
    failed = job(config, sid)
    assert "exited before it accepted connections on port" in failed["reason"], failed["reason"]
    assert took < 30 and not alive(config, sid)
