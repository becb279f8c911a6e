"""Host key checks against known_hosts: unknown and changed keys are refused with the fingerprint shown."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import asyncssh


@dataclass
class HostKeyVerdict:
    """What the server presented and why it was refused (filled in during the handshake)."""

    host: str
    port: int
    fingerprint: str = ""
    key_type: str = ""
    changed: bool = False
    accepted_new: bool = False


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def load_known_hosts(path: Path) -> asyncssh.SSHKnownHosts:
    """Read the file fresh on every connect, so a key trusted elsewhere is seen at once."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = ""
    return asyncssh.import_known_hosts(text)


def has_entry(known: asyncssh.SSHKnownHosts, host: str, addr: str, port: int) -> bool:
    host_keys, ca_keys, *_ = known.match(host, addr, port if port != 22 else None)
    return bool(host_keys or ca_keys)


def append_known_host(path: Path, host: str, port: int, key: asyncssh.SSHKey) -> None:
    """Trust a key explicitly (the user asked for it): one OpenSSH known_hosts line."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    public = key.export_public_key("openssh").decode().split()
    line = f"{known_hosts_name(host, port)} {public[0]} {public[1]}\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def describe(verdict: HostKeyVerdict, known_hosts: Path) -> str:
    name = known_hosts_name(verdict.host, verdict.port)
    if verdict.changed:
        return (f"host key CHANGED for {name} ({verdict.key_type} {verdict.fingerprint}); refusing to connect. "
                f"If the machine was reinstalled, remove the old key with "
                f"`ssh-keygen -R '{name}' -f {known_hosts}` and trust the new one")
    return (f"unknown host key for {name} ({verdict.key_type} {verdict.fingerprint}); "
            f"check the fingerprint, then trust it with `ugro nodes --check --accept-new` (or `a` in the app)")
