"""What the daemon asks a session's node (one round trip): the session's processes, which of them are attached
shells and on which terminal; with a message, it is written to those terminals (as `wall` would). The script is
Python 3.8, like all node code."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from ugro_tui.config import Node
from ugro_tui.core.transport import ConnectError, python_command

SCRIPT = r'''
import glob, json, os, sys
want, store, message, jdir = sys.argv[1].encode(), sys.argv[2].encode(), sys.argv[3], sys.argv[4]
pids, shells = [], []
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        with open("/proc/%s/environ" % pid, "rb") as f:
            env = dict(i.split(b"=", 1) for i in f.read().split(b"\0") if b"=" in i)
    except (OSError, ValueError):
        continue
    if env.get(b"UGRO_SESSION") != want or (store and env.get(b"UGRO_STORE", store) != store):
        continue
    pids.append(int(pid))
    if env.get(b"UGRO_SHELL") == pid.encode():
        try:
            tty = os.readlink("/proc/%s/fd/0" % pid)
        except OSError:
            tty = ""
        shells.append([int(pid), tty])
        if message and tty.startswith("/dev/pts/"):
            try:
                with open(tty, "w") as t:
                    t.write("\r\n\a" + message + "\r\n")
            except OSError:
                pass
jupyter = None
for path in sorted(glob.glob(os.path.join(os.path.expanduser(jdir), "jpserver-*.json"))) if jdir else ():
    try:
        with open(path) as f:
            info = json.load(f)
        jupyter = [int(info["port"]), str(info.get("token") or "")]
    except (OSError, ValueError, KeyError, TypeError):
        continue
print(json.dumps({"pids": pids, "shells": shells, "jupyter": jupyter}))
'''


@dataclass(frozen=True)
class Seen:
    pids: frozenset[int]
    shells: tuple[tuple[int, str], ...]  # (pid, terminal)
    jupyter: tuple[int, str] | None = None  # JupyterLab's (port, token), once it wrote them


def command(node: Node, job_id: int, store: str, message: str = "", jupyter_dir: str = "") -> str:
    words = [str(job_id), store, message, jupyter_dir]
    return f"{python_command(node)} -c {shlex.quote(SCRIPT)} " + " ".join(map(shlex.quote, words))


class ProbeFailed(Exception):
    """The node answered, but not with what the probe prints (its python failed, or the output was cut)."""


# What a look at a session's node may meet: the node not answering, or a bad answer. The watch skips that look
# (whether the node is lost is the dispatcher's to judge).
PROBE_ERRORS = (ProbeFailed, ConnectError, OSError, TimeoutError)


def parse(stdout: str) -> Seen:
    try:
        doc = json.loads(stdout.strip().splitlines()[-1])
        jupyter = doc.get("jupyter")
        return Seen(frozenset(int(p) for p in doc["pids"]), tuple((int(p), str(t)) for p, t in doc["shells"]),
                    (int(jupyter[0]), str(jupyter[1])) if jupyter else None)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ProbeFailed(f"the session probe's answer could not be read: {exc}") from None
