"""The checks of a job's sweep and early-stopping settings: the metric, its pattern and the rule's numbers."""

from __future__ import annotations

import re
from typing import Any

from ugro_tui.names import text_problem

EARLY_STOP_RULES = ("median", "asha")
METRIC_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
LEAST = {"max_concurrent": 0, "warmup_steps": 0, "min_trials": 1, "grace": 1, "reduction_factor": 2, "max_t": 0}


def search_problem(spec: Any) -> str | None:
    """The sweep and early-stopping settings: the metric, its pattern and the rule's numbers."""
    for pair in spec.params:
        if not (isinstance(pair, tuple) and len(pair) == 2) or any(text_problem(x) for x in pair):
            return f"params: expected NAME = \"value\" pairs, got {pair!r}"
    for key, least in LEAST.items():
        if getattr(spec, key) < least:
            return f"{key}: expected {least} or more, got {getattr(spec, key)}"
    if text_problem(spec.metric) or not METRIC_NAME_RE.match(spec.metric):
        return f"metric: expected a name such as loss or val_acc, got {spec.metric!r}"
    if spec.goal not in ("min", "max"):
        return f"goal: expected min or max, got {spec.goal!r}"
    if spec.early_stop is not None and spec.early_stop not in EARLY_STOP_RULES:
        return f"early_stop: expected {' or '.join(EARLY_STOP_RULES)}, got {spec.early_stop!r}"
    for key in ("keep_last", "keep_best"):
        value = getattr(spec, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            return f"{key}: expected a whole number of 0 or more, got {value!r}"
    if spec.keep_last == 0 and spec.keep_best in (0, None):
        return "keep_last: 0 with keep_best 0 would delete every checkpoint; keep at least one"
    if (spec.keep_last is not None or spec.keep_best is not None) and not spec.checkpoint_dir:
        return "keep_last/keep_best: give the job a checkpoint_dir to keep checkpoints in"
    if spec.metric_regex is not None:
        try:
            groups = re.compile(spec.metric_regex).groups
        except re.error as exc:
            return f"metric_regex: invalid regular expression: {exc}"
        if groups != 2:
            return f"metric_regex: needs two groups, (step) and (value); it has {groups}"
    return None
