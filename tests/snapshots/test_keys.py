"""Pilot tests of the keys: selection, filter, drill-in, views, themes (saved), help, remapping."""

from __future__ import annotations

import dataclasses

from ugro_tui.ui import themes
from ugro_tui.ui.app import make_app
from ugro_tui.ui.screens.help import HelpScreen
from ugro_tui.ui.screens.nodes import NodesScreen
from ugro_tui.ui.widgets.process_table import ProcessTable

from ..ui_states import LAB, NOW, logs_shown, wait_for, with_state


def app_for(cluster=LAB):
    return make_app(cluster, monitor=False, clock=lambda: NOW, state=with_state("online"))


async def test_j_k_move_the_gpu_selection_and_show_its_processes() -> None:
    app = app_for()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, NodesScreen) and screen.cursor == ("gpu-master", 0)
        await pilot.press("j")
        assert screen.cursor == ("gpu1", 0)
        table = screen.query_one(ProcessTable)
        assert str(table.get_row_at(0)[0]) == "5151" and "torchrun" in str(table.get_row_at(0)[3])
        await pilot.press("j", "j", "j")
        assert screen.cursor == ("gpu2", 0)  # stops at the last GPU
        await pilot.press("k", "up")
        assert screen.cursor == ("gpu-master", 0)


async def test_filter_then_escape_clears_it() -> None:
    app = app_for()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await pilot.press("slash", *"worker 3070", "enter")
        shown = [name for name, card in screen.cards.items() if card.display]
        assert shown == ["gpu2"] and screen.cursor == ("gpu2", 0)
        await pilot.press("slash", "escape")
        assert all(card.display for card in screen.cards.values())
        await pilot.press("slash", *"ollie")  # the login user counts too
        assert [name for name, card in screen.cards.items() if card.display] == ["gpu2"]


async def test_enter_drills_into_a_node_and_escape_goes_back() -> None:
    app = app_for()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await pilot.press("j", "enter")
        assert [n for n, c in screen.cards.items() if c.display] == ["gpu1"]
        await pilot.press("escape")
        assert all(c.display for c in screen.cards.values())


async def test_views_help_and_quit() -> None:
    app = app_for()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        assert app.current_mode == "jobs"
        await pilot.press("3")
        assert app.current_mode == "logs"
        await pilot.press("1")
        assert app.current_mode == "nodes"
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, NodesScreen)
        await pilot.press("q")
    assert app.return_code == 0


async def test_theme_key_cycles_and_the_choice_is_saved() -> None:
    app = app_for()
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.theme == "ugro-dark"
        await pilot.press("t")
        assert app.theme == "ugro-high-contrast"
        await pilot.press("t")
        assert app.theme == "ugro-light"
    assert themes.load_settings()["theme"] == "ugro-light"
    again = app_for()
    async with again.run_test(size=(80, 24)):
        assert again.theme == "ugro-light"


async def test_keys_are_remapped_from_the_config() -> None:
    cluster = dataclasses.replace(LAB, keys=(("nodes.down", "n"), ("app.quit", "x")))
    app = app_for(cluster)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        assert app.screen.cursor == ("gpu1", 0)
        await pilot.press("x")
    assert app.return_code == 0


