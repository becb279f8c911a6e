"""Signalling GPU processes on a node: only a process that telemetry lists on a GPU, sent as the node's SSH user."""

from __future__ import annotations

from dataclasses import dataclass

from ugro_tui.core.telemetry.model import GpuProcess, NodeStatus
from ugro_tui.core.transport import Transport
from ugro_tui.errors import UsageError

SIGNALS = ("TERM", "INT", "KILL", "HUP", "QUIT", "USR1", "USR2", "STOP", "CONT")
NUMBERS = {"1": "HUP", "2": "INT", "3": "QUIT", "9": "KILL", "15": "TERM"}
DEADLINE = 10.0


def parse_signal(text: str) -> str:
    """"term", "SIGTERM", "15" -> "TERM"; anything else is a usage error naming the known ones."""
    word = text.strip().upper()
    word = NUMBERS.get(word, word[3:] if word.startswith("SIG") else word)
    if word not in SIGNALS:
        raise UsageError(f"unknown signal {text!r}; one of {', '.join(SIGNALS)}")
    return word


def parse_pid(text: str) -> int:
    try:
        pid = int(text)
    except ValueError:
        raise UsageError(f"a pid is a number, got {text!r}") from None
    if pid <= 1:
        raise UsageError(f"pid {pid} is not a process ugro signals")
    return pid


@dataclass(frozen=True)
class Target:
    """A GPU process to signal, with what the confirm dialog shows."""

    node: str
    pid: int
    user: str | None
    command: str | None
    gpus: tuple[int, ...]
    ugro_job: int | None = None

    def describe(self) -> str:
        gpus = ",".join(map(str, self.gpus))
        return f"{self.node} GPU {gpus}  pid {self.pid}  {self.user or '?'}  {self.command or '?'}"


def gpu_processes(status: NodeStatus) -> list[Target]:
    """Every process telemetry lists on a GPU of the node, once, with the GPUs it is on."""
    found: dict[int, tuple[GpuProcess, list[int]]] = {}
    for gpu in status.gpus:
        for proc in gpu.processes:
            found.setdefault(proc.pid, (proc, []))[1].append(gpu.index)
    return [Target(status.name, pid, p.user, p.command, tuple(g), p.ugro_job) for pid, (p, g) in sorted(found.items())]


def find_target(status: NodeStatus, pid: int) -> Target:
    """The listed GPU process `pid` on this node; a usage error for any other pid."""
    targets = gpu_processes(status)
    for target in targets:
        if target.pid == pid:
            return target
    listed = ", ".join(str(t.pid) for t in targets) or "none"
    raise UsageError(f"pid {pid} is not a GPU process on {status.name} (GPU processes there now: {listed}); "
                     "only those can be signalled")


def owning_job(target: Target) -> int | None:
    """The ugro job this process is a rank of ($UGRO_JOB_ID in its environment, which the agent reads: ranks run
    as the node's SSH user, as the agent does). A job's ranks are stopped through the job, never one by one."""
    return target.ugro_job


@dataclass(frozen=True)
class SignalResult:
    target: Target
    signal: str
    ok: bool
    message: str


def explain(stderr: str, target: Target, node_user: str | None) -> str:
    text = stderr.lower()
    if "not permitted" in text:
        who = f" as {node_user}" if node_user else ""
        return (f"operation not permitted: pid {target.pid} belongs to {target.user or 'another user'} and ugro "
                f"signals{who}")
    if "no such process" in text:
        return f"no such process: pid {target.pid} has already exited"
    return stderr.strip().splitlines()[-1] if stderr.strip() else "kill failed"


async def send_signal(transport: Transport, target: Target, signal: str, node_user: str | None = None,
                      timeout: float = DEADLINE) -> SignalResult:
    """`kill -s SIGNAL PID` on the node, as an argv of checked words; never raises for a node's answer."""
    signal = parse_signal(signal)
    try:
        result = await transport.run(["kill", "-s", signal, str(int(target.pid))], timeout=timeout)
    except TimeoutError:
        return SignalResult(target, signal, False, f"{target.node} did not answer within {timeout:g}s")
    except Exception as exc:  # a lost connection is an answer for the user, not a crash
        return SignalResult(target, signal, False, f"{target.node}: {exc}")
    if result.ok:
        return SignalResult(target, signal, True, f"{signal} sent to pid {target.pid} on {target.node}")
    return SignalResult(target, signal, False, f"{target.node}: {explain(result.stderr, target, node_user)}")
