"""Real faults on a loopback lab: a node killed, frozen or removed, a dispatcher SIGKILLed; the queue goes on."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import time
from pathlib import Path

import pytest

from ..helpers import job, ugro, wait
from .conftest import (
    INTERVAL,
    NODE_LOST_AFTER,
    freeze,
    job_processes,
    kill_job_processes,
    scheduler,
    thaw,
    write_config,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]
FOREVER = "while :; do echo tick; sleep 0.2; done"


def submit(config: Path, *args: str) -> int:
    done = ugro(config, "submit", "--kind", "command", "--gpus-per-node", "0", *args)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_a_killed_node_fails_its_job_fast_and_the_rest_goes_on(lab3, tmp_path: Path) -> None:
    config = write_config(lab3, tmp_path / "cluster.toml")
    sched = scheduler(config)
    try:
        first = submit(config, "--nnodes", "2", "--nodes", "node0,node1", "--", "sh", "-c", FOREVER)
        wait(lambda: job(config, first)["state"] == "running" and job_processes(first, "node1"), 60, "the job")
        lab3.kill_node(1)  # the machine is gone: its sshd, and what it ran
        kill_job_processes(first, "node1")
        took = wait(lambda: job(config, first)["state"] == "failed", 60, "the job to fail")
        j = job(config, first)
        assert "node node1 lost (unreachable since" in j["reason"], j["reason"]
        assert took <= NODE_LOST_AFTER + 4 * INTERVAL + 5, took  # telemetry notices within a few intervals
        wait(lambda: not job_processes(first, "node0"), 10, "node0's part to be torn down")
        later = submit(config, "--nodes", "node2", "--", "sh", "-c", "echo done")
        wait(lambda: job(config, later)["state"] == "succeeded", 30, "a later job on a healthy node")
    finally:
        sched.kill()
        sched.wait()


def test_a_frozen_node_delays_only_its_own_jobs(lab3, tmp_path: Path) -> None:
    # The freeze must not count as a loss here (a loaded machine stretches it): this test is about the delay.
    config = write_config(lab3, tmp_path / "cluster.toml")
    config.write_text(config.read_text().replace(f"node_lost_after = {NODE_LOST_AFTER}", "node_lost_after = 300"))
    sched = scheduler(config)
    try:
        stuck = submit(config, "--nodes", "node1", "--", "sh", "-c", FOREVER)
        wait(lambda: job(config, stuck)["state"] == "running", 60, "the job on node1")
        freeze(lab3, 1)
        started = time.monotonic()
        quick = submit(config, "--nodes", "node2", "--", "sh", "-c", "sleep 1")
        wait(lambda: job(config, quick)["state"] in ("running", "succeeded"), 30, "the job on node2 to start")
        delay = time.monotonic() - started
        wait(lambda: job(config, quick)["state"] == "succeeded", 30, "the job on node2 to finish")
        assert delay <= 2 * INTERVAL + 2.5, f"a healthy node's job waited {delay:.1f}s for a frozen one"
        thaw(lab3, 1)
        assert ugro(config, "cancel", str(stuck)).returncode == 0
        wait(lambda: job(config, stuck)["state"] == "cancelled", 60, "the cancel after the thaw")
    finally:
        thaw(lab3, 1)
        sched.kill()
        sched.wait()


def test_cancel_with_a_node_down_completes_and_sweeps_it_when_back(lab3, tmp_path: Path) -> None:
    config = write_config(lab3, tmp_path / "cluster.toml").read_text()
    config_path = tmp_path / "cluster.toml"
    config_path.write_text(config.replace(f"node_lost_after = {NODE_LOST_AFTER}", "node_lost_after = 300"))
    sched = scheduler(config_path)
    try:
        first = submit(config_path, "--nnodes", "2", "--nodes", "node0,node1", "--", "sh", "-c", FOREVER)
        wait(lambda: job(config_path, first)["state"] == "running" and job_processes(first, "node1"), 60, "the job")
        lab3.kill_node(1)  # its sshd only: the job's processes there run on, out of reach
        assert ugro(config_path, "cancel", str(first)).returncode == 0
        wait(lambda: job(config_path, first)["state"] == "cancelled", 60, "the cancel")
        assert "node1 unreachable" in job(config_path, first)["reason"]
        assert not job_processes(first, "node0") and job_processes(first, "node1")
        lab3.restart_node(1)
        wait(lambda: not job_processes(first, "node1"), 60, "node1's leftovers to be swept once it is back")
    finally:
        sched.kill()
        sched.wait()


def test_a_node_removed_while_its_job_runs(lab3, tmp_path: Path) -> None:
    config = write_config(lab3, tmp_path / "cluster.toml")
    sched = scheduler(config)
    try:
        doomed = submit(config, "--nodes", "node1", "--", "sh", "-c", FOREVER)
        wait(lambda: job(config, doomed)["state"] == "running", 60, "the job on node1")
    finally:
        sched.kill()
        sched.wait()
    write_config(lab3, config, drop="node1")
    other = submit(config, "--nodes", "node0", "--", "sh", "-c", "echo fine")
    done = ugro(config, "scheduler", "--until-idle", timeout=120)
    assert done.returncode == 0, done.stderr
    assert job(config, doomed)["state"] == "failed" and "no longer in" in job(config, doomed)["reason"]
    assert job(config, other)["state"] == "succeeded"


def test_the_dispatcher_killed_at_random_moments_loses_no_job(lab3, tmp_path: Path) -> None:
    """SIGKILL the scheduler again and again while it launches and follows jobs; every job still ends well."""
    config = write_config(lab3, tmp_path / "cluster.toml")
    ids = [submit(config, "--nnodes", "2", "--max-retries", "2", "--", "sh", "-c", "sleep 0.5; echo ok")
           for _ in range(4)]
    rng = random.Random(7)
    for _ in range(6):
        sched = scheduler(config)
        time.sleep(rng.uniform(0.3, 2.5))
        sched.send_signal(signal.SIGKILL)
        sched.wait()
    done = ugro(config, "scheduler", "--until-idle", timeout=180)
    assert done.returncode == 0, done.stderr
    states = {i: job(config, i)["state"] for i in ids}
    assert set(states.values()) == {"succeeded"}, {i: (job(config, i)["state"], job(config, i)["reason"])
                                                   for i in ids}
    assert not job_processes()


def test_each_attempt_keeps_its_own_logs(lab3, tmp_path: Path) -> None:
    config = write_config(lab3, tmp_path / "cluster.toml")
    marker = tmp_path / "tried"
    script = f"if [ -e {marker} ]; then echo second try; else touch {marker}; echo first try; exit 3; fi"
    first = submit(config, "--nodes", "node0", "--max-retries", "1", "--", "sh", "-c", script)
    done = ugro(config, "scheduler", "--until-idle", timeout=120)
    assert done.returncode == 0, done.stderr
    j = job(config, first)
    assert j["state"] == "succeeded" and j["attempt"] == 2 and j["diagnosis"] is None
    assert "second try" in ugro(config, "logs", str(first)).stdout
    earlier = ugro(config, "logs", str(first), "--attempt", "1").stdout
    assert "first try" in earlier and "second try" not in earlier
    every = ugro(config, "logs", str(first), "--attempt", "all").stdout
    assert every.index("=== job 1 attempt 1 ===") < every.index("first try") < every.index(
        "=== job 1 attempt 2 ===") < every.index("second try")
    bad = ugro(config, "logs", str(first), "--attempt", "3")
    assert bad.returncode == 2 and "attempts 1-2" in bad.stderr


def test_a_running_scheduler_follows_a_node_removed_from_the_file(lab3, tmp_path: Path) -> None:
    config = write_config(lab3, tmp_path / "cluster.toml")
    sched = scheduler(config)
    try:
        doomed = submit(config, "--nodes", "node1", "--", "sh", "-c", FOREVER)
        wait(lambda: job(config, doomed)["state"] == "running", 60, "the job on node1")
        removed = ugro(config, "nodes", "remove", "node1")
        assert removed.returncode == 0 and f"job {doomed}" in removed.stderr  # warned: a job runs there
        wait(lambda: job(config, doomed)["state"] == "failed", 60, "the job on the removed node to fail")
        assert "no longer in" in job(config, doomed)["reason"]
        later = submit(config, "--nnodes", "2", "--", "sh", "-c", "echo placed")
        wait(lambda: job(config, later)["state"] == "succeeded", 60, "a job placed on the nodes left")
        assert sorted(job(config, later)["placement"]) == ["node0", "node2"]
    finally:
        sched.kill()
        sched.wait()


def test_after_a_store_recovery_a_started_job_is_found_not_started_twice(lab3, tmp_path: Path) -> None:
    """active.json is damaged after a job started; the previous generation says it is queued. The dispatcher finds
    it running on its node and adopts it instead of starting a second copy."""
    from ugro_tui.core.jobs.store import JobStore

    config = write_config(lab3, tmp_path / "cluster.toml")
    first = submit(config, "--nodes", "node0", "--", "sh", "-c", FOREVER)
    store = JobStore()
    store.take_in()  # in active.json: the generation that says it is queued
    queued_generation = store.active_path.read_bytes()
    sched = scheduler(config)
    try:
        wait(lambda: job(config, first)["state"] == "running" and job_processes(first, "node0"), 60, "the job")
    finally:
        sched.kill()
        sched.wait()
    def loops() -> list[int]:  # the job's own shell loop (its `sleep`s come and go, even between two reads)
        out = []
        for pid in job_processes(first, "node0"):
            with contextlib.suppress(OSError):
                if b"while" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out.append(pid)
        return sorted(out)

    before = loops()
    assert len(before) == 1
    store.previous_path.write_bytes(queued_generation)
    store.active_path.write_bytes(store.active_path.read_bytes()[:30])  # damaged
    assert job(config, first)["state"] == "queued"  # recovered from the generation before the start
    sched = scheduler(config)
    try:
        wait(lambda: job(config, first)["state"] == "running", 60, "the job to be found running")
        assert "found on its nodes" in job(config, first)["reason"]
        time.sleep(2 * INTERVAL)
        assert loops() == before  # the same process: nothing started twice
        assert ugro(config, "cancel", str(first)).returncode == 0
        wait(lambda: job(config, first)["state"] == "cancelled" and not job_processes(first), 60, "the cancel")
    finally:
        sched.kill()
        sched.wait()


@pytest.mark.parametrize("fault", ["killed", "frozen"])
def test_a_service_whose_node_dies_is_unhealthy_then_restarts_where_it_fits(lab3, tmp_path: Path, fault) -> None:
    config = write_config(lab3, tmp_path / "cluster.toml")
    sched = scheduler(config)
    try:
        sid = submit(config, "--kind", "service", "--health-period", "0.5", "--health-timeout", "1",
                     "--nodes", "node0,node1", "--", "python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1")
        wait(lambda: job(config, sid).get("health") == "ready", 60, "the service to be ready")
        first = job(config, sid)
        node = next(iter(first["placement"]))
        index = int(node.removeprefix("node"))
        if fault == "killed":
            lab3.kill_node(index)  # the machine is gone: its sshd, and what it ran
            kill_job_processes(sid, node)
        else:
            freeze(lab3, index)  # its sshd stops answering; the server there may well be fine
        wait(lambda: job(config, sid)["restarts"] == 1, 60, "the service to be restarted")
        wait(lambda: job(config, sid).get("health") == "ready", 60, "the service to be ready again")
        back = job(config, sid)
        other = next(iter(back["placement"]))
        assert other != node and other in ("node0", "node1"), back
        said = [p[3] for p in back["service"]["probes"] if not p[1]]
        assert any(node in e for e in said), said  # the probe history says the node stopped answering
        happened = ugro(config, "events", "--json").stdout
        assert f"service-restarted:{sid}:1" in happened and f"service-ready:{sid}:2" in happened, \
            happened + json.dumps(job(config, sid))  # the job says why each restart came
    finally:
        sched.kill()
        sched.wait()


def test_a_two_role_service_survives_the_dispatcher_killed_while_launching_it(lab3, tmp_path: Path) -> None:
    """SIGKILL the scheduler again and again while it starts workers and head; in the end each role runs once."""
    config = write_config(lab3, tmp_path / "cluster.toml")
    head = str(Path(__file__).resolve().parents[1] / "fixtures" / "jobs" / "svc_head.py")
    sid = submit(config, "--kind", "service", "--nnodes", "2", "--health", "/health", "--health-period", "0.5",
                 "--worker-command", "python3 -m http.server {port} --bind {host}", "--",
                 "python3", head, "{port}", "{workers}")
    rng = random.Random(11)
    for _ in range(5):
        sched = scheduler(config)
        time.sleep(rng.uniform(0.5, 2.5))
        sched.send_signal(signal.SIGKILL)
        sched.wait()
    sched = scheduler(config)
    try:
        wait(lambda: job(config, sid).get("health") == "ready", 60, "the service to be ready")
        time.sleep(2)  # whatever a killed launch left would show up by now

        def roles() -> list[str]:
            found = []
            for pid in job_processes(sid):
                try:
                    args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if "http.server" in args or "svc_head.py" in args:
                    found.append("worker" if "http.server" in args else "head")
            return sorted(found)

        assert roles() == ["head", "worker"], (roles(), job(config, sid)["reason"])
        assert job(config, sid)["state"] == "running"
        assert ugro(config, "cancel", str(sid)).returncode == 0
        wait(lambda: job(config, sid)["state"] == "cancelled", 30, "the cancel")
        wait(lambda: not job_processes(sid), 10, "every process of the service to end")
    finally:
        sched.kill()
        sched.wait()


def test_a_node_lost_under_a_session_ends_it_with_that_reason(lab3, tmp_path: Path) -> None:
    config = write_config(lab3, tmp_path / "cluster.toml")
    sched = scheduler(config)
    try:
        wait(lambda: json.loads(ugro(config, "daemon", "status", "--json").stdout)["running"], 30,
             "the scheduler (the daemon in the foreground) to answer")
        done = ugro(config, "session", "--node", "node1", "--no-attach", timeout=60)
        assert done.returncode == 0, done.stderr
        sid = int(done.stderr.split("session ", 1)[1].split(":", 1)[0])
        wait(lambda: job_processes(sid, "node1"), 30, "the session's keeper")
        lab3.kill_node(1)  # the machine is gone: its sshd, and what it ran (a shell on it is gone anyway)
        kill_job_processes(sid, "node1")
        wait(lambda: job(config, sid)["state"] == "failed", 60, "the session to end")
        assert "node node1 lost (unreachable since" in job(config, sid)["reason"], job(config, sid)["reason"]
        later = ugro(config, "session", "--node", "node2", "--no-attach", timeout=60)
        assert later.returncode == 0, later.stderr  # the queue goes on
    finally:
        sched.kill()
        sched.wait()
