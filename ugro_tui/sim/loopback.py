"""A real SSH cluster on loopback: one OpenSSH sshd per 127.0.0.x address, each with its own host key.

Used by the tests, the demo and the benchmarks. Only 127.0.0.0/8 is ever used. Where OpenSSH's sshd is
missing, an asyncssh server (in a child process) answers on the same addresses instead.
"""

from __future__ import annotations

import contextlib
import getpass
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from ugro_tui.core.hostkeys import known_hosts_name

SSHD = "/usr/sbin/sshd"
REFERENCE_LAB = (
    ("gpu-master", "RTX 5070 Ti", ["master"]),
    ("gpu1", "RTX 4070", ["worker"]),
    ("gpu2", "RTX 3070 Ti", ["worker"]),
)


def loopback_only(host: str) -> str:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"{host} is not a loopback address; the test cluster never leaves this machine")
    return host


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((loopback_only(host), 0))
        return s.getsockname()[1]


def wait_listening(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((loopback_only(host), port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


def sshd_available() -> bool:
    return os.access(SSHD, os.X_OK)


def write_key(path: Path) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.write_bytes(key.export_private_key())
    path.chmod(0o600)
    path.with_suffix(".pub").write_bytes(key.export_public_key())
    return key


@dataclass
class LoopbackNode:
    name: str
    host: str
    port: int
    folder: Path
    host_key: asyncssh.SSHKey
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class LoopbackCluster:
    """Start with `start()`, stop with `stop()`; `cluster_toml()` gives a config that reaches it."""

    root: Path
    hosts: list[str] = field(default_factory=lambda: ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    use_openssh: bool | None = None
    nodes: list[LoopbackNode] = field(default_factory=list)
    rendezvous: tuple[int, int] = (29500, 29599)  # the config's rendezvous_ports (labs side by side need their own)
    # Its service_ports: every lab's nodes share this machine's 127.0.0.1, where a service binds (labs side by side
    # would meet there, and a frozen node's server still holds its port).
    service_ports: tuple[int, int] = (8000, 8099)

    def __post_init__(self) -> None:
        for host in self.hosts:
            loopback_only(host)
        if self.use_openssh is None:
            self.use_openssh = sshd_available()
        self.root.mkdir(parents=True, exist_ok=True)
        self.client_key_path = self.root / "id_ed25519"
        self.known_hosts_path = self.root / "known_hosts"
        self.authorized_keys = self.root / "authorized_keys"

    def start(self) -> LoopbackCluster:
        client_key = write_key(self.client_key_path)
        self.authorized_keys.write_bytes(client_key.export_public_key())
        self.authorized_keys.chmod(0o600)
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        lines = []
        for i, host in enumerate(self.hosts):
            folder = self.root / f"node{i}"
            folder.mkdir(exist_ok=True)
            node = LoopbackNode(f"node{i}", host, free_port(host), folder, write_key(folder / "host_key"))
            self.nodes.append(node)
            public = node.host_key.export_public_key().decode().split()
            lines.append(f"{known_hosts_name(host, node.port)} {public[0]} {public[1]}\n")
        self.known_hosts_path.write_text("".join(lines))
        for node in self.nodes:
            self.start_node(node)
        for node in self.nodes:
            wait_listening(node.host, node.port)
        return self

    def _sshd_config(self, node: LoopbackNode) -> Path:
        conf = node.folder / "sshd_config"
        home = node.folder / "home"
        home.mkdir(exist_ok=True)
        conf.write_text("\n".join([
            # Each node its own home, as separate machines have: nothing of this machine's dotfiles (a shell
            # profile's pyenv rehash, say) runs in the lab's sessions, and no node sees another's ~/.cache.
            f"SetEnv HOME={home}",
            f"ListenAddress {node.host}:{node.port}",
            f"HostKey {node.folder / 'host_key'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",
            "PidFile none",
            "PrintMotd no",
            "MaxStartups 200:30:400",
            "MaxSessions 64",
            "LogLevel ERROR",
            "Subsystem sftp internal-sftp",
            "",
        ]))
        return conf

    def start_node(self, node: LoopbackNode) -> None:
        log = open(node.folder / "sshd.log", "ab")  # noqa: SIM115 - owned by the child
        if self.use_openssh:
            argv = [SSHD, "-D", "-e", "-f", str(self._sshd_config(node))]
        else:
            argv = [sys.executable, "-m", "ugro_tui.sim.fallback_sshd", node.host, str(node.port),
                    str(node.folder / "host_key"), str(self.authorized_keys)]
        node.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def kill_node(self, index: int) -> None:
        """The node vanishes: its sshd and every session under it die at once."""
        node = self.nodes[index]
        if node.proc is not None:
            _kill_tree(node.proc)
            node.proc = None

    def restart_node(self, index: int) -> None:
        node = self.nodes[index]
        self.start_node(node)
        wait_listening(node.host, node.port)

    def freeze_node(self, index: int) -> None:
        """The node stops answering, as a hung machine does: its sshd and every session under it are stopped."""
        self._signal_tree(index, signal.SIGSTOP)

    def thaw_node(self, index: int) -> None:
        self._signal_tree(index, signal.SIGCONT)

    def _signal_tree(self, index: int, sig: int) -> None:
        proc = self.nodes[index].proc
        tree, todo = _children(), [proc.pid] if proc is not None else []
        while todo:
            pid = todo.pop()
            todo.extend(tree.get(pid, []))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def change_host_key(self, index: int) -> None:
        """As after a reinstall: the node presents a new key that known_hosts does not have."""
        node = self.nodes[index]
        self.kill_node(index)
        node.host_key = write_key(node.folder / "host_key")
        self.restart_node(index)

    def stop(self) -> None:
        for i in range(len(self.nodes)):
            self.kill_node(i)

    def cluster_toml(self, *, names: list[str] | None = None, sim: list[tuple[list[str], str]] | None = None,
                     poll_interval: float = 1.0, extra_node: str = "", user: str | None = None,
                     rendezvous: tuple[int, int] | None = None) -> str:
        """A cluster.toml that reaches these nodes; `sim` gives each node's (GPU models, source); `rendezvous`:
        its rendezvous_ports (default: the lab's)."""
        lo, hi = rendezvous or self.rendezvous
        user = user or getpass.getuser()
        parts = [
            "[cluster]",
            'name = "loopback"',
            f"poll_interval = {poll_interval}",
            f"rendezvous_ports = [{lo}, {hi}]",
            f"service_ports = [{self.service_ports[0]}, {self.service_ports[1]}]",
            f'known_hosts = "{self.known_hosts_path}"',
            "connect_timeout = 5.0",
            "",
        ]
        for i, node in enumerate(self.nodes):
            name = names[i] if names else node.name
            parts += [
                "[[nodes]]",
                f'name = "{name}"',
                f'host = "{node.host}"',
                f"port = {node.port}",
                f'user = "{user}"',
                f'identity_file = "{self.client_key_path}"',
                f'python = "{sys.executable}"',
                f'workdir = "{self.root / "work" / name}"',
                'socket_ifname = "lo"',
            ]
            if sim:
                models, source = sim[i]
                parts.append("sim = { gpus = [" + ", ".join(f'"{m}"' for m in models) + f'], source = "{source}" }}')
            parts.append("")
        return "\n".join(parts) + extra_node


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(b")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """sshd starts a new session per connection, so a process group kill misses them: walk the tree."""
    tree = _children()
    doomed, todo = [], [proc.pid]
    while todo:
        pid = todo.pop()
        doomed.append(pid)
        todo.extend(tree.get(pid, []))
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)


def job_processes(job_id: int | None = None, node: str | None = None, store: str | None = None) -> list[int]:
    """Live processes on this machine that belong to a ugro job (of one job, on one node, of one job store, if given):
    every node of a loopback lab runs here, and ugro marks what it starts with UGRO_JOB_ID, UGRO_NODE and UGRO_STORE
    in the environment."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            if Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
        except OSError:
            continue
        if not any(e.startswith(b"UGRO_JOB_ID=") for e in env):
            continue
        if job_id is not None and f"UGRO_JOB_ID={job_id}".encode() not in env:
            continue
        if node is not None and f"UGRO_NODE={node}".encode() not in env:
            continue
        if store is not None and f"UGRO_STORE={store}".encode() not in env:
            continue
        out.append(int(entry))
    return out
