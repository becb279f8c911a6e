"""The Usage view (`5`): a week of the ledger stacked by user, by node, as cost, and an empty ledger; a job's
detail with its energy, its starved half in words, its loss and its GPU's utilization."""

from __future__ import annotations

import dataclasses

import pytest

from ugro_tui.core.jobs.store import JobStore
from ugro_tui.ui.app import make_app

from ..ui_states import LAB, NOW, job_store, ledger_book, showing, wait_for, with_state


def shown(keys: list[str]):
    async def run(pilot) -> None:
        await pilot.press("5")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "book", None) is not None, what="the ledger read")
        await pilot.press(*keys)
        await pilot.pause()
        assert not pilot.app.failures, pilot.app.failures

    return run


@pytest.mark.parametrize(("keys", "size"), [([], (80, 24)), (["b", "c"], (120, 32)), (["s"], (120, 32))])
def test_usage_view(snap_compare, tmp_path, keys: list[str], size: tuple[int, int]) -> None:
    ledger_book()
    priced = dataclasses.replace(LAB, energy_price=0.32, currency="EUR")
    app = make_app(priced, monitor=False, clock=lambda: NOW, state=with_state("online"), store=job_store(tmp_path))
    assert snap_compare(app, terminal_size=size, run_before=shown(keys))


def test_usage_view_with_nothing_recorded(snap_compare, tmp_path) -> None:
    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=with_state("online"), store=job_store(tmp_path))
    assert snap_compare(app, terminal_size=(80, 24), run_before=shown([]))


def trained(root) -> None:
    """A finished training job with a loss curve, and its ledger row: an hour on gpu-master's GPU, the first half
    starved by a saturated CPU, the second busy."""
    from ugro_tui.core.jobs.model import JobSpec, JobState
    from ugro_tui.core.ledger.book import Book
    from ugro_tui.core.telemetry.model import GpuSample

    store = JobStore(root)
    [job] = store.submit([JobSpec("train-tiny", ("examples/train_tiny.py",), gpus_per_node=1)], now=NOW - 4000)
    store.move(job.id, JobState.STARTING, placement=(("gpu-master", (0,)),), started_at=NOW - 3700)
    store.move(job.id, JobState.RUNNING, reason="running")
    curve = tuple((s, 2.0 * 0.99 ** s, NOW - 3600 + s * 10) for s in range(0, 360, 4))
    store.update_active({job.id: lambda j: dataclasses.replace(j, metric=curve)})
    store.move(job.id, JobState.SUCCEEDED, reason="every node exited 0", finished_at=NOW - 100)
    book = Book()
    for i in range(0, 3600, 5):
        busy = i >= 1800
        sample = GpuSample(0, "GPU-0", "RTX 5070 Ti", 95.0 if busy else 20.0 + i % 7, 9000, 16303, 70.0,
                           260.0 if busy else 90.0, 300.0, 50.0)
        book.observe("gpu-master", NOW - 3700 + i, [sample], lambda n, g: job.id, "ugro", 60.0 if busy else 98.0)
    book.ended(job.id, NOW - 100)
    book.save()


def test_job_detail_with_its_energy_loss_and_gpu_history(snap_compare, tmp_path) -> None:
    trained(tmp_path)
    priced = dataclasses.replace(LAB, energy_price=0.32, currency="EUR")

    async def opened(pilot) -> None:
        from ugro_tui.ui.screens.job_detail import JobDetailScreen

        await pilot.press("2")
        await wait_for(pilot, lambda: pilot.app.screen.query("DataTable").first().row_count > 0, what="the jobs")
        await pilot.press("enter")
        await wait_for(pilot, lambda: showing(pilot.app, JobDetailScreen), what="the detail")
        await pilot.pause()
        assert not pilot.app.failures, pilot.app.failures

    app = make_app(priced, monitor=False, clock=lambda: NOW, state=with_state("online"),
                   store=JobStore(tmp_path))
    assert snap_compare(app, terminal_size=(110, 40), run_before=opened)
