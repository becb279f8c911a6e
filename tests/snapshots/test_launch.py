"""The launch form driven from the keyboard: the exact job it queues, sweeps, templates, edit, and leaving."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Static

from ugro_tui.core.jobs import templates
from ugro_tui.core.jobs.model import JobSpec, JobState
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.ui.app import make_app
from ugro_tui.ui.screens.jobs import ConfirmScreen, JobsScreen
from ugro_tui.ui.screens.launch import LaunchScreen

from ..ui_states import LAB, NOW, press_then, wait_for, with_state


def app_for(store: JobStore):
    return make_app(LAB, monitor=False, clock=lambda: NOW, state=with_state("online"), store=store)


async def type_into(pilot, field: str, text: str) -> None:
    widget = pilot.app.screen.query_one(f"#f-{field}", Input)
    widget.focus()
    widget.value = ""
    await pilot.press(*text)


async def test_the_form_queues_exactly_the_job_typed(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        assert isinstance(app.screen, LaunchScreen)
        await pilot.press(*"train.py", "tab", *"--lr 3e-4 --tag 'a b'", "tab", "backspace", "2")  # script, args, nodes
        await type_into(pilot, "name", "tiny-run")
        await type_into(pilot, "priority", "5")
        await type_into(pilot, "max_retries", "1")
        await type_into(pilot, "checkpoint_dir", "~/ckpt")
        app.screen.query_one("#f-env").focus()
        await pilot.press(*"SEED=7")
        await pilot.press("ctrl+s")
        await pilot.pause()
        [job] = store.all()
        assert job.spec == JobSpec(name="tiny-run", command=("train.py", "--lr", "3e-4", "--tag", "a b"),
                                   kind="torchrun", nnodes=2, nproc_per_node=1, gpus_per_node=1, priority=5,
                                   max_retries=1, checkpoint_dir="~/ckpt", env=(("SEED", "7"),))
        assert job.state is JobState.QUEUED
        assert isinstance(app.screen, JobsScreen)  # and the Jobs view shows it


async def test_inline_errors_as_you_type_and_nothing_is_queued(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n", *"train.py")
        await type_into(pilot, "nproc_per_node", "2")  # every LAB node has one GPU
        screen = app.screen
        error = screen.query_one("#err-nproc_per_node", Static)
        assert error.display and "more than gpu-master's 1 GPU(s)" in str(error.render())
        await type_into(pilot, "nproc_per_node", "1")
        assert not error.display
        app.screen.query_one("#f-env").focus()
        await pilot.press(*"not an env line")
        assert "env line 1: expected NAME=VALUE" in str(screen.query_one("#err-env", Static).render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert store.all() == [] and isinstance(app.screen, LaunchScreen)
        assert app.screen.focused is screen.query_one("#f-env")


async def test_a_sweep_queues_one_job_per_combination(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n", *"train.py", "tab", *"--lr {lr} --batch {batch}")
        await type_into(pilot, "sweep", "lr=1e-4,2e-4 batch=1,2")
        title = str(app.screen.query_one("#title", Static).render())
        assert "→ 4 jobs (sweep)" in title
        await pilot.press("ctrl+s")
        await pilot.pause()
        jobs = store.all()
        assert sorted(j.spec.name for j in jobs) == ["train.py[lr=1e-4,batch=1]", "train.py[lr=1e-4,batch=2]",
                                                     "train.py[lr=2e-4,batch=1]", "train.py[lr=2e-4,batch=2]"]
        one = next(j for j in jobs if j.spec.name == "train.py[lr=2e-4,batch=1]")
        assert one.spec.command == ("train.py", "--lr", "2e-4", "--batch", "1")
        assert dict(one.spec.env) == {"UGRO_SWEEP_LR": "2e-4", "UGRO_SWEEP_BATCH": "1",
                                      "UGRO_SWEEP_ID": one.spec.sweep_id}
        assert len({j.spec.sweep_id for j in jobs}) == 1


async def test_a_random_search_with_early_stopping_from_the_form(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n", *"train.py", "tab", *"--lr {lr}")
        await type_into(pilot, "sweep", "lr=loguniform:1e-4:1e-1")
        await type_into(pilot, "search", "trials=8 max_concurrent=2 early_stop=median min_trials=0")
        error = app.screen.query_one("#err-search", Static)
        assert error.display and "min_trials: expected 1 or more" in str(error.render())
        await type_into(pilot, "search", "trials=8 seed=5 max_concurrent=2 early_stop=median min_trials=3")
        assert not error.display
        assert "→ 8 jobs (sweep)" in str(app.screen.query_one("#title", Static).render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        jobs = store.all()
        assert len(jobs) == 8 and len({j.spec.sweep_id for j in jobs}) == 1
        assert all(j.spec.early_stop == "median" and j.spec.max_concurrent == 2 and j.spec.min_trials == 3
                   for j in jobs)
        lrs = [float(dict(j.spec.params)["lr"]) for j in jobs]
        assert all(1e-4 <= lr <= 1e-1 for lr in lrs) and len(set(lrs)) == 8


async def test_a_random_search_from_the_form_draws_a_seed_and_says_it(tmp_path: Path) -> None:
    """The CLI's rule (request.queue): without seed=, one is drawn and said, so the sweep can be drawn again."""
    import re

    from ugro_tui.core.jobs.sweep import draw, parse_search

    store = JobStore(tmp_path)
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n", *"train.py", "tab", *"--lr {lr}")
        await type_into(pilot, "sweep", "lr=loguniform:1e-4:1e-1")
        await type_into(pilot, "search", "trials=4")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any("queued" in n.message for n in app._notifications), 10, "the queued note")
        [said] = [n.message for n in app._notifications if "queued" in n.message]
    jobs = store.all()
    found = re.search(r"queued 4 jobs \(1-4\) · sweep (\S+), seed (\d+)$", said)
    assert found and {j.spec.sweep_id for j in jobs} == {found[1]}, said
    again = draw(parse_search(["lr=loguniform:1e-4:1e-1"], 4, int(found[2])))
    assert [dict(j.spec.params) for j in jobs] == again


