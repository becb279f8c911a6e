"""Search spaces: draws stay in range, spread over decades, repeat with the seed, and bad spaces are one line."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ugro_tui.core.jobs.model import JobSpec
from ugro_tui.core.jobs.sweep import draw, expand, parse_axis, parse_search, readable
from ugro_tui.errors import UsageError

SPEC = JobSpec(name="t", command=("train.py", "--lr", "{lr}"))
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(lo=finite, width=st.floats(min_value=1e-3, max_value=1e6), seed=st.integers(0, 2**31), trials=st.integers(1, 40))
def test_uniform_draws_stay_within_the_range(lo: float, width: float, seed: int, trials: int) -> None:
    hi = lo + width
    search = parse_search([f"x=uniform:{lo!r}:{hi!r}"], trials=trials, seed=seed)
    values = [float(t["x"]) for t in draw(search)]
    assert len(values) == trials
    slack = 5e-3 * max(abs(lo), abs(hi))  # names keep three significant digits
    assert all(lo - slack <= v <= hi + slack for v in values)


@settings(max_examples=40, deadline=None)
@given(lo=st.integers(-1000, 1000), width=st.integers(1, 1000), seed=st.integers(0, 2**31))
def test_int_draws_are_whole_numbers_in_range(lo: int, width: int, seed: int) -> None:
    search = parse_search([f"n=int:{lo}:{lo + width}"], trials=30, seed=seed)
    for trial in draw(search):
        assert trial["n"].lstrip("-").isdecimal() and lo <= int(trial["n"]) <= lo + width


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_loguniform_spreads_over_the_decades(seed: int) -> None:
    search = parse_search(["lr=loguniform:1e-6:1e-1"], trials=400, seed=seed)
    exponents = [math.floor(math.log10(float(t["lr"]))) for t in draw(search)]
    assert all(-6 <= e <= -1 for e in exponents)
    counts = [exponents.count(e) for e in range(-6, -1)]
    assert min(counts) >= 40, counts  # about 80 a decade; a uniform draw would put ~90% in the top one


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), trials=st.integers(1, 12))
def test_the_same_seed_draws_the_same_trials(seed: int, trials: int) -> None:
    axes = ["lr=loguniform:1e-5:1e-2", "drop=uniform:0:0.5", "bs=int:1:64", "opt=choice:adam,sgd"]
    first = expand(SPEC, parse_search(axes, trials=trials, seed=seed), "s1")
    again = expand(SPEC, parse_search(axes, trials=trials, seed=seed), "s1")
    assert first == again and len(first) == trials
    assert {k for k, _ in first[0].params} == {"lr", "drop", "bs", "opt"}


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 5), min_size=1, max_size=3), seed=st.integers(0, 2**31), data=st.data())
def test_a_grid_with_trials_is_drawn_without_repeats(sizes: list[int], seed: int, data) -> None:
    axes = [f"k{i}=" + ",".join(f"v{j}" for j in range(n)) for i, n in enumerate(sizes)]
    total = math.prod(sizes)
    trials = data.draw(st.integers(1, total))
    drawn = draw(parse_search(axes, trials=trials, seed=seed))
    combos = [tuple(sorted(t.items())) for t in drawn]
    assert len(set(combos)) == trials
    assert draw(parse_search(axes, trials=total, seed=seed)).__len__() == total


def test_values_keep_a_readable_form_in_names() -> None:
    assert [readable(v) for v in (3.2e-4, 0.25, 1.5e6, 0.1, 12.5, 3.14159e-5)] == \
        ["3.2e-4", "0.25", "1.5e6", "0.1", "12.5", "3.14e-5"]
    [spec] = expand(SPEC, parse_search(["lr=loguniform:1e-4:1e-3"], trials=1, seed=0), "s")
    lr = dict(spec.params)["lr"]
    assert spec.name == f"t[lr={lr}]" and spec.command == ("train.py", "--lr", lr) and "e-4" in lr


def test_choice_without_trials_is_a_grid() -> None:
    assert [t["opt"] for t in draw(parse_search(["opt=choice:adam,sgd"]))] == ["adam", "sgd"]
    assert parse_axis("lr=1e-4,2e-4").kind == "grid"


@pytest.mark.parametrize(("axes", "trials", "words"), [
    (["lr=uniform:1:1"], 4, "LO must be below HI"),
    (["lr=uniform:2:1"], 4, "LO must be below HI"),
    (["lr=loguniform:0:1"], 4, "loguniform needs LO above 0"),
    (["lr=loguniform:-1:1"], 4, "loguniform needs LO above 0"),
    (["n=int:1.5:4"], 4, "whole number"),
    (["lr=normal:0:1"], 4, "unknown distribution 'normal'"),
    (["lr=uniform:0"], 4, "expected uniform:LO:HI"),
    (["lr=uniform:a:b"], 4, "expected a number"),
    (["lr=uniform:0:1"], None, "--trials N"),
    (["lr=uniform:0:1"], 1001, "at most 1000"),
    (["lr=uniform:0:1"], 0, "1 or more"),
    (["a=1,2"], 3, "only 2 combinations"),
    ([], 3, "need a search space"),
])
def test_bad_spaces_are_one_clear_error(axes: list[str], trials: int | None, words: str) -> None:
    with pytest.raises(UsageError, match="sweep") as caught:
        parse_search(axes, trials=trials)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_cli_bad_search_input_is_one_line_exit_2_and_nothing_queued(tmp_path) -> None:
    import json

    from ..conftest import run_ugro

    config = tmp_path / "cluster.toml"
    config.write_text('[[nodes]]\nname = "a"\nhost = "127.0.0.2"\n')
    base = ["submit", "--config", str(config), "--hold"]
    cases = [
        (["--sweep", "lr=uniform:1:0", "--trials", "4"], "LO must be below HI"),
        (["--sweep", "lr=loguniform:0:1", "--trials", "4"], "loguniform needs LO above 0"),
        (["--sweep", "n=int:1:2.5", "--trials", "4"], "whole number"),
        (["--sweep", "lr=gauss:0:1", "--trials", "4"], "unknown distribution"),
        (["--sweep", "lr=uniform:0:1", "--trials", "0"], "expected 1 or more"),
        (["--sweep", "lr=uniform:0:1", "--trials", "1001"], "at most 1000"),
        (["--sweep", "lr=uniform:0:1"], "--trials N"),
        (["--sweep", "lr=0.1,0.2", "--metric-regex", "step (\\d+"], "invalid regular expression"),
        (["--sweep", "lr=0.1,0.2", "--metric-regex", "step (\\d+) loss"], "needs two groups"),
        (["--early-stop", "median"], "give --sweep too"),
        (["--sweep", "lr=0.1,0.2", "--early-stop", "random"], "invalid choice"),
        (["--sweep", "lr=0.1,0.2", "--metric", "lo ss"], "metric: expected a name"),
    ]
    for args, words in cases:
        done = run_ugro(*base, *args, "--", "train.py", "--lr", "{lr}")
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
    assert json.loads(run_ugro("queue", "--json").stdout)["jobs"] == []
    ok = run_ugro(*base, "--sweep", "lr=loguniform:1e-4:1e-2", "--trials", "3", "--seed", "9", "--early-stop", "asha",
                  "--grace", "2", "--max-t", "30", "--metric", "val_acc", "--goal", "max", "--", "train.py", "{lr}")
    assert ok.returncode == 0, ok.stderr
    jobs = json.loads(run_ugro("queue", "--json").stdout)["jobs"]
    assert [j["spec"]["early_stop"] for j in jobs] == ["asha"] * 3
    assert jobs[0]["spec"]["goal"] == "max" and jobs[0]["spec"]["grace"] == 2 and jobs[0]["spec"]["max_t"] == 30
    shown = run_ugro("sweep", "show", jobs[0]["spec"]["sweep_id"])
    assert shown.returncode == 0 and "BEST VAL_ACC" in shown.stdout and "held" in shown.stdout
    missing = run_ugro("sweep", "show", "nope")
    assert missing.returncode == 2 and "no sweep 'nope'" in missing.stderr
