"""The web token: 32 random bytes in $XDG_CONFIG_HOME/ugro/web-token (mode 0600), compared in constant time."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from ugro_tui import paths
from ugro_tui.atomic import write_atomic
from ugro_tui.errors import UgroError


def token_path() -> Path:
    return paths.config_home() / "web-token"


def load_or_create(path: Path | None = None, *, rotate: bool = False) -> str:
    """The token, made on first use (or replaced when `rotate`); a file others can read is refused."""
    path = path or token_path()
    if path.exists() and not rotate:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise UgroError(f"{path}: mode {mode:o} lets others read the web token; chmod 600 it, or "
                            "`ugro web --rotate-token`")
        token = path.read_text().strip()
        if len(token) >= 43:
            return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)  # 32 bytes: 43 characters
    write_atomic(path, token + "\n", mode=0o600)
    return token


def same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())
