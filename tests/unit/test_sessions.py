"""Sessions without a node: their settings checks, placement on a chosen GPU and the reason that names them, the
ends the watch computes, an extension that a watch's save keeps, and the SSH config file ugro owns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ugro_tui.commands.session import parse_duration_min
from ugro_tui.config import Cluster, Node
from ugro_tui.core.jobs.model import Job, JobSpec, JobState, NodeRun, spec_type_problem
from ugro_tui.core.jobs.placement import FreeGpu, NodeCapacity, place
from ugro_tui.core.lifecycle import merge
from ugro_tui.core.sessions import shell
from ugro_tui.core.sessions.status import SessionStatus
from ugro_tui.core.sessions.watch import _stored, ending, fresh, reason_of
from ugro_tui.errors import UgroError, UsageError

T0 = 1_800_000_000.0


def session(**spec: object) -> Job:
    s = JobSpec("ob-session", ("session",), kind="session", **spec)  # type: ignore[arg-type]
    return Job(7, s, state=JobState.RUNNING, started_at=T0, placement=(("node0", (1,)),),
               runs=(("node0", NodeRun(pid=42, run_dir="~/ugro/runs/job-7-a1")),))


@pytest.mark.parametrize(("changes", "says"), [
    ({"hours": 0}, "hours: expected a number of hours above 0"),
    ({"hours": "2"}, "hours: expected a number of hours above 0"),
    ({"idle_stop_min": -1}, "idle_stop_min: expected a number of minutes above 0"),
    ({"gpu_indexes": (-1,)}, "gpu_indexes: expected GPU indexes"),
    ({"gpu_indexes": (True,)}, "gpu_indexes: expected GPU indexes"),
    ({"gpu_indexes": (0, 1)}, "gpu_indexes: names 2 GPUs; the job asks for 1"),
    ({"nnodes": 2}, "a session holds 1 or more GPUs on one node"),
    ({"gpus_per_node": 0}, "a session holds 1 or more GPUs on one node"),
])
def test_bad_session_settings_are_one_line(changes: dict, says: str) -> None:
    spec = dataclasses.replace(session().spec, **changes)
    assert (spec_type_problem(spec) or "").startswith(says)


def test_a_session_round_trips_through_json_and_damage_reads_as_none() -> None:
    job = dataclasses.replace(session(gpu_indexes=(1,)), session=SessionStatus(T0 + 9, T0 + 3, 2, "idle"))
    again = Job.from_json(job.to_json())
    assert again.session == job.session and again.spec.gpu_indexes == (1,)
    assert SessionStatus.from_json({"ends_at": "soon"}) is None and SessionStatus.from_json([1]) is None


def test_idle_stop_takes_minutes_or_a_unit() -> None:
    assert parse_duration_min("90") == 90 and parse_duration_min("30s") == 0.5 and parse_duration_min("2h") == 120
    for bad in ("abc", "0", "-5m", "s", "nan"):
        with pytest.raises(UsageError):
            parse_duration_min(bad)


def test_a_session_on_a_chosen_gpu_and_the_reason_that_names_it() -> None:
    nodes = [NodeCapacity("node0", (), (FreeGpu(0, 8000), FreeGpu(1, 8000)), 2, 8192)]
    chosen = Job(1, JobSpec("s", ("session",), kind="session", nodes=("node0",), gpu_indexes=(1,)))
    [d] = place([chosen], nodes, now=0.0)
    assert d.placement == (("node0", (1,)),)
    held = [NodeCapacity("node0", (), (FreeGpu(0, 8000),), 2, 8192, claims=((1, "held by session 1 (s)"),))]
    whole = Job(2, JobSpec("j", ("x.py",), gpus_per_node=2))
    on_one = Job(3, JobSpec("k", ("x.py",), gpu_indexes=(1,)))
    reasons = {d.job_id: d.reason for d in place([whole, on_one], held, now=0.0)}
    assert reasons[2].endswith("; node0:1 is held by session 1 (s)") and reasons[3].endswith("session 1 (s)")
    never = Job(4, JobSpec("s", ("session",), kind="session", gpu_indexes=(5,)))
    [d] = place([never], held, now=0.0)
    assert d.reason.startswith("can never fit on this cluster")


def test_the_first_end_wins_and_the_watch_keeps_an_extension_made_meanwhile() -> None:
    job = session(hours=2, idle_stop_min=30)
    assert fresh(job) == SessionStatus(T0 + 7200, T0)
    which, left, why = ending(job, T0 + 600)
    assert (which, left) == ("idle", 1200) and why.startswith("given back: idle for 30 min")
    busy = dataclasses.replace(job, session=SessionStatus(T0 + 7200, T0 + 6000))
    which, left, why = ending(busy, T0 + 6600)
    assert (which, left) == ("time", 600) and "ugro session extend 7 --hours N" in why
    # The watch saw the old end and decided to stop it; the user extended it meanwhile: the extension stands.
    extended = dataclasses.replace(job, session=SessionStatus(T0 + 9 * 3600, T0 + 7100))
    saved = _stored(extended, SessionStatus(T0 + 7200, T0 + 6000, shells=1, warned="time"), why)
    assert saved.session == SessionStatus(T0 + 9 * 3600, T0 + 7100, shells=1) and not saved.stop
    # A follow's save (lifecycle.merge) never takes the session status back to what it read.
    assert merge(extended, job).session == extended.session
    assert reason_of(busy, T0 + 6600).startswith("session: 0 shells attached · idle 10 min · given back in 10 min")


def test_the_ssh_config_file_is_ugros_alone(tmp_path: Path) -> None:
    cluster = Cluster(known_hosts=str(tmp_path / "known_hosts"), nodes=(
        Node("node0", "127.0.0.2", port=2202, user="ob", identity_file=str(tmp_path / "key")),))
    path = tmp_path / "config.d" / "ugro"
    shell.add_entry(cluster, session(), path)
    shell.add_entry(cluster, dataclasses.replace(session(), id=8), path)
    text = path.read_text()
    assert text.startswith(shell.HEADER) and "Host ugro-session-7\n    HostName 127.0.0.2\n    Port 2202" in text
    assert "StrictHostKeyChecking yes" in text and "RemoteCommand [ -r " in text
    assert oct(path.stat().st_mode)[-3:] == "600"
    assert shell.remove_entries({8}, path) == [7]
    assert "ugro-session-7" not in path.read_text() and "ugro-session-8" in path.read_text()
    foreign = tmp_path / "theirs"
    foreign.write_text("Host mine\n    HostName 127.0.0.9\n")
    with pytest.raises(UgroError, match="ugro did not write it"):
        shell.add_entry(cluster, session(), foreign)
    assert shell.remove_entries(set(), foreign) == [] and foreign.read_text() == "Host mine\n    HostName 127.0.0.9\n"
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host x\n    User y\n")
    assert not shell.included(ssh_config, path)
    shell.add_include(ssh_config, path)
    assert shell.included(ssh_config, path) and ssh_config.read_text().startswith(f"Include {path}\n")


def test_the_shell_command_quotes_the_run_dir_and_refuses_a_session_not_placed() -> None:
    job = dataclasses.replace(session(), runs=(("node0", NodeRun(pid=1, run_dir="/w/it's here")),))
    command = shell.remote_shell(job)
    assert "'/w/it'\"'\"'s here'/session.sh" in command and command.endswith('exec "${SHELL:-/bin/sh}" -i')
    with pytest.raises(UgroError, match="holds no GPUs yet"):
        shell.remote_shell(dataclasses.replace(job, runs=()))


def test_a_session_through_a_job_file_or_the_api_and_not_on_slurm() -> None:
    from ugro_tui.core.jobs.actions import ACTIONS
    from ugro_tui.core.jobs.request import Request, spec_from_request

    cluster = Cluster(nodes=(Node("node0", "127.0.0.2"),))
    spec, _ = spec_from_request(Request(), cluster, {"kind": "session", "hours": 2, "gpu_indexes": [0],
                                                     "jupyter": True, "nodes": ["node0"]})
    assert (spec.command, spec.hours, spec.gpu_indexes, spec.jupyter) == (("session",), 2, (0,), True)
    with pytest.raises(UsageError, match="hours: expected a number of hours above 0"):
        spec_from_request(Request(), cluster, {"kind": "session", "hours": "x"})
    with pytest.raises(UsageError, match="jupyter: only a session runs JupyterLab"):
        spec_from_request(Request(), cluster, {"command": ["x.py"], "jupyter": True})
    slurm = dataclasses.replace(cluster, backend="slurm")
    with pytest.raises(UsageError, match="sessions run on the SSH backend only"):
        spec_from_request(Request(), slurm, {"kind": "session"})
    assert "end" in ACTIONS  # the API's POST /api/v1/jobs/ID/end, the Jobs view's ctrl+d
