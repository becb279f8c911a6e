"""Start-up benchmark: `ugro --help` and `ugro --version` against a bare `python -c pass`, side by side.

Usage: python bench/startup.py [--runs N]. Prints medians and the ratio; the goal is --help well under 0.3 s.
"""

from __future__ import annotations

import os
import sys

# bench/queue.py is named like the stdlib module; keep this folder off the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import statistics
import subprocess
import time


def timed(argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    cases = {"python -c pass": [sys.executable, "-c", "pass"],
             "ugro --help": [sys.executable, "-m", "ugro_tui", "--help"],
             "ugro --version": [sys.executable, "-m", "ugro_tui", "--version"]}
    # Interleave the cases so machine noise hits them alike.
    results: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(runs):
        for name, argv in cases.items():
            results[name].append(timed(argv, 1))
    base = statistics.median(results["python -c pass"])
    for name, samples in results.items():
        med = statistics.median(samples)
        print(f"  {name:16s} {med * 1000:7.1f} ms   {med / base:5.2f}x bare python")


if __name__ == "__main__":
    main()
