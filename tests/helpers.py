"""The tests' one way to run the `ugro` command and to wait for a condition (never for a fixed time)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_ugro(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ugro_tui", *args], capture_output=True, text=True, timeout=timeout)


def ugro(config: Path, *args: str, timeout: float = 60, strict: bool = True) -> subprocess.CompletedProcess[str]:
    """`ugro VERB --config CONFIG ARGS...` (the config goes before any `--`). strict: a traceback or an
    "unexpected error" on stderr fails the test whatever the exit code."""
    done = run_ugro(args[0], "--config", str(config), *args[1:], timeout=timeout)
    if strict:
        assert "Traceback" not in done.stderr and "unexpected error" not in done.stderr, done.stderr
    return done


def wait(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> float:
    """Poll `predicate` until it is true; returns the seconds it took, fails naming `what` after `timeout`."""
    began = time.monotonic()
    while not predicate():
        assert time.monotonic() - began < timeout, f"timed out waiting for {what}"
        time.sleep(every)
    return time.monotonic() - began


def job(config: Path, job_id: int) -> dict:
    """`ugro show ID --json`: the job as the store has it now."""
    return json.loads(ugro(config, "show", str(job_id), "--json").stdout)


def steps_done(text: str) -> list[int]:
    """The steps `examples/train_tiny.py` printed (`step N loss ...`), in order."""
    return [int(s) for s in re.findall(r"^step (\d+) loss", text, re.MULTILINE)]
