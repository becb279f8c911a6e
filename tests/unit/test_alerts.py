"""Alert rules on recorded sample sequences, the event journal, and the notify command's environment."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from ugro_tui.core.alerts.journal import KEEP, Journal, read_events
from ugro_tui.core.alerts.rules import HOT_FOR, Event, Rules, job_events
from ugro_tui.core.alerts.service import notify_env, run_notify
from ugro_tui.core.jobs.model import Job, JobSpec, JobState
from ugro_tui.core.telemetry.model import ClusterState, NodeState


def cluster(*names: str) -> ClusterState:
    return ClusterState([(n, f"{n}.lab") for n in names])


def sample(state: ClusterState, node: str, t: float, temp: float | None = 40.0, util: float | None = 0.0) -> None:
    state.nodes[node].apply_sample({"t": t, "gpus": [{"index": 0, "name": "RTX 4070", "temperature_c": temp,
                                                       "utilization_pct": util}]}, t)


def hot_run(temps: list[float], every: float = 5.0, limit: float = 85.0) -> list[tuple[float, str]]:
    """Feed one GPU's temperatures, one sample every `every` seconds; (time, kind) of each event."""
    state, rules, out = cluster("gpu1"), Rules(gpu_hot_c=limit), []
    for i, temp in enumerate(temps):
        t = 1000.0 + i * every
        sample(state, "gpu1", t, temp=temp)
        out += [(e.t - 1000.0, e.kind) for e in rules.gpus(state, [], t)]
    return out


def test_hot_needs_thirty_seconds_at_the_limit() -> None:
    assert hot_run([86.0] * 6) == []                     # 25 s: not yet
    assert hot_run([86.0] * 7) == [(HOT_FOR, "gpu-hot")]  # 30 s: once
    assert hot_run([86.0] * 20) == [(HOT_FOR, "gpu-hot")]  # and only once while it stays hot
    assert hot_run([86.0] * 5 + [80.0] + [86.0] * 5) == []  # a cool spell starts the count again


def test_a_gpu_between_84_and_86_does_not_flap() -> None:
    wobble = [84.0, 86.0, 85.0, 84.0, 86.0, 85.5, 84.5, 86.0] * 10  # around the limit for 400 s
    events = hot_run([86.0] * 7 + wobble)
    assert events == [(HOT_FOR, "gpu-hot")]
    # Only below limit - 3 °C does the alert clear; the next hot spell is a new event.
    again = hot_run([86.0] * 7 + [81.0] + [86.0] * 7)
    assert [k for _, k in again] == ["gpu-hot", "gpu-hot"]


def test_idle_only_for_gpus_a_job_holds() -> None:
    state, rules = cluster("gpu1", "gpu2"), Rules(idle_minutes=1)
    found = []
    for i in range(14):  # 65 s at 2% on both GPUs; only gpu1's is held by job 7
        t = 2000.0 + i * 5
        sample(state, "gpu1", t, util=2.0)
        sample(state, "gpu2", t, util=2.0)
        found += rules.gpus(state, [(7, "gpu1", 0, "train")], t)
    assert [(e.kind, e.node, e.job_id) for e in found] == [("gpu-idle", "gpu1", 7)]
    assert "job 7 (train) holds gpu1 GPU 0 at 2%" in found[0].message
    # Busy again above 10%, then idle for another minute: a new event; 5-10% neither clears nor counts.
    later = []
    for i, util in enumerate([50.0] + [7.0] * 3 + [1.0] * 13):
        t = 3000.0 + i * 5
        sample(state, "gpu1", t, util=util)
        later += rules.gpus(state, [(7, "gpu1", 0, "train")], t)
    assert [e.kind for e in later] == ["gpu-idle"]


def test_nodes_go_offline_only_after_being_online() -> None:
    state, rules = cluster("gpu1"), Rules()
    node = state.nodes["gpu1"]
    node.state, node.error = NodeState.OFFLINE, "connection refused"
    assert rules.nodes(state, 1.0) == []  # never came up: the doctor's business, not an alert
    sample(state, "gpu1", 2.0)
    assert rules.nodes(state, 2.0) == []
    node.state = NodeState.STALE
    assert rules.nodes(state, 3.0) == []  # stale is not offline
    node.state, node.error = NodeState.OFFLINE, "connection refused"
    [off] = rules.nodes(state, 4.0)
    assert (off.kind, off.message) == ("node-offline", "gpu1 is offline: connection refused")
    assert rules.nodes(state, 5.0) == []
    sample(state, "gpu1", 6.0)
    assert [e.kind for e in rules.nodes(state, 6.0)] == ["node-online"]


