"""The early-stopping rules as pure functions on recorded histories, against hand-computed cases."""

from __future__ import annotations

import math

from ugro_tui.core.jobs.early_stop import Trial, asha_rule, judge, median_rule, quantile, rungs
from ugro_tui.core.jobs.metric import best, combine, merge
from ugro_tui.core.jobs.model import Job, JobSpec, JobState


def trial(tid: int, values: dict[int, float], start: float = 0.0, pruned: bool = False) -> Trial:
    """A history with one point per step, each seen one second after the previous, from `start`."""
    return Trial(tid, tuple((s, v, start + i) for i, (s, v) in enumerate(sorted(values.items()))), pruned)


def curve(base: float, steps: int = 10) -> dict[int, float]:
    return {s: base + 1.0 / (s + 1) for s in range(steps)}


def test_median_prunes_a_trial_worse_than_the_median_at_its_step() -> None:
    others = [trial(1, curve(1.0)), trial(2, curve(2.0)), trial(3, curve(3.0))]
    bad = trial(9, {0: 5.0, 1: 4.5, 2: 4.4})
    verdict = median_rule(bad, others, goal="min", min_trials=3)
    # At step 2 the others read 1.333, 2.333 and 3.333: the median is 2.333; bad's best so far is 4.4.
    assert verdict is not None and verdict.step == 2 and verdict.value == 4.4
    assert math.isclose(verdict.threshold, 2.0 + 1 / 3) and verdict.trials == 3
    good = trial(8, {0: 1.5, 1: 1.2, 2: 1.1})
    assert median_rule(good, others, goal="min", min_trials=3) is None


def test_median_ties_warmup_and_too_few_trials_keep_the_trial() -> None:
    others = [trial(1, {0: 1.0, 1: 1.0}), trial(2, {0: 3.0, 1: 3.0})]
    tie = trial(3, {0: 2.5, 1: 2.0})  # the median of 1.0 and 3.0 is 2.0: equal is not worse
    assert median_rule(tie, others, goal="min", min_trials=2) is None
    worse = trial(4, {0: 2.5, 1: 2.1})
    assert median_rule(worse, others, goal="min", min_trials=2) is not None
    assert median_rule(worse, others, goal="min", min_trials=2, warmup_steps=2) is None  # step 1 < warmup
    assert median_rule(worse, others, goal="min", min_trials=3) is None
    assert median_rule(trial(5, {}), others, goal="min", min_trials=1) is None  # reported nothing yet


def test_median_skips_others_that_report_nothing_started_later_or_were_pruned() -> None:
    silent = Trial(1, ())
    behind = trial(2, {0: 0.1})  # has not reached step 3
    pruned = trial(3, curve(0.1), pruned=True)
    real = [trial(4, curve(1.0)), trial(5, curve(2.0))]
    candidate = trial(6, {0: 9.0, 3: 1.9})
    verdict = median_rule(candidate, [silent, behind, pruned, *real], goal="min", min_trials=2)
    # Only 4 and 5 count: at step 3 they read 1.25 and 2.25, median 1.75 < 1.9.
    assert verdict is not None and verdict.trials == 2 and math.isclose(verdict.threshold, 1.75)


def test_median_takes_the_last_value_before_the_step_when_another_trial_skipped_it() -> None:
    others = [trial(1, {0: 3.0, 10: 1.0}), trial(2, {0: 3.0, 4: 2.0, 10: 1.5})]
    mine = trial(3, {5: 2.2})  # at step 5: trial 1 still reads 3.0 (step 0), trial 2 reads 2.0 (step 4)
    verdict = median_rule(mine, others, goal="min", min_trials=2)
    assert verdict is None  # median 2.5 > 2.2
    assert median_rule(trial(3, {5: 2.6}), others, goal="min", min_trials=2) is not None


def test_median_with_goal_max_and_nan() -> None:
    others = [trial(1, {0: 0.5, 1: 0.6}), trial(2, {0: 0.7, 1: 0.8})]
    assert median_rule(trial(3, {1: 0.65}), others, goal="max", min_trials=2) is not None  # median 0.7
    assert median_rule(trial(3, {1: 0.75}), others, goal="max", min_trials=2) is None
    assert median_rule(trial(4, {1: math.nan}), others, goal="min", min_trials=2) is not None  # nan is the worst


