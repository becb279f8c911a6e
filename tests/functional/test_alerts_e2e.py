"""Events from a real dispatcher over the loopback cluster: the notify command runs once per event, with the event
in its environment and never through a shell, also when the dispatcher is killed and started again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import LAB_SIM, run_ugro

RECORD = """import json, os, sys
line = json.dumps({k: v for k, v in os.environ.items() if k.startswith("UGRO_")}) + "\\n"
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
os.write(fd, line.encode())
"""


def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def delivered() -> list[str]:
    path = Path(os.environ["XDG_STATE_HOME"]) / "ugro" / "events.state.json"
    try:
        return json.loads(path.read_text())["delivered"]
    except (OSError, ValueError):
        return []


def test_notify_command_runs_once_per_event_across_a_dispatcher_restart(lab: LoopbackCluster, tmp_path: Path) -> None:
    script, record = tmp_path / "record.py", tmp_path / "notified.jsonl"
    script.write_text(RECORD)
    config = tmp_path / "cluster.toml"
    config.write_text(lab.cluster_toml(sim=LAB_SIM, poll_interval=0.5)
                      + f'\n[alerts]\nnotify_command = "{sys.executable} {script} {record}"\n')
    name = "n$(touch pwned);`id`"
    first = run_ugro("submit", "--config", str(config), "--kind", "command", "--name", name, "--", "true")
    second = run_ugro("submit", "--config", str(config), "--kind", "command", "--", "sleep", "4")
    assert (first.stdout, second.stdout) == ("1\n", "2\n")
    scheduler = subprocess.Popen([sys.executable, "-m", "ugro_tui", "scheduler", "--config", str(config)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        until(lambda: {"job-started:2:1", "job-succeeded:1:1"} <= set(delivered()), 60, "job 2's start delivered")
    finally:
        scheduler.send_signal(signal.SIGKILL)  # job 2 goes on running without a dispatcher, and ends
        scheduler.wait(10)
    again = run_ugro("scheduler", "--config", str(config), "--until-idle", timeout=120)
    assert again.returncode == 0, again.stderr
    seen = [json.loads(line) for line in record.read_text().splitlines()]
    assert Counter((e["UGRO_EVENT"], e["UGRO_JOB_ID"]) for e in seen) == {
        ("job-started", "1"): 1, ("job-succeeded", "1"): 1, ("job-started", "2"): 1, ("job-succeeded", "2"): 1}
    ended = next(e for e in seen if e["UGRO_EVENT"] == "job-succeeded" and e["UGRO_JOB_ID"] == "1")
    assert ended["UGRO_JOB_NAME"] == name and ended["UGRO_NODE"] == ""
    assert ended["UGRO_MESSAGE"].startswith(f"job 1 ({name}) succeeded")
    assert ended["UGRO_EVENT_ID"] == "job-succeeded:1:1"
    assert not any(p.name == "pwned" for p in tmp_path.rglob("pwned")) and not Path("pwned").exists()
    listed = json.loads(run_ugro("events", "--json").stdout)["events"]
    assert [e["id"] for e in listed] == [e["UGRO_EVENT_ID"] for e in seen]
    table = run_ugro("events").stdout
    assert "job-succeeded" in table and "job 2 (sleep) succeeded" in table


def test_events_follow_prints_each_new_event_as_a_line() -> None:
    from ugro_tui.core.alerts.journal import Journal
    from ugro_tui.core.alerts.rules import Event

    follower = subprocess.Popen([sys.executable, "-m", "ugro_tui", "events", "--follow", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # it has read the (empty) journal and follows it
        Journal().add([Event("node-offline:gpu2:1", "node-offline", 1.0, "gpu2 is offline: refused", node="gpu2")])
        line = follower.stdout.readline()
        assert json.loads(line) == {"id": "node-offline:gpu2:1", "event": "node-offline", "t": 1.0,
                                    "message": "gpu2 is offline: refused", "job_id": None, "job_name": None,
                                    "node": "gpu2"}
    finally:
        follower.terminate()
        follower.wait(10)
