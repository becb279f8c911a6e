"""Files the app reads at run time (themes, shipped templates, the demo's training script), found with
importlib.resources so that a plain `pip install .` has them too. The top-level `themes/` and `examples/` link here."""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path


def folder(name: str) -> Path:
    """A data folder as a real path (a regular install unpacks the package, so this is where it lies)."""
    with as_file(files(__package__) / name) as path:
        return Path(path)


def train_tiny() -> Path:
    return folder("train_tiny.py")


def serve_tiny() -> Path:
    return folder("serve_tiny.py")
