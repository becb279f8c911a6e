"""Where ugro keeps its files, following the XDG base directories."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def config_home() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "ugro"


def state_dir() -> Path:
    """Jobs, logs and the local copy of run output; tests isolate themselves with $XDG_STATE_HOME."""
    return _xdg("XDG_STATE_HOME", ".local/state") / "ugro"


def runtime_dir() -> Path:
    """Short-lived files: demo cluster keys, sshd configs, stand-in executables."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    root = Path(base) if base and os.path.isdir(base) else state_dir() / "run"
    return root / "ugro" if base else root


def config_path(explicit: str | None = None) -> Path | None:
    """--config > $UGRO_CONFIG > ./cluster.toml > $XDG_CONFIG_HOME/ugro/cluster.toml; None when none is there
    (config.resolve_config_path says so in one line)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("UGRO_CONFIG")
    if env:
        return Path(env)
    here = Path("cluster.toml")
    if here.is_file():
        return here
    user = config_home() / "cluster.toml"
    return user if user.is_file() else None
