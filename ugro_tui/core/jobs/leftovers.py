"""Processes of ended attempts still to be killed on nodes that were unreachable, and the sweep that finds a job's
processes on a node by their environment (torchrun's workers run in sessions of their own)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from ugro_tui import paths
from ugro_tui.atomic import write_atomic


def _leftovers_path() -> Path:
    return paths.state_dir() / "leftovers.json"


def leftovers_read() -> list[tuple[int, str]]:
    """(job id, node) pairs whose processes must be swept when the node is reachable again."""
    try:
        return [(int(j), str(n)) for j, n in json.loads(_leftovers_path().read_text())]
    except (OSError, ValueError, TypeError):
        return []


def _leftovers_write(items: list[tuple[int, str]]) -> None:
    path = _leftovers_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(sorted(set(items))))


def leftovers_add(items: list[tuple[int, str]]) -> None:
    _leftovers_write(leftovers_read() + items)


def leftovers_remove(items: list[tuple[int, str]]) -> None:
    gone = set(items)
    _leftovers_write([i for i in leftovers_read() if i not in gone])


def sweep_command(job_id: int, node: str, store: str, sig: int = 9) -> str:
    """KILL every process on the node whose environment says it belongs to this job on this node, of this store
    (UGRO_STORE); a process with no UGRO_STORE was started before stores had one and matches by job and node.
    One grep reads every environment (GNU grep's -z: NUL-separated); a node whose grep lacks it gets a loop
    that starts two programs per process (a node runs hundreds: a thousand programs per sweep). After a KILL it
    waits (up to 2 s) until those processes are gone: a job said to be over holds no GPU and no port."""
    want = shlex.quote(f"UGRO_JOB_ID={int(job_id)}")
    here = shlex.quote(f"UGRO_NODE={node}")
    ours = shlex.quote(f"UGRO_STORE={store}")
    kill = f"kill -{int(sig)}"
    fast = (f"for f in $(grep -lzx -- {want} /proc/[0-9]*/environ 2>/dev/null); do "
            f"grep -qzx -- {here} \"$f\" 2>/dev/null || continue; "
            f"{{ grep -qzx -- {ours} \"$f\" || ! grep -qz '^UGRO_STORE=' \"$f\"; }} 2>/dev/null || continue; "
            f"p=${{f#/proc/}}; p=${{p%/environ}}; {kill} \"$p\" 2>/dev/null && k=\"$k $p\"; done")
    slow = ("for p in /proc/[0-9]*; do e=$(tr '\\0' '\\n' < \"$p/environ\" 2>/dev/null) || continue; "
            f"printf '%s\\n' \"$e\" | grep -qx {want} && printf '%s\\n' \"$e\" | grep -qx {here} && "
            f"{{ printf '%s\\n' \"$e\" | grep -qx {ours} || ! printf '%s\\n' \"$e\" | grep -q '^UGRO_STORE='; }} && "
            f"{kill} \"${{p#/proc/}}\" 2>/dev/null && k=\"$k ${{p#/proc/}}\"; done")
    gone = ("i=0; for p in $k; do while [ $i -lt 40 ] && read -r s < \"/proc/$p/stat\"; do "
            "case $s in *\") Z \"*) break;; esac; sleep 0.05; i=$((i + 1)); done; done 2>/dev/null; "
            if int(sig) == 9 else "")
    return f"k=; if printf 'x\\0' | grep -qzx x 2>/dev/null; then {fast}; else {slow}; fi; {gone}true"
