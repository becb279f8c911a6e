"""Where ugro keeps its files, following the XDG base directories."""

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
