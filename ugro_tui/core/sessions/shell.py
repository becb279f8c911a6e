"""How a person reaches a session: the shell command run on its node, the system `ssh -t` that runs it, and the
`Host ugro-session-ID` entries of the SSH config file ugro owns (for `ssh ugro-session-7` and VS Code)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from ugro_tui.atomic import write_atomic
from ugro_tui.config import Cluster, Node
from ugro_tui.core.jobs.model import Job
from ugro_tui.core.transport import path_word
from ugro_tui.errors import UgroError

HEADER = "# Written by ugro: one Host entry per session, removed when the session ends. Edits here are lost.\n"
HOST_RE = re.compile(r"^Host ugro-session-(\d+)\s*$")


def remote_shell(job: Job) -> str:
    """The command that opens a shell in the session on its node: its workdir, its GPUs and UGRO_SESSION from the
    file the keeper wrote, UGRO_SHELL naming the shell (the daemon counts attached shells by it)."""
    run = job.runs[0][1] if job.runs else None
    if run is None or not run.run_dir:
        raise UgroError(f"session {job.id} is {job.state}: it holds no GPUs yet")
    env = f"{path_word(run.run_dir)}/session.sh"
    return (f"[ -r {env} ] || {{ echo 'ugro: session {job.id} has ended' >&2; exit 1; }}; . {env} && "
            'UGRO_SHELL=$$ && export UGRO_SHELL && exec "${SHELL:-/bin/sh}" -i')


def ssh_options(cluster: Cluster, node: Node) -> list[str]:
    """The system ssh's options for a node, as ugro connects: its known_hosts checked strictly (an unknown or
    changed key is refused, never accepted), its port, its key."""
    out = ["-o", f"UserKnownHostsFile={cluster.known_hosts_path}", "-o", "StrictHostKeyChecking=yes"]
    if cluster.ssh_config:
        out = ["-F", os.path.expanduser(cluster.ssh_config), *out]
    if node.port:
        out += ["-p", str(node.port)]
    if node.identity_file:
        out += ["-i", os.path.expanduser(node.identity_file), "-o", "IdentitiesOnly=yes"]
    return out


def login(node: Node) -> str:
    return f"{node.user}@{node.host}" if node.user else node.host


def attach_argv(cluster: Cluster, job: Job) -> list[str]:
    """The argv that opens a shell in the session, in this terminal."""
    node = cluster.node(job.runs[0][0]) if job.runs else None
    command = remote_shell(job)
    if node is None:
        raise UgroError(f"session {job.id} holds no GPUs yet")
    if node.is_local:
        return ["sh", "-c", command]
    return ["ssh", "-t", *ssh_options(cluster, node), login(node), command]


def config_path() -> Path:
    return Path.home() / ".ssh" / "config.d" / "ugro"


def _entries(text: str) -> dict[int, str]:
    """session id -> its entry, in the file ugro owns."""
    out: dict[int, str] = {}
    current: int | None = None
    for line in text.splitlines(keepends=True):
        found = HOST_RE.match(line)
        if found:
            current = int(found.group(1))
            out[current] = ""
        if current is not None:
            out[current] += line
    return out


def _read_ours(path: Path) -> dict[int, str]:
    """The entries of ugro's file; a file there that ugro did not write is never touched."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    if not text.startswith(HEADER):
        raise UgroError(f"{path} exists and ugro did not write it; it is left as it is (move it away to let ugro "
                        "write its session entries there)")
    return _entries(text)


def _write(path: Path, entries: dict[int, str]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, HEADER + "".join(entries[k] for k in sorted(entries)), mode=0o600)


def host_entry(cluster: Cluster, job: Job) -> str:
    node = cluster.node(job.runs[0][0])
    lines = [f"Host ugro-session-{job.id}", f"    HostName {node.host}"]
    if node.port:
        lines.append(f"    Port {node.port}")
    if node.user:
        lines.append(f"    User {node.user}")
    if node.identity_file:
        lines += [f"    IdentityFile {os.path.expanduser(node.identity_file)}", "    IdentitiesOnly yes"]
    lines += [f"    UserKnownHostsFile {cluster.known_hosts_path}", "    StrictHostKeyChecking yes",
              "    RequestTTY yes", "    RemoteCommand " + remote_shell(job).replace("%", "%%")]
    return "\n".join(lines) + "\n"


def add_entry(cluster: Cluster, job: Job, path: Path | None = None) -> Path:
    path = path or config_path()
    entries = _read_ours(path)
    entries[job.id] = host_entry(cluster, job)
    _write(path, entries)
    return path


def remove_entries(keep: set[int], path: Path | None = None) -> list[int]:
    """Drop the entries of sessions not in `keep` (ended ones); returns their ids. A foreign file: nothing."""
    path = path or config_path()
    try:
        entries = _read_ours(path)
    except UgroError:
        return []
    gone = [k for k in entries if k not in keep]
    if gone:
        _write(path, {k: v for k, v in entries.items() if k in keep})
    return gone


def include_line(path: Path | None = None) -> str:
    return f"Include {path or config_path()}"


def included(ssh_config: Path | None = None, path: Path | None = None) -> bool:
    ssh_config = ssh_config or Path.home() / ".ssh" / "config"
    try:
        text = ssh_config.read_text()
    except FileNotFoundError:
        return False
    target = str(path or config_path())
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # an unbalanced quote: not an Include of ours
            continue
        if words and words[0].lower() == "include" and target in words[1:]:
            return True
    return False


def add_include(ssh_config: Path | None = None, path: Path | None = None) -> None:
    """`Include` ugro's file from ~/.ssh/config, once, at the top (an Include after a Host line would belong to
    that host)."""
    ssh_config = ssh_config or Path.home() / ".ssh" / "config"
    ssh_config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = ssh_config.read_text() if ssh_config.exists() else ""
    write_atomic(ssh_config, f"{include_line(path)}\n" + text, mode=0o600)
