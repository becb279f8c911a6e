"""The queue's CLI contract, the dispatcher with a test double, and the scheduler over real SSH."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ugro_tui.core.jobs.dispatch_lock import DispatcherLock
from ugro_tui.core.jobs.dispatcher import Dispatcher, Launcher
from ugro_tui.core.jobs.model import Job, JobState, NodeRun, transition
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.telemetry.model import ClusterState

from ..helpers import job, jobs, ugro
from ..ui_states import LAB


@pytest.fixture
def lab_toml(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text('[[nodes]]\nname = "gpu-master"\nhost = "127.0.0.2"\nlabels = ["master"]\n'
                    '[[nodes]]\nname = "gpu1"\nhost = "127.0.0.3"\nlabels = ["worker"]\n')
    return path


def test_submit_prints_the_id_alone_and_queue_json_has_the_contract(lab_toml: Path) -> None:
    done = ugro(lab_toml, "submit", "--name", "t1", "--nnodes", "2", "--priority", "3", "--min-gpu-mem", "4",
                "--nodes", "gpu-master,worker", "--", "train.py", "--lr", "3e-4", "a b")
    assert (done.returncode, done.stdout) == (0, "1\n")
    assert ugro(lab_toml, "submit", "--hold", "--after", "1", "--kind", "command", "--", "echo", "hi").stdout == "2\n"
    out = json.loads(ugro(lab_toml, "queue", "--json").stdout)
    [j1, j2] = out["jobs"]
    assert {"id", "name", "state", "priority", "spec", "placement", "reason"} <= set(j1)
    assert j1["spec"]["command"] == ["train.py", "--lr", "3e-4", "a b"]  # the args as given
    assert (j1["id"], j1["name"], j1["state"], j1["priority"]) == (1, "t1", "queued", 3)
    assert j1["spec"]["nodes"] == ["gpu-master", "worker"] and j1["spec"]["min_gpu_mem_gb"] == 4.0
    assert (j2["state"], j2["spec"]["after"], j2["spec"]["kind"]) == ("held", [1], "command")
    assert [j["id"] for j in json.loads(ugro(lab_toml, "queue", "--json", "--state", "held").stdout)["jobs"]] == [2]


def test_show_json_prints_the_job_as_the_tests_read_it(lab_toml: Path) -> None:
    """The tests read jobs in their own process (helpers.job, helpers.jobs) with the code the commands run."""
    assert ugro(lab_toml, "submit", "--name", "t1", "--priority", "2", "--", "train.py").stdout == "1\n"
    assert ugro(lab_toml, "hold", "1").returncode == 0
    shown = json.loads(ugro(lab_toml, "show", "1", "--json").stdout)
    assert shown == job(lab_toml, 1)
    assert json.loads(ugro(lab_toml, "queue", "--json").stdout)["jobs"] == list(jobs(lab_toml).values())
    assert (shown["name"], shown["state"], [s["went"] for s in shown["states"]]) == ("t1", "held", ["queued → held"])


def test_job_toml_file_and_flags_override(lab_toml: Path, tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text('name = "from-file"\ncommand = ["train.py", "--epochs", "3"]\nnproc_per_node = 2\npriority = 1\n')
    assert ugro(lab_toml, "submit", "--file", str(job), "--priority", "7").returncode == 0
    [j] = json.loads(ugro(lab_toml, "queue", "--json").stdout)["jobs"]
    assert (j["name"], j["priority"], j["spec"]["nproc_per_node"], j["spec"]["gpus_per_node"]) == ("from-file", 7, 2, 2)


def test_state_verbs_and_their_errors(lab_toml: Path) -> None:
    for _ in range(3):
        ugro(lab_toml, "submit", "--", "x.py")
    assert ugro(lab_toml, "hold", "1", "2").returncode == 0
    assert ugro(lab_toml, "release", "2").returncode == 0
    assert ugro(lab_toml, "cancel", "3").returncode == 0
    states = {j["id"]: j["state"] for j in json.loads(ugro(lab_toml, "queue", "--json").stdout)["jobs"]}
    assert states == {1: "held", 2: "queued", 3: "cancelled"}
    assert ugro(lab_toml, "retry", "3").returncode == 0
    bad = ugro(lab_toml, "release", "2")
    assert bad.returncode == 2 and bad.stderr.strip() == "job 2 is queued; it cannot become queued"
    assert ugro(lab_toml, "retry", "2").returncode == 2
    missing = ugro(lab_toml, "show", "99")
    assert missing.returncode == 2 and "no job 99" in missing.stderr
    assert ugro(lab_toml, "cancel", "x7").returncode == 2
    assert "job 1: x.py  [held]" in ugro(lab_toml, "show", "1").stdout


@pytest.mark.parametrize(("args", "words"), [
    (["--nnodes", "3", "--", "x.py"], "only 2 allowed node"),
    (["--nodes", "gpu9", "--", "x.py"], "no node or label 'gpu9'"),
    (["--nnodes", "0", "--", "x.py"], "expected 1 or more"),
    (["--min-gpu-mem", "lots", "--", "x.py"], "expected a number of GB"),
    (["--env", "1A=b", "--", "x.py"], "expected NAME=VALUE"),
    (["--after", "5", "--", "x.py"], "--after: no job 5"),
    (["--kind", "bash", "--", "x"], "invalid choice"),
    ([], "give the script or command"),
])
def test_bad_submit_is_one_clear_line_exit_2(lab_toml: Path, args: list[str], words: str) -> None:
    done = ugro(lab_toml, "submit", *args)
    assert done.returncode == 2 and words in done.stderr and done.stdout == ""


class FakeLauncher(Launcher):
    """The test double of the launcher: records starts, finishes jobs when told."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[Job] = []
        self.exit: dict[int, int] = {}

    async def start(self, job: Job) -> Job:
        self.started.append(job)
        runs = tuple((n, NodeRun(pid=1000 + job.id)) for n, _ in job.placement)
        return transition(dataclasses.replace(job, runs=runs), JobState.RUNNING)

    async def poll(self, job: Job) -> Job:
        if job.id in self.exit:
            code = self.exit[job.id]
            return transition(job, JobState.SUCCEEDED if code == 0 else JobState.FAILED, reason=f"exit {code}")
        return job

    async def cancel(self, job: Job) -> Job:
        return transition(job, JobState.CANCELLED, reason="cancelled")


