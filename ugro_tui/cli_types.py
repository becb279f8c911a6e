"""argparse types of the command line: a bad value is one line naming what was expected."""

from __future__ import annotations

import argparse


def number(kind: type, least: float, what: str):
    """An argparse type: a `kind` number of at least `least`, with a message in the user's words."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not least <= value < 1e9:
            raise argparse.ArgumentTypeError(f"expected {least:g} or more, got {text}")
        return value

    return parse


count = number(int, 0, "a whole number")


def attempt(text: str) -> int | str:
    return text if text == "all" else count(text)
positive_int = number(int, 1, "a whole number")
gigabytes = number(float, 0, "a number of GB")
seconds = number(float, 0, "a number of seconds")


def share_gb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of GB, got {text!r}") from None
    if not 0 < value < 1e6:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected a number of GB above 0, got {text}")
    return value


def hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of hours, got {text!r}") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"expected a number of hours above 0, got {text}")
    return value


def port(text: str) -> int:
    if not (text.isascii() and text.isdecimal()) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {text!r}")
    return int(text)


def span(text: str) -> float:
    """`--for`: a time span in seconds, written 90s, 30m, 2h or 1d (a bare number is hours)."""
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}.get(text[-1:].lower())
    try:
        value = float(text[:-1] if scale else text) * (scale or 3600.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a time such as 30m, 2h or 1d, got {text!r}") from None
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"expected a time above 0, got {text!r}")
    return value


def gpu_list(text: str) -> tuple[int, ...]:
    """`--gpus 0,1`: GPU indexes."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(p.isascii() and p.isdecimal() and int(p) < 64 for p in parts):
        raise argparse.ArgumentTypeError(f"expected GPU indexes such as 0 or 0,1, got {text!r}")
    return tuple(sorted({int(p) for p in parts}))


def node_count(text: str) -> str:
    """`--nnodes`: K, or MIN:MAX (elastic); the job's checks take it from here."""
    from ugro_tui.core.jobs.nodecount import parse_nnodes
    from ugro_tui.errors import UsageError

    try:
        parse_nnodes(text, "")
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).strip()) from None
    return text
