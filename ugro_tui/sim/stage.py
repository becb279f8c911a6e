"""Puts the stand-in `nvidia-smi` and `pynvml` on a simulated node's PATH/PYTHONPATH (demo and tests only)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ugro_tui import paths

if TYPE_CHECKING:  # the config asks the stage for a simulated node's exports: no import back at run time
    from ugro_tui.config import Node

NODE_DIR = Path(__file__).resolve().parent / "node"


def stand_in_bin(root: Path | None = None) -> Path:
    """A folder holding an executable `nvidia-smi` that runs the stand-in (written once, world-readable)."""
    folder = (root or paths.runtime_dir()) / "sim-bin"
    exe = folder / "nvidia-smi"
    script = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(NODE_DIR / "nvidia_smi.py"))} "$@"\n'
    if not exe.exists() or exe.read_text() != script:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = exe.with_suffix(".tmp")
        tmp.write_text(script)
        tmp.chmod(0o755)
        tmp.replace(exe)
    return folder


def shell_prefix(node: Node) -> str:
    """Exports for one command on `node`; empty for a real node."""
    if node.sim is None:
        return ""
    spec = {"node": node.name, "source": node.sim.source,
            "gpus": [[g.name, g.memory_mib, g.power_limit_w] for g in node.sim.gpus]}
    parts = [f"export UGRO_SIM={shlex.quote(json.dumps(spec, separators=(',', ':')))}; "]
    if node.sim.source in ("nvml", "nvidia-smi", "mismatch"):
        parts.append(f'export PATH={shlex.quote(str(stand_in_bin()))}:"$PATH"; ')
    if node.sim.source in ("nvml", "mismatch"):
        parts.append(f'export PYTHONPATH={shlex.quote(str(NODE_DIR))}${{PYTHONPATH:+:$PYTHONPATH}}; ')
    return "".join(parts)
