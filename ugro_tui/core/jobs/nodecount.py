"""A job's node count as the user writes it: `3`, or `2:3` (elastic). Light: the command line checks it
before anything heavier is imported."""

from __future__ import annotations

from ugro_tui.errors import UsageError


def parse_nnodes(text: object, flag: str = "--nnodes") -> tuple[int, int]:
    """`3` -> (0, 3); `2:3` -> (2, 3): (MIN, MAX), MIN 0 for a fixed count. Bad input is one line."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str):
        raise UsageError(f"{flag} {text!r}: expected a node count such as 2, or MIN:MAX such as 2:3")
    low, sep, high = text.strip().partition(":")
    if not (low.isascii() and low.isdecimal() and (not sep or (high.isascii() and high.isdecimal()))):
        raise UsageError(f"{flag} {text}: expected a node count such as 2, or MIN:MAX such as 2:3")
    if not sep:
        if int(low) < 1:
            raise UsageError(f"{flag} {text}: expected 1 or more nodes")
        return 0, int(low)
    lo, hi = int(low), int(high)
    if lo < 1:
        raise UsageError(f"{flag} {text}: MIN must be 1 or more (a job runs on at least one node)")
    if lo > hi:
        raise UsageError(f"{flag} {text}: MIN is more than MAX")
    return lo, hi
