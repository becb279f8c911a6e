"""Snapshots of shared cards: the Nodes view names a shared card's jobs with their declared and used memory, and
the Jobs view shows a job's share, a waiting job's reason in numbers and a rank's over-use warning."""

from __future__ import annotations

import dataclasses

from ugro_tui.core.jobs.model import JobSpec, JobState
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.ui.app import make_app

from ..ui_states import LAB, NOW, gpu, online, press_then, wait_for


def shared_lab(root) -> tuple:
    """gpu2's 8 GB card: jobs 1 and 2 share it (3 GB and 1.5 GB declared), beside ollie's 1.2 GB notebook; job 3
    waits for room; job 2's rank uses more than it declared."""
    store = JobStore(root)
    specs = [JobSpec("finetune-small", ("finetune.py",), gpu_mem_gb=3.0),
             JobSpec("serve-tiny", ("serve.py",), kind="command", gpu_mem_gb=1.5),
             JobSpec("trial-lr3", ("train.py", "--lr", "3e-4"), gpu_mem_gb=4.0, nodes=("gpu2",))]
    jobs = store.submit(specs, now=NOW - 600)
    for job in jobs[:2]:
        store.move(job.id, JobState.STARTING, placement=(("gpu2", (0,)),), started_at=NOW - 300)
        store.move(job.id, JobState.RUNNING, reason="running")
    store.update_active({
        2: lambda j: dataclasses.replace(j, warning="a rank on gpu2:0 (pid 7002) uses 2.0 GB, over its declared "
                                                    "1.5 GB by more than 10% for 3 samples"),
        3: lambda j: dataclasses.replace(j, reason="needs 4.0 GB on 1 GPU; best: gpu2:0 has 1.3 GB free (job 1 "
                                                   "holds 3.0 GB, uses 2.9 GB, job 2 holds 1.5 GB, uses 2.0 GB, "
                                                   "ollie's python 1.2 GB)")})
    state = online()
    procs = [(7001, "ugro", "python finetune.py", 2970), (7002, "ugro", "python serve.py", 2048),
             (4100, "ollie", "python -m ipykernel", 1230)]
    sample = gpu(0, "NVIDIA GeForce RTX 3070 Ti", 71, 310 + 2970 + 2048 + 1230, 8192, 61, 160.0, 290.0, 50, procs)
    for p, job in zip(sample["processes"], (1, 2, None), strict=True):
        p["ugro_job"] = job
    state.nodes["gpu2"].apply_sample({"t": NOW - 1, "source": "nvml", "gpus": [sample]}, NOW - 1)
    return store, state


def test_a_shared_card_in_the_nodes_view(snap_compare, tmp_path) -> None:
    store, state = shared_lab(tmp_path)
    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=state, store=store)

    async def shared(pilot) -> None:
        await wait_for(pilot, lambda: pilot.app.screen.cards["gpu2"].shared, what="the shared card's line")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 24), run_before=shared)


def test_shares_warnings_and_reasons_in_numbers_in_the_jobs_view(snap_compare, tmp_path) -> None:
    store, state = shared_lab(tmp_path)
    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=state, store=store)
    assert snap_compare(app, terminal_size=(120, 24), run_before=press_then(["2", "down"]))
