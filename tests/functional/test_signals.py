"""Signalling GPU processes on a real loopback node: from the app with its dialogs, from `ugro kill`, and what is
refused (a pid no GPU lists, a job's rank, anything in read-only mode)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from textual.widgets import SelectionList

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.model import JobSpec, JobState
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.transport import make_transport
from ugro_tui.ui.app import make_app
from ugro_tui.ui.screens.signal import SignalScreen
from ugro_tui.ui.widgets.dialogs import ConfirmScreen

from ..conftest import daemon_on, run_ugro
from ..ui_states import showing, wait_for


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for its reaper counts: it runs nothing and holds no GPU)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


async def gpu_sleeper(cluster: Cluster, node: str = "node0", gpu: int = 0, env: str = "") -> int:
    """A process the simulated GPU lists (its environment names the node and the GPU), as the node's user."""
    transport = make_transport(cluster.node(node), cluster)
    try:
        return await transport.spawn_detached(f"exec env UGRO_NODE={node} CUDA_VISIBLE_DEVICES={gpu} {env} sleep 120")
    finally:
        await transport.close()


@pytest.mark.usefixtures("autostart")  # `ugro kill` goes through the daemon it starts
async def test_ugro_kill_signals_a_listed_gpu_process_and_refuses_others(lab_config) -> None:
    cluster, path = lab_config
    pid = await gpu_sleeper(cluster)
    try:
        out = run_ugro("kill", "node0", "999999", "--config", str(path))
        assert out.returncode == 2 and "pid 999999 is not a GPU process on node0" in out.stderr
        assert str(pid) in out.stderr  # the refusal names what can be signalled
        for bad, words in ((["node0", str(pid), "--signal", "BOGUS"], "unknown signal 'BOGUS'"),
                           (["node0", "12ab"], "a pid is a number"),
                           (["nodeX", str(pid)], "no node 'nodeX'"),
                           (["--read-only", "node0", str(pid)], "read-only: ugro kill is refused")):
            out = run_ugro("kill", *bad, "--config", str(path))
            assert out.returncode == 2 and words in out.stderr and out.stderr.count("\n") == 1, out.stderr
        assert not gone(pid)
        out = run_ugro("kill", "node0", str(pid), "--signal", "kill", "--config", str(path))
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"KILL sent to pid {pid} on node0"
        assert gone(pid)
        out = run_ugro("kill", "node0", str(pid), "--config", str(path))  # no longer on a GPU: refused, not sent
        assert out.returncode == 2 and "not a GPU process" in out.stderr
    finally:
        for p in (pid,):
            if not gone(p):
                import os

                os.kill(p, 9)


async def test_k_in_the_nodes_view_terminates_the_selected_process_after_a_confirm(lab_config, monkeypatch) -> None:
    cluster, config = lab_config
    pid = await gpu_sleeper(cluster)
    other = await gpu_sleeper(cluster, "node1", 0)
    try:
        with daemon_on(config, monkeypatch):  # its telemetry lists the processes; its connection signals them
            await terminate_one(make_app(cluster), pid, other)
    finally:
        for p in (pid, other):
            if not gone(p):
                import os

                os.kill(p, 9)


async def terminate_one(app, pid: int, other: int) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        node0 = app.monitor_state.nodes["node0"]
        await wait_for(pilot, lambda: any(p.pid == pid for g in node0.gpus for p in g.processes), 15,
                       "the process on node0's GPU")
        await pilot.press("K")
        await wait_for(pilot, lambda: showing(app, SignalScreen), what="the signal dialog")
        assert [t.pid for t in app.screen.targets] == [pid]  # only node0's GPU processes are offered
        await pilot.press("enter")
        await wait_for(pilot, lambda: showing(app, ConfirmScreen), what="the confirm")
        question = app.screen.question
        assert "Send TERM to 1 process(es)" in question and f"pid {pid}" in question and "sleep 120" in question
        assert "node0 GPU 0" in question
        await pilot.press("y")
        await wait_for(pilot, lambda: gone(pid), 10, "the process to end")
        await wait_for(pilot, lambda: any(f"TERM sent to pid {pid}" in n.message for n in app._notifications),
                       what="the notification")
        assert not gone(other)  # another node's process is untouched


async def test_a_jobs_rank_and_read_only_mode_are_refused_in_the_app(lab_config, monkeypatch) -> None:
    cluster, config = lab_config
    store = JobStore()
    [job] = store.submit([JobSpec("train", ("train.py",))])
    store.move(job.id, JobState.STARTING, placement=(("node0", (0,)),))
    store.move(job.id, JobState.RUNNING)
    pid = await gpu_sleeper(cluster, env=f"UGRO_JOB_ID={job.id}")  # a rank of the job, as the launcher starts them
    stray = await gpu_sleeper(cluster)  # someone's notebook on the same GPU: not the job's
    try:
        with daemon_on(config, monkeypatch):
            await refuse_a_rank(cluster, config, store, job.id, pid, stray)
    finally:
        for p in (pid, stray):
            if not gone(p):
                import os

                os.kill(p, 9)


async def refuse_a_rank(cluster, config, store, job_id: int, pid: int, stray: int) -> None:
    app = make_app(cluster, store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        node0 = app.monitor_state.nodes["node0"]
        await wait_for(pilot, lambda: {pid, stray} <= {p.pid for g in node0.gpus for p in g.processes}, 45,
                       "both processes on node0's GPU")
        await pilot.press("K")
        await wait_for(pilot, lambda: showing(app, SignalScreen), what="the signal dialog")
        choices = app.screen.query_one(SelectionList)
        # The job's rank is listed but cannot be picked; the stray beside it is picked already.
        assert [choices.get_option_at_index(i).disabled for i in range(2)] == [True, False]
        assert choices.selected == [stray]
        await pilot.press("enter", "y")
        await wait_for(pilot, lambda: gone(stray), 10, "the stray process to end")
        assert not gone(pid)
    out = run_ugro("kill", "node0", str(pid), "--config", str(config))
    assert out.returncode == 2 and f"ugro cancel {job_id}" in out.stderr and not gone(pid)
    viewer = make_app(dataclasses.replace(cluster, read_only=True), store=store)
    async with viewer.run_test(size=(120, 40)) as pilot:
        node0 = viewer.monitor_state.nodes["node0"]
        await wait_for(pilot, lambda: bool(node0.gpus), 15, "node0's GPUs")
        await pilot.press("K", "n")
        await pilot.pause()
        assert not isinstance(viewer.screen, SignalScreen) and not viewer.screen_stack[1:]
        assert not viewer.screen.check_action("signal", ()) and viewer.screen.check_action("filter", ())
        assert not gone(pid)