def online_lab() -> ClusterState:
    from ..ui_states import gpu

    state = ClusterState([(n.name, n.address) for n in LAB.nodes])
    for i, node in enumerate(state.nodes.values()):
        node.apply_sample({"t": 0, "gpus": [gpu(0, "RTX", 0, 300, 8192, 30, 10, 200),
                                            gpu(1, "RTX", 0, 300, 8192, 30, 10, 200)] if i < 2 else [
                               gpu(0, "RTX", 90, 7000, 8192, 70, 190, 200, procs=[(1, "ollie", "python", 6000)])]},
                          0)
    return state


async def test_dispatcher_places_follows_and_settles_dependencies(tmp_path: Path) -> None:
    from ugro_tui.core.jobs.model import JobSpec

    store = JobStore(tmp_path)
    launcher = FakeLauncher()
    d = Dispatcher(LAB, store, online_lab(), launcher, clock=lambda: 1000.0)
    [a, b, c, big] = store.submit([JobSpec("a", ("x",), nnodes=2), JobSpec("b", ("x",)),
                                   JobSpec("c", ("x",), after=(1,)), JobSpec("big", ("x",), nnodes=3)])
    await d.tick()
    await d.drain()  # the starts and follows it left in flight (a tick waits for them 0.5 s at most)
    assert [j.id for j in launcher.started] == [a.id, b.id]
    assert store.get(a.id).placement == (("gpu-master", (0,)), ("gpu1", (0,)))
    assert store.get(b.id).placement in ((("gpu-master", (1,)),), (("gpu1", (1,)),))
    assert store.get(c.id).reason == "waits for job 1 to succeed"
    assert "needs 3 nodes" in store.get(big.id).reason  # gpu2's only GPU is busy with someone else's process
    launcher.exit[a.id] = 1
    await d.tick()
    await d.drain()  # the starts and follows it left in flight (a tick waits for them 0.5 s at most)
    assert store.get(a.id).state is JobState.FAILED
    assert store.get(c.id).state is JobState.FAILED and "job 1" in store.get(c.id).reason
    store.update(b.id, lambda j: dataclasses.replace(j, cancel_requested=True))
    await d.tick()
    await d.drain()  # the starts and follows it left in flight (a tick waits for them 0.5 s at most)
    assert store.get(b.id).state is JobState.CANCELLED


def test_only_one_dispatcher(tmp_path: Path) -> None:
    first, second = DispatcherLock(tmp_path), DispatcherLock(tmp_path)
    assert first.acquire("tui")
    assert not second.acquire("scheduler")
    assert second.holder() == f"tui pid {os.getpid()}"
    first.release()
    assert second.acquire("scheduler")
    second.release()


def test_killing_submit_and_the_dispatcher_never_loses_an_acknowledged_job(tmp_path: Path, lab_toml: Path) -> None:
    """SIGKILL `ugro submit`, `ugro scheduler` and a busy store writer at random moments."""
    rng = random.Random(7)
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    acked: set[int] = set()
    churn = subprocess.Popen([sys.executable, "-c", CHURN], env=env)  # keeps rewriting active.json
    scheduler = None
    submit = [sys.executable, "-m", "ugro_tui", "submit", "--config", str(lab_toml), "--", "x.py"]
    # Kills land anywhere in a submit's run as long as it takes on this machine now (a loaded one is slower).
    began = time.monotonic()
    first = subprocess.run(submit, env=env, capture_output=True, text=True, check=True)
    took = time.monotonic() - began
    acked.add(int(first.stdout))
    try:
        for _ in range(50):
            proc = subprocess.Popen(submit, env=env, stdout=subprocess.PIPE, text=True)
            time.sleep(rng.uniform(0.0, 1.5 * took))
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate()
            if out.strip().isdigit():  # the id was printed: the job was acknowledged
                acked.add(int(out))
            if rng.random() < 0.3:
                churn.kill()
                churn.wait()
                churn = subprocess.Popen([sys.executable, "-c", CHURN], env=env)
            if rng.random() < 0.3:  # the real dispatcher too, killed mid-round
                if scheduler is not None:
                    scheduler.kill()
                    scheduler.wait()
                scheduler = subprocess.Popen([sys.executable, "-m", "ugro_tui", "scheduler", "--config",
                                              str(lab_toml)], env=env, stderr=subprocess.DEVNULL)
    finally:
        for proc in (churn, scheduler):
            if proc is not None:
                proc.kill()
                proc.wait()
    store = JobStore(tmp_path / "state" / "ugro" / "jobs")
    stored = {j.id for j in store.all()}  # parses, or this raises
    assert len(acked) > 1, "no submit of the loop finished before its kill; the loop proves nothing"
    assert acked <= stored
    json.loads((tmp_path / "state" / "ugro" / "jobs" / "active.json").read_text())


CHURN = """
import dataclasses, time
from ugro_tui.core.jobs.store import JobStore
store = JobStore()
while True:
    for job in store.active():
        store.update(job.id, lambda j: dataclasses.replace(j, reason=f"seen {time.time()}"))
    time.sleep(0.001)
"""
