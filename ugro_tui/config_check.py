"""The checks behind cluster.toml's errors: each bad value is one line naming its file, its field and why.

Shared by config.py and config_slurm.py (one table each), so neither imports the other's private helpers."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from ugro_tui.errors import ConfigError


class Checker:
    """Validates one table against a field spec and collects the values."""

    def __init__(self, source: str, path: str, table: Any) -> None:
        self.source = source
        self.path = path
        if not isinstance(table, dict):
            self.fail(None, f"expected a table, got {show(table)}")
        self.table: dict[str, Any] = table

    def where(self, key: str | None) -> str:
        if key is None:
            return self.path
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str | None, problem: str) -> None:
        raise ConfigError(self.source, self.where(key) or None, problem)

    def only(self, allowed: tuple[str, ...]) -> None:
        for key in self.table:
            if key not in allowed:
                near = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f'; did you mean "{near[0]}"?' if near else f"; known keys: {', '.join(allowed)}"
                self.fail(key, f"unknown key{hint}")

    def get(self, key: str, kind: Callable[[Checker, str, Any], Any], default: Any = None,
            required: bool = False) -> Any:
        if key not in self.table:
            if required:
                self.fail(key, "is required")
            return default
        return kind(self, key, self.table[key])


def show(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def string(pattern: re.Pattern[str] | None = None, what: str = "a string") -> Callable[..., str]:
    def check(c: Checker, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            c.fail(key, f"expected {what}, got {show(value)}")
        if pattern is not None and not pattern.match(value):
            c.fail(key, f"expected {what}, got {show(value)}")
        return value

    return check


def choice(options: tuple[str, ...]) -> Callable[..., str]:
    def check(c: Checker, key: str, value: Any) -> str:
        if value not in options:
            c.fail(key, f"expected one of {', '.join(options)}, got {show(value)}")
        return value

    return check
