"""Signals and pids as typed, and what a node's `kill` says, in the user's words."""

from __future__ import annotations

import pytest

from ugro_tui.core.signals import Target, explain, parse_pid, parse_signal
from ugro_tui.errors import UsageError


@pytest.mark.parametrize(("text", "name"), [("term", "TERM"), ("SIGKILL", "KILL"), ("9", "KILL"), (" int ", "INT"),
                                            ("15", "TERM"), ("usr1", "USR1")])
def test_signals_as_people_type_them(text: str, name: str) -> None:
    assert parse_signal(text) == name


@pytest.mark.parametrize("text", ["BOGUS", "SIGFOO", "99", "", "SEGV"])
def test_unknown_signals_name_the_known_ones(text: str) -> None:
    with pytest.raises(UsageError, match="unknown signal .*; one of TERM, INT, KILL"):
        parse_signal(text)


@pytest.mark.parametrize(("text", "words"), [("12ab", "a pid is a number"), ("1", "pid 1 is not a process"),
                                             ("-5", "pid -5 is not a process")])
def test_bad_pids(text: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        parse_pid(text)


def test_what_kill_says_is_said_plainly() -> None:
    target = Target("gpu1", 4242, "ollie", "python train.py", (0,))
    assert explain("sh: 1: kill: Operation not permitted\n", target, "ob") == (
        "operation not permitted: pid 4242 belongs to ollie and ugro signals as ob")
    assert explain("kill: (4242) - No such process\n", target, None) == (
        "no such process: pid 4242 has already exited")
    assert explain("something odd\nlast line\n", target, None) == "last line"
