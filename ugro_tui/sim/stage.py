"""Puts the stand-in `nvidia-smi` and `pynvml` on a simulated node's PATH/PYTHONPATH (demo and tests only)."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ugro_tui import paths
from ugro_tui.atomic import write_atomic

NODE_DIR = Path(__file__).resolve().parent / "node"


def stand_in_bin(root: Path | None = None) -> Path:
    """A folder holding an executable `nvidia-smi` that runs the stand-in (written once, world-readable)."""
    folder = (root or paths.runtime_dir()) / "sim-bin"
    exe = folder / "nvidia-smi"
    script = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(NODE_DIR / "nvidia_smi.py"))} "$@"\n'
    if not exe.exists() or exe.read_text() != script:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(exe, script, mode=0o755, durable=False)  # made again from the source when lost
    return folder


def shell_prefix(node: str, source: str, gpus: Sequence[tuple[str, int, int]]) -> str:
    """Exports for one command on a simulated node: its name, GPU source and (name, memory MiB, power limit W) per
    GPU. Plain values, so the config that asks needs no import back."""
    spec = {"node": node, "source": source, "gpus": [list(g) for g in gpus]}
    parts = [f"export UGRO_SIM={shlex.quote(json.dumps(spec, separators=(',', ':')))}; "]
    if source in ("nvml", "nvidia-smi", "mismatch"):
        parts.append(f'export PATH={shlex.quote(str(stand_in_bin()))}:"$PATH"; ')
    if source in ("nvml", "mismatch"):
        parts.append(f'export PYTHONPATH={shlex.quote(str(NODE_DIR))}${{PYTHONPATH:+:$PYTHONPATH}}; ')
    return "".join(parts)