def test_job_events_have_stable_ids() -> None:
    job = Job(3, JobSpec("train", ("t.py",)), JobState.RUNNING, started_at=10.0, attempt=1,
              placement=(("gpu1", (0,)),))
    assert [e.id for e in job_events(job, 20.0)] == ["job-started:3:1"]
    done = dataclasses.replace(job, state=JobState.FAILED, finished_at=30.0, reason="gpu1 exited 1")
    started, failed = job_events(done, 40.0)
    assert started.id == "job-started:3:1" and failed.id == "job-failed:3:1" and failed.t == 30.0
    assert failed.message == "job 3 (train) failed: gpu1 exited 1" and failed.bad
    pruned = dataclasses.replace(job, state=JobState.PRUNED, finished_at=30.0, reason="pruned")
    assert job_events(pruned, 40.0)[1].kind == "job-cancelled"
    assert job_events(dataclasses.replace(job, state=JobState.QUEUED, started_at=None), 1.0) == []


def event(i: int) -> Event:
    return Event(f"e{i}", "job-started", float(i), f"job {i} started", i, f"j{i}")


def test_the_journal_deduplicates_keeps_the_last_thousand_and_remembers_delivery(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    assert [e.id for e in journal.add([event(1), event(2)])] == ["e1", "e2"]
    assert journal.add([event(2)]) == []
    journal.delivered(event(1))
    again = Journal(tmp_path)  # a restarted dispatcher
    assert [e.id for e in again.undelivered()] == ["e2"] and again.add([event(1)]) == []
    again.add([event(i) for i in range(3, KEEP + 300)])
    events, _ = read_events(tmp_path / "events.jsonl")
    assert len(events) <= KEEP + KEEP // 5 and events[-1].id == f"e{KEEP + 299}"
    # A torn last line (a crash mid-write) is left for later, never misread.
    with open(tmp_path / "events.jsonl", "a") as f:
        f.write('{"id": "torn", "ev')
    events, offset = read_events(tmp_path / "events.jsonl")
    assert events[-1].id == f"e{KEEP + 299}" and offset < (tmp_path / "events.jsonl").stat().st_size
    (tmp_path / "events.state.json").write_text("not json")
    assert Journal(tmp_path).watching is None  # a damaged state file starts over, quietly


def test_notify_runs_without_a_shell_and_logs_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UGRO_AUTOSTART")  # the tests' own setting: not one the notify command is given
    out = tmp_path / "env.json"
    script = tmp_path / "record.py"
    script.write_text("import json, os, sys\n"
                      "mine = {k: v for k, v in os.environ.items() if k.startswith('UGRO_')}\n"
                      f"json.dump(mine, open({str(out)!r}, 'w'))\n")
    evil = Event("job-failed:1:0", "job-failed", 1.0, "job 1 ($(touch pwned)) failed", 1, "$(touch pwned);`id`",
                 "gpu1")
    assert run_notify(f"{sys.executable} {script}", evil, tmp_path / "notify.log")
    env = json.loads(out.read_text())
    assert env == notify_env(evil) and env["UGRO_JOB_NAME"] == "$(touch pwned);`id`"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert not run_notify("/nonexistent/notify", evil, tmp_path / "notify.log")
    assert not run_notify(f"{sys.executable} -c 'import sys; sys.exit(3)'", evil, tmp_path / "notify.log")
    log = (tmp_path / "notify.log").read_text().splitlines()
    assert len(log) == 2 and "job-failed:1:0" in log[0] and "exit 3" in log[1]


@pytest.mark.parametrize(("alerts", "words"), [
    ('notify_command = 3', "alerts.notify_command: expected a command line"),
    ('gpu_hot_c = 200', "alerts.gpu_hot_c: expected degrees Celsius from 40 to 120"),
    ('idle_minutes = -1', "alerts.idle_minutes: expected minutes from 0.1 to 1440"),
    ('bell = "yes"', "alerts.bell: expected true or false"),
    ('hot = 80', 'alerts.hot: unknown key'),
])
def test_bad_alert_settings_name_the_field(alerts: str, words: str) -> None:
    from ugro_tui.errors import ConfigError

    from ..conftest import cluster_from

    with pytest.raises(ConfigError) as err:
        cluster_from(f'[alerts]\n{alerts}\n[[nodes]]\nname = "a"\nhost = "127.0.0.2"\n')
    assert words in str(err.value)