async def test_checkpoint_retention_from_the_form(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n", *"train.py")
        await type_into(pilot, "keep", "last=2 best=1")
        error = app.screen.query_one("#err-keep", Static)
        assert error.display and "give the job a checkpoint_dir" in str(error.render())
        await type_into(pilot, "checkpoint_dir", "ckpt")
        await type_into(pilot, "keep", "last=0")
        assert error.display and "would delete every checkpoint" in str(error.render())
        await type_into(pilot, "keep", "newest=2")
        assert error.display and "expected last=N and/or best=K" in str(error.render())
        await type_into(pilot, "keep", "last=2 best=1")
        assert not error.display
        await pilot.press("ctrl+s")
        await pilot.pause()
        [job] = store.all()
        assert (job.spec.keep_last, job.spec.keep_best, job.spec.checkpoint_dir) == (2, 1, "ckpt")
        from ugro_tui.core.jobs.form import from_spec

        assert from_spec(job.spec).keep == "last=2 best=1"


async def test_save_a_template_then_load_it_into_a_new_form(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n", *"train.py", "tab", *"--lr {lr}")
        await type_into(pilot, "sweep", "lr=0.1,0.2")
        await pilot.press("ctrl+t")
        await pilot.pause()
        await pilot.press("end", *"-mine", "enter")  # the suggestion is the job's name: train.py-mine
        await pilot.pause()
        assert "train.py-mine" in templates.names()
        data, search = templates.load("train.py-mine")
        assert data["command"] == ["train.py", "--lr", "{lr}"] and search.text == "lr=0.1,0.2"
        app.screen.dismiss()
        await pilot.pause()
        await pilot.press("n", "ctrl+o")
        await pilot.pause()
        names = templates.names()
        await pilot.press(*["down"] * names.index("train.py-mine"), "enter")
        await pilot.pause()
        form = app.screen
        assert form.query_one("#f-args", Input).value == "--lr {lr}"
        assert form.query_one("#f-sweep", Input).value == "lr=0.1,0.2"
        await pilot.press("ctrl+s")
        await pilot.pause()
        jobs = store.all()
        assert sorted(j.spec.command for j in jobs) == [("train.py", "--lr", "0.1"), ("train.py", "--lr", "0.2")]
        assert {j.spec.template for j in jobs} == {"train.py-mine"}


async def test_e_opens_a_past_job_prefilled_and_esc_asks_before_dropping_edits(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    [old] = store.submit([JobSpec("old", ("train.py", "--lr", "0.1"), nnodes=2, env=(("SEED", "1"),),
                                  nodes=("worker",))])
    store.move(old.id, JobState.CANCELLED, reason="cancelled by the user")
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.query_one("DataTable").row_count > 0, what="the jobs table")
        await pilot.press("e")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, LaunchScreen) and "new job from job 1" in form.title_text
        values = form.values()
        assert (values.script, values.args, values.nnodes, values.env) == ("train.py", "--lr 0.1", "2", "SEED=1")
        assert values.nodes == ("worker",)  # the label stays a label
        await type_into(pilot, "args", "--lr 0.2")
        await pilot.press("escape")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert app.screen is form  # still there, edits kept
        await pilot.press("ctrl+s")
        await pilot.pause()
        new = store.get(2)
        assert new.spec.command == ("train.py", "--lr", "0.2") and new.spec.nodes == ("worker",)
        await pilot.press("n")
        await pilot.pause()
        await pilot.press("escape")  # nothing typed: it just closes
        assert not isinstance(app.screen, (LaunchScreen, ConfirmScreen))


# --- snapshots: each form state, validation errors included, at 80×24 and large ----------------------------


@pytest.mark.parametrize("size", [(80, 24), (160, 45)])
def test_snapshot_new_form(snap_compare, tmp_path, size) -> None:
    assert snap_compare(app_for(JobStore(tmp_path)), terminal_size=size, run_before=press_then(["n"]))


@pytest.mark.parametrize("size", [(80, 24), (160, 45)])
def test_snapshot_filled_with_a_sweep(snap_compare, tmp_path, size) -> None:
    keys = ["n", *"train.py", "tab", *"--lr {lr}", "tab", "backspace", "3"]

    async def sweep(pilot) -> None:
        await type_into(pilot, "sweep", "lr=1e-4,2e-4,3e-4")
        await type_into(pilot, "gpu_mem", "3")  # GB per rank: the trials may share cards
        pilot.app.screen.query_one("#f-script").focus()

    assert snap_compare(app_for(JobStore(tmp_path)), terminal_size=size, run_before=press_then(keys, sweep))


@pytest.mark.parametrize("size", [(80, 24), (160, 45)])
def test_snapshot_validation_errors(snap_compare, tmp_path, size) -> None:
    async def errors(pilot) -> None:
        await type_into(pilot, "nproc_per_node", "4")
        await type_into(pilot, "args", "--tag 'unclosed")
        await type_into(pilot, "sweep", "lr=")
        await type_into(pilot, "gpu_mem", "abc")
        pilot.app.screen.query_one("#f-script").focus()

    assert snap_compare(app_for(JobStore(tmp_path)), terminal_size=size,
                        run_before=press_then(["n", *"train.py"], errors))


def test_snapshot_discard_confirm(snap_compare, tmp_path) -> None:
    assert snap_compare(app_for(JobStore(tmp_path)), terminal_size=(80, 24),
                        run_before=press_then(["n", *"train.py", "escape"]))


async def test_the_picker_follows_telemetry_live(tmp_path: Path) -> None:
    from textual.widgets import SelectionList

    from ugro_tui.core.telemetry.model import NodeState
    from ugro_tui.ui.messages import NodeUpdated

    app = app_for(JobStore(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        picker = app.screen.query_one("#f-nodes", SelectionList)
        assert str(picker.get_option("pick-gpu2").prompt) == "gpu2  1/1 GPUs free"
        status = app.monitor_state.nodes["gpu2"]
        status.state, status.error = NodeState.OFFLINE, "connection refused"
        app.post_message(NodeUpdated(status))
        await pilot.pause()
        assert str(picker.get_option("pick-gpu2").prompt) == "gpu2  offline"
        labels = [str(picker.get_option_at_index(i).prompt) for i in range(picker.option_count)]
        assert "label worker: any of gpu1, gpu2" in labels