async def test_jobs_keys_cancel_hold_retry_sort_filter(tmp_path) -> None:
    from ugro_tui.core.jobs.model import JobState
    from ugro_tui.ui.screens.job_detail import JobDetailScreen
    from ugro_tui.ui.screens.jobs import ConfirmScreen, JobsScreen

    from ..ui_states import job_store

    store = job_store(tmp_path)
    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=with_state("online"), store=store)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        assert screen.selected().id == 8  # newest first
        await pilot.press("ctrl+d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert store.get(8).state is JobState.QUEUED
        await pilot.press("ctrl+d", "y")
        await pilot.pause()
        assert store.get(8).state is JobState.CANCELLED
        await pilot.press("down", "h")  # job 7: queued -> held
        assert store.get(7).state is JobState.HELD
        await pilot.press("h")
        assert store.get(7).state is JobState.QUEUED
        await pilot.press("r")  # job 7 is not finished: a clear error, nothing changes
        assert store.get(7).state is JobState.QUEUED
        await pilot.press("enter")
        assert isinstance(app.screen, JobDetailScreen)
        await pilot.press("escape")
        await pilot.press("s")  # sort by priority
        await pilot.pause()
        assert [j.spec.priority for j in screen._sorted(screen.jobs)][:2] == [3, 3]
        await pilot.press("slash", *"failed", "enter")
        await pilot.pause()
        assert screen.query_one("DataTable").row_count == 1 and screen.selected().id == 2
        await pilot.press("r")
        await pilot.pause()
        assert store.get(2).state is JobState.QUEUED


async def test_logs_view_keys(tmp_path) -> None:
    from ugro_tui.ui.screens.logs import LogsScreen, Pane

    from ..ui_states import job_with_logs

    store, job_id = job_with_logs(tmp_path)
    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=with_state("online"), store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2", "l")
        await wait_for(pilot, lambda: logs_shown(app), what="the panes to fill")
        screen = app.screen
        assert isinstance(screen, LogsScreen) and screen.job.id == job_id
        assert [p.key for p in screen.query(Pane)] == ["rank0", "rank1", "rank2", "rank3"]
        assert screen.query(Pane).first().output.lines[-1] == "step 39 loss 0.13139"
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert [p.key for p in screen.query(Pane)] == ["node:gpu-master", "node:gpu1"]
        await pilot.press("left_square_bracket", "w")
        await pilot.pause()
        assert screen.wrap
        await pilot.press("slash", *"step 3 ", "enter")
        await pilot.pause()
        first = screen.query(Pane).first().output
        assert "step 3 " in first.lines[int(first.scroll_y)] and not first.auto_scroll  # paused on the match
        await pilot.press("escape", "1")
        assert app.current_mode == "nodes"


async def test_a_in_the_logs_view_switches_attempts(tmp_path) -> None:
    import dataclasses

    from ugro_tui.core.jobs.logs import local_copy
    from ugro_tui.core.jobs.model import JobSpec, JobState, NodeRun
    from ugro_tui.core.jobs.store import JobStore
    from ugro_tui.ui.screens.logs import LogsScreen

    store = JobStore(tmp_path / "jobs")
    [job] = store.submit([JobSpec("flaky", ("sh", "-c", "x"), kind="command", max_retries=1)], now=NOW - 60)
    for attempt, end in ((1, JobState.QUEUED), (2, JobState.SUCCEEDED)):
        job = store.move(job.id, JobState.STARTING, placement=(("gpu1", (0,)),), started_at=NOW - 50)
        job = store.update(job.id, lambda j: dataclasses.replace(j, runs=(("gpu1", NodeRun(1, "/nonexistent")),)))
        job = store.move(job.id, JobState.RUNNING)
        path = local_copy(job, "gpu1")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"attempt {attempt} says hi\n")
        job = store.move(job.id, end, reason="x", finished_at=NOW - 10)
    app = make_app(LAB, monitor=False, clock=lambda: NOW, state=with_state("online"), store=store)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2", "l")
        await wait_for(pilot, lambda: logs_shown(app), what="the latest attempt")
        screen = app.screen
        assert isinstance(screen, LogsScreen) and screen.demux.nodes["gpu1"].lines[-1] == "attempt 2 says hi"
        await pilot.press("a")
        await wait_for(pilot, lambda: logs_shown(app) and screen.demux.nodes.get("gpu1") is not None, what="a1")
        assert list(screen.demux.nodes["gpu1"].lines) == ["attempt 1 says hi"]
        assert "attempt 1/2" in str(screen.query_one("#job-header").render())
        await pilot.press("a")
        await wait_for(pilot, lambda: logs_shown(app) and screen.demux.nodes.get("gpu1") is not None, what="a2")
        assert list(screen.demux.nodes["gpu1"].lines) == ["attempt 2 says hi"]