def test_a_restarted_trial_keeps_its_first_arrival_and_takes_the_new_values() -> None:
    first = merge((), {0: 5.0, 1: 4.0, 2: 3.0}, now=100.0)
    again = merge(first, {0: 4.5, 1: 3.5}, now=200.0)  # attempt 2 redoes steps 0-1
    assert again == ((0, 4.5, 100.0), (1, 3.5, 100.0), (2, 3.0, 100.0))
    assert merge(again, {3: 2.0}, now=300.0)[-1] == (3, 2.0, 300.0)
    assert best(again, "min") == (2, 3.0) and best(again, "max") == (0, 4.5)


def test_rank_values_are_averaged_when_every_rank_reports() -> None:
    ranks = {0: {1: 2.0, 2: 1.0}, 1: {1: 4.0}}
    assert combine(ranks, world=2) == {1: 3.0, 2: 1.0}  # step 2: only rank 0 so far
    assert combine({1: {1: 4.0}, 2: {1: 6.0}}, world=4) == {1: 4.0}  # not everyone: the lowest rank's


def test_asha_rungs_and_quantile() -> None:
    assert rungs(1, 3, 0, 30) == [1, 3, 9, 27]
    assert rungs(2, 2, 10, 100) == [2, 4, 8]
    assert quantile([1.0, 2.0, 3.0, 4.0], 1 / 3) == 2.0
    assert quantile([1.0, 2.0, 3.0], 0.5) == 2.0 and quantile([1.0, 3.0], 0.25) == 1.5


def test_asha_compares_with_the_trials_that_reached_the_rung_first() -> None:
    # Rungs at 1, 3, 9. Trials 1-3 arrived earlier (start 0) with values at step 1 of 1.0, 2.0, 3.0.
    early = [trial(1, curve(0.5), 0), trial(2, curve(1.5), 0), trial(3, curve(2.5), 0)]
    # At rung 1 the earlier values are 1.0, 2.0, 3.0: the best third's cutoff (quantile 1/3) is 1.667.
    late_bad = trial(4, curve(1.9), start=50)   # 2.4 at step 1
    verdict = asha_rule(late_bad, early, goal="min", grace=1, reduction_factor=3)
    assert verdict is not None and verdict.step == 1 and math.isclose(verdict.threshold, 1 + 2 / 3)
    late_good = trial(5, curve(0.9), start=50)  # 1.4 at step 1, 1.15 at 3 (cutoff at 3: quantile of .75,1.75,2.75)
    assert asha_rule(late_good, early, goal="min", grace=1, reduction_factor=3) is None
    # The first to arrive always goes on, however bad, and later arrivals never change that verdict.
    assert asha_rule(trial(1, curve(9.0), 0), [trial(2, curve(0.1), 10)], goal="min") is None


def test_asha_goal_max() -> None:
    early = [trial(1, {1: 0.9}, 0), trial(2, {1: 0.5}, 0)]
    assert asha_rule(trial(3, {1: 0.4}, 9), early, goal="max", reduction_factor=2) is not None
    assert asha_rule(trial(3, {1: 0.95}, 9), early, goal="max", reduction_factor=2) is None


def test_judge_stops_only_running_trials_with_a_rule() -> None:
    spec = JobSpec(name="t", command=("x",), sweep_id="s", early_stop="median", min_trials=2)
    done = [Job(i, spec, JobState.SUCCEEDED, metric=trial(i, curve(float(i))).history) for i in (1, 2)]
    bad = Job(3, spec, JobState.RUNNING, metric=trial(3, {0: 9.0, 1: 9.0}).history)
    good = Job(4, spec, JobState.RUNNING, metric=trial(4, {0: 1.0, 1: 1.0}).history)
    queued = Job(5, spec, JobState.QUEUED)
    verdicts = judge([*done, bad, good, queued])
    assert list(verdicts) == [3] and verdicts[3].startswith("pruned (median) at step 1: loss 9 worse than the median")
    assert judge([*done, Job(3, spec, JobState.RUNNING, metric=bad.metric, prune="already")]) == {}
