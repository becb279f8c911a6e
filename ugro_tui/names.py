"""Which names ugro accepts, in one place: config, job specs, templates and the form all check against these.

A name may reach a remote shell or a file path, so each pattern admits no shell character, space or `/`.
"""

from __future__ import annotations

import re

# Node, label and template names.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# Environment variable names as POSIX shells accept them in `export NAME=...`.
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def env_name_problem(name: object) -> str | None:
    """Why `name` cannot be an environment variable's name, or None."""
    if not isinstance(name, str) or not ENV_NAME_RE.match(name):
        return f"{name!r} is not a variable name (letters, digits and _, not starting with a digit)"
    return None


def text_problem(value: object) -> str | None:
    """Why `value` is no usable text (not a string, or with a NUL byte), or None."""
    if not isinstance(value, str):
        return f"expected text, got {value!r}"
    if "\0" in value:
        return "contains a NUL byte"
    return None
