"""A job store's identity: a random name made once per state dir and given to every job as `UGRO_STORE`, so two
installations whose jobs share a node, a login user, job ids and node names never sweep each other's processes."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from ugro_tui.atomic import write_atomic
from ugro_tui.errors import UgroError

_ID_RE = re.compile(r"[0-9a-f]{16}")


class IdentityError(UgroError):
    exit_code = 2


def read_or_make(path: Path, locked: Callable[[], AbstractContextManager[None]]) -> str:
    """The identity in `path`, made under the store's lock when there is none yet (two first users make one)."""
    found = _read(path)
    if found is None:
        with locked():
            found = _read(path)
            if found is None:
                found = secrets.token_hex(8)
                write_atomic(path, found + "\n")
    return found


def _read(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    if not _ID_RE.fullmatch(text):
        raise IdentityError(f"{path}: not a store identity ({text[:40]!r}); restore it from a backup, or remove it "
                            "if no job of this store runs")
    return text
