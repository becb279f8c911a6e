"""Sweeps expand into one job per combination; templates round-trip through tomli-w; --set changes one setting."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from ugro_tui.core.jobs import templates
from ugro_tui.core.jobs.model import JobSpec
from ugro_tui.core.jobs.sweep import NO_SEARCH, Axis, Search, combinations, expand, parse_search
from ugro_tui.errors import UsageError

SPEC = JobSpec(name="tiny", command=("train.py", "--lr", "{lr}", "--batch={batch}", "{other}"), nnodes=2,
               env=(("SEED", "1"),))


def test_a_grid_expands_to_every_combination_named_by_its_values() -> None:
    search = parse_search("lr=1e-4,2e-4 batch=1,2")
    assert combinations(search.axes) == 4 and search.count == 4
    specs = expand(SPEC, search, "abc123")
    assert [s.name for s in specs] == ["tiny[lr=1e-4,batch=1]", "tiny[lr=1e-4,batch=2]",
                                       "tiny[lr=2e-4,batch=1]", "tiny[lr=2e-4,batch=2]"]
    assert specs[1].command == ("train.py", "--lr", "1e-4", "--batch=2", "{other}")  # unknown braces stay
    assert dict(specs[1].env) == {"SEED": "1", "UGRO_SWEEP_LR": "1e-4", "UGRO_SWEEP_BATCH": "2",
                                  "UGRO_SWEEP_ID": "abc123"}
    assert all(s.nnodes == 2 and s.sweep_id == "abc123" for s in specs)
    assert specs[1].params == (("lr", "1e-4"), ("batch", "2"))
    assert expand(SPEC, NO_SEARCH) == [SPEC]
    saving = expand(dataclasses.replace(SPEC, checkpoint_dir="~/ckpt/"), search, "abc123")
    assert [s.checkpoint_dir for s in saving[:2]] == ["~/ckpt/abc123-1", "~/ckpt/abc123-2"]  # never shared


@pytest.mark.parametrize("bad", ["lr", "lr=", "lr=1,,2", "1x=3", "lr=1,1", "a-b=1", "lr=1 lr=2"])
def test_bad_axes_are_one_clear_error(bad: str) -> None:
    with pytest.raises(UsageError, match="sweep"):
        parse_search(bad)


def test_a_huge_grid_is_refused() -> None:
    with pytest.raises(UsageError, match="at most 1000"):
        parse_search(["a=" + ",".join(map(str, range(40))), "b=" + ",".join(map(str, range(40)))])


def test_a_template_round_trips(tmp_path) -> None:
    path = templates.save("tiny", SPEC, parse_search("lr=1e-4,2e-4"))
    text = path.read_text()
    assert text.startswith("# ugro job template")
    assert tomllib.loads(text)["sweep"] == {"lr": ["1e-4", "2e-4"]}
    data, search = templates.load("tiny")
    assert search == Search((Axis("lr", "grid", ("1e-4", "2e-4")),))
    assert data["command"] == list(SPEC.command) and data["nnodes"] == 2 and data["env"] == {"SEED": "1"}
    assert "priority" not in data  # defaults are left out: the file reads like what was typed
    assert "tiny" in templates.names() and "train-tiny" in templates.names()  # the shipped example too
    ranged = parse_search("lr=loguniform:1e-5:1e-2 opt=sgd,adam", trials=8, seed=3)
    templates.save("tiny-search", SPEC, ranged)
    assert tomllib.loads(templates.path_of("tiny-search").read_text())["sweep"] == {
        "lr": "loguniform:1e-5:0.01", "opt": ["sgd", "adam"]}
    assert templates.load("tiny-search")[1] == ranged


def test_set_changes_typed_settings() -> None:
    data = templates.apply_sets({"nnodes": 2}, ["nnodes=3", "env.LR=3e-4", "nodes=gpu1,gpu2",
                                                "command=train.py --lr 'a b'", "min_gpu_mem_gb=2.5"])
    assert data == {"nnodes": 3, "env": {"LR": "3e-4"}, "nodes": ["gpu1", "gpu2"],
                    "command": ["train.py", "--lr", "a b"], "min_gpu_mem_gb": 2.5}
    for bad, match in (("nnodes=two", "whole number"), ("colour=red", "not a job setting"), ("nnodes", "key=value")):
        with pytest.raises(UsageError, match=match):
            templates.apply_sets({}, [bad])


def test_bad_template_names_and_missing_templates() -> None:
    with pytest.raises(UsageError, match="template name"):
        templates.save("../evil", SPEC)
    with pytest.raises(UsageError, match="no template 'nope'"):
        templates.load("nope")


def test_cli_submit_a_template_with_sets_and_a_sweep(tmp_path) -> None:
    import json

    from ..conftest import run_ugro

    config = tmp_path / "cluster.toml"
    config.write_text('[[nodes]]\nname = "a"\nhost = "127.0.0.2"\n[[nodes]]\nname = "b"\nhost = "127.0.0.3"\n')
    done = run_ugro("submit", "--config", str(config), "--template", "train-tiny", "--set", "workdir=/srv/ugro",
                    "--set", "env.SEED=7", "--sweep", "lr=0.01,0.02", "--sweep", "batch=8,16", "--hold")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "2", "3", "4"]
    jobs = json.loads(run_ugro("queue", "--json").stdout)["jobs"]
    assert [j["name"] for j in jobs] == ["train-tiny[lr=0.01,batch=8]", "train-tiny[lr=0.01,batch=16]",
                                         "train-tiny[lr=0.02,batch=8]", "train-tiny[lr=0.02,batch=16]"]
    last = jobs[3]["spec"]
    assert last["command"] == ["examples/train_tiny.py", "--steps", "60", "--lr", "0.02", "--batch", "16"]
    sweep_id = last["sweep_id"]
    assert all(j["spec"]["sweep_id"] == sweep_id for j in jobs) and f"sweep {sweep_id}: 4 trials" in done.stderr
    assert last["env"] == {"SEED": "7", "UGRO_SWEEP_LR": "0.02", "UGRO_SWEEP_BATCH": "16", "UGRO_SWEEP_ID": sweep_id}
    assert last["workdir"] == "/srv/ugro" and last["template"] == "train-tiny" and last["nnodes"] == 2
    for args, words in ((["--template", "nope"], "no template 'nope'"),
                        (["--template", "train-tiny", "--sweep", "lr"], "KEY=V1,V2"),
                        (["--template", "train-tiny", "--set", "nnodes=9"], "only 2 allowed node")):
        bad = run_ugro("submit", "--config", str(config), *args)
        assert bad.returncode == 2 and words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_the_args_field_shows_words_that_split_back_exactly() -> None:
    import shlex

    from hypothesis import given
    from hypothesis import strategies as st

    from ugro_tui.core.jobs.form import join_args

    @given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))))
    def round_trip(words: list[str]) -> None:
        assert shlex.split(join_args(words)) == words

    round_trip()
    assert join_args(["--lr", "{lr}", "a b"]) == "--lr {lr} 'a b'"
