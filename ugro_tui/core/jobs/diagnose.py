"""Failure diagnosis: name what went wrong in a distributed run from its logs, with a one-line hint."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnosis:
    cause: str
    hint: str

    def __str__(self) -> str:
        return f"{self.cause} — {self.hint}"


_PATTERNS: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"Watchdog caught collective operation timeout|ProcessGroupNCCL.*(?:timeout|Timeout)|"
                r"NCCL.*watchdog", re.IGNORECASE),
     "NCCL collective timed out (watchdog)",
     "a rank hung or could not reach the others: check NCCL_SOCKET_IFNAME (socket_ifname) and that every rank "
     "runs the same collectives"),
    (re.compile(r"CUDA out of memory|torch\.OutOfMemoryError|CUDA error: out of memory"),
     "CUDA out of memory",
     "lower the batch size, or ask for more free GPU memory with --min-gpu-mem"),
    (re.compile(r"Address already in use|EADDRINUSE|address in use", re.IGNORECASE),
     "rendezvous port already in use",
     "another process holds the port on the first node; retry (ugro picks a free port) or narrow "
     "rendezvous_ports"),
    (re.compile(r"RendezvousTimeoutError|RendezvousConnectionError|DistStoreError|"
                r"(?:TCPStore|store|rendezvous).*(?:Connection refused|timed out|timeout)|"
                r"Connection refused.*(?:TCPStore|store|rendezvous)|"
                r"The client socket has timed out|failed to connect to the store", re.IGNORECASE),
     "rendezvous / store connection failed",
     "a node could not reach the first node's rendezvous port: check the address, the firewall and "
     "rendezvous_ports"),
]
_ROOT_CAUSE = re.compile(r"Root Cause \(first observed failure\):(?P<block>.*?)(?:\n=+|\Z)", re.DOTALL)
_FIELD = re.compile(r"^\s*\[?\d*\]?:?\s*(?P<key>rank|exitcode|host|time|error_file|traceback)\s*:\s*(?P<value>.*)$",
                    re.MULTILINE)


def root_cause(text: str) -> str | None:
    """torchrun's ChildFailedError block as one line: rank, exit code, signal. Each node's torchrun prints one;
    the earliest by its time field is the real first failure (the others are often its knock-on effects)."""
    blocks = []
    for order, m in enumerate(_ROOT_CAUSE.finditer(text)):
        fields = {f["key"]: f["value"].strip() for f in _FIELD.finditer(m["block"])}
        blocks.append((fields.get("time") or "~", order, fields))  # "~" sorts after any time: unknown last
    if not blocks:
        return None
    fields = min(blocks)[2]
    rank = fields.get("rank", "?").split(" ")[0]
    code = fields.get("exitcode", "?").split(" ")[0]
    signal = re.search(r"Signal (\d+) \((SIG\w+)\)", fields.get("traceback", ""))
    out = f"rank {rank} failed with exit code {code}"
    if signal:
        out += f" ({signal.group(2)})"
    elif code.lstrip("-").isdigit() and int(code) < 0:
        out += f" (signal {-int(code)})"
    return out


def diagnose(text: str, exit_codes: dict[str, int | None]) -> Diagnosis | None:
    """The most specific cause found in the logs of a failed run, or None if nothing is recognised.

    A DistNetworkError at shutdown when every node exited 0 is a known benign race, so nothing is reported."""
    if exit_codes and all(code == 0 for code in exit_codes.values()):
        return None
    for pattern, cause, hint in _PATTERNS:
        if pattern.search(text):
            child = root_cause(text)
            return Diagnosis(f"{cause}; {child}" if child else cause, hint)
    child = root_cause(text)
    if child:
        return Diagnosis(child, "see that rank's pane (ugro logs JOB --rank N) for its traceback")
    return None
