"""Telemetry as data: GPU samples, node status with history, and cluster health."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


def short_model(name: str | None, missing: str = "–") -> str:
    """"NVIDIA GeForce RTX 4070" -> "RTX 4070": the part a user tells GPUs apart by."""
    if not name:
        return missing
    for noise in ("NVIDIA ", "GeForce "):
        name = name.replace(noise, "")
    return name


def byte_rate(bps: float | None, missing: str = "–") -> str:
    """Bytes per second in four cells or fewer: 0, 950, 12K, 1.2M, 3.4G."""
    if bps is None:
        return missing
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if bps >= size:
            value = bps / size
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return f"{bps:.0f}"


class NodeState(StrEnum):
    CONNECTING = "connecting"
    ONLINE = "online"
    STALE = "stale"
    OFFLINE = "offline"
    AUTH_FAILED = "auth-failed"
    HOST_KEY_MISMATCH = "host-key-mismatch"
    UNKNOWN_HOST_KEY = "unknown-host-key"

    @property
    def retries(self) -> bool:
        """Auth and host key problems need the user; retrying would only hammer the node."""
        return self not in (NodeState.AUTH_FAILED, NodeState.HOST_KEY_MISMATCH, NodeState.UNKNOWN_HOST_KEY)


@dataclass(frozen=True, slots=True)
class GpuProcess:
    pid: int
    user: str | None
    command: str | None
    used_mib: int | None
    ugro_job: int | None = None  # the ugro job whose rank this is (its environment says), when the agent can read it


@dataclass(frozen=True, slots=True)
class GpuSample:
    index: int
    uuid: str | None
    name: str | None
    utilization_pct: float | None
    memory_used_mib: int | None
    memory_total_mib: int | None
    temperature_c: float | None
    power_w: float | None
    power_limit_w: float | None
    fan_pct: float | None
    processes: tuple[GpuProcess, ...] = ()
    energy_mj: float | None = None  # NVML's total energy since the driver loaded, where the GPU has the counter

    @classmethod
    def from_agent(cls, raw: dict[str, Any]) -> GpuSample:
        def num(key: str) -> Any:
            value = raw.get(key)
            return value if isinstance(value, int | float) and not isinstance(value, bool) else None

        procs = tuple(
            GpuProcess(int(p["pid"]), p.get("user"), p.get("command"),
                       p.get("used_mib") if isinstance(p.get("used_mib"), int) else None,
                       p.get("ugro_job") if isinstance(p.get("ugro_job"), int) else None)
            for p in raw.get("processes") or () if isinstance(p, dict) and isinstance(p.get("pid"), int)
        )
        index = raw.get("index")
        return cls(
            index=index if isinstance(index, int) else 0,
            uuid=raw.get("uuid") if isinstance(raw.get("uuid"), str) else None,
            name=raw.get("name") if isinstance(raw.get("name"), str) else None,
            utilization_pct=num("utilization_pct"), memory_used_mib=num("memory_used_mib"),
            memory_total_mib=num("memory_total_mib"), temperature_c=num("temperature_c"), power_w=num("power_w"),
            power_limit_w=num("power_limit_w"), fan_pct=num("fan_pct"), processes=procs,
            energy_mj=num("energy_mj"),
        )

    @property
    def memory_free_mib(self) -> int | None:
        if self.memory_total_mib is None or self.memory_used_mib is None:
            return None
        return self.memory_total_mib - self.memory_used_mib

    @property
    def busy(self) -> bool:
        return bool(self.processes) or (self.utilization_pct or 0) >= 10

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index, "uuid": self.uuid, "name": self.name, "utilization_pct": self.utilization_pct,
            "memory_used_mib": self.memory_used_mib, "memory_total_mib": self.memory_total_mib,
            "temperature_c": self.temperature_c, "power_w": self.power_w, "power_limit_w": self.power_limit_w,
            "fan_pct": self.fan_pct, "energy_mj": self.energy_mj,
            "processes": [{"pid": p.pid, "user": p.user, "command": p.command, "used_mib": p.used_mib,
                           "ugro_job": p.ugro_job} for p in self.processes],
        }


HOST_NUMBERS = ("cpu_pct", "cores", "load1", "load5", "load15", "mem_used_mib", "mem_total_mib", "swap_used_mib",
                "disk_free_gib", "net_rx_bps", "net_tx_bps", "uptime_s")


def _number(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class HostSample:
    """The node as a machine: CPU, load, memory, disk and network (None where the node did not say)."""

    cpu_pct: float | None = None
    cores: int | None = None
    load1: float | None = None
    load5: float | None = None
    load15: float | None = None
    mem_used_mib: int | None = None
    mem_total_mib: int | None = None
    swap_used_mib: int | None = None
    disk_free_gib: float | None = None
    net_rx_bps: float | None = None
    net_tx_bps: float | None = None
    uptime_s: int | None = None
    net_loopback_only: bool = False  # a machine without other interfaces: its loopback traffic is what counts
    mem_limited: bool = False        # memory is a container's cgroup limit, not the machine's

    @classmethod
    def from_agent(cls, raw: Any) -> HostSample | None:
        if not isinstance(raw, dict):
            return None
        return cls(**{k: _number(raw.get(k)) for k in HOST_NUMBERS},
                   net_loopback_only=raw.get("net_loopback_only") is True, mem_limited=raw.get("mem_limited") is True)

    @property
    def mem_pct(self) -> float | None:
        if self.mem_used_mib is None or not self.mem_total_mib:
            return None
        return 100.0 * self.mem_used_mib / self.mem_total_mib

    @property
    def net_bps(self) -> float | None:
        parts = [v for v in (self.net_rx_bps, self.net_tx_bps) if v is not None]
        return sum(parts) if parts else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in HOST_NUMBERS}
        out["net_loopback_only"] = self.net_loopback_only
        out["mem_limited"] = self.mem_limited
        return out


@dataclass(frozen=True)
class SlurmAllocation:
    """A Slurm node as sinfo shows it: its state, GPUs and how many of them jobs hold."""

    state: str
    gpus: int
    gpus_used: int
    partitions: tuple[str, ...] = ()
    reason: str = ""
    live: bool = False  # the node is one of [[nodes]] too, so its GPU agent gives live numbers beside this

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "gpus": self.gpus, "gpus_allocated": self.gpus_used,
                "partitions": list(self.partitions), "reason": self.reason, "live_telemetry": self.live}


@dataclass
class NodeStatus:
    name: str
    address: str
    state: NodeState = NodeState.CONNECTING
    error: str | None = None
    source: str | None = None
    driver: str | None = None
    gpus: tuple[GpuSample, ...] = ()
    sampled_at: float | None = None   # the node's clock, when the agent sampled
    received_at: float | None = None  # ours, when the sample arrived
    next_retry_at: float | None = None
    history_len: int = 120
    history: dict[int, deque[float | None]] = field(default_factory=dict)
    host: HostSample | None = None
    cpu_history: deque[float | None] = field(default_factory=deque)
    slurm: SlurmAllocation | None = None  # what Slurm says of this node (the Slurm backend)

    @property
    def healthy(self) -> bool:
        return self.state is NodeState.ONLINE and self.error is None

    def apply_sample(self, raw: dict[str, Any], received_at: float) -> None:
        """Take one agent line; cost is O(GPUs)."""
        gpus = tuple(GpuSample.from_agent(g) for g in raw.get("gpus") or () if isinstance(g, dict))
        self.gpus = gpus
        self.source = raw.get("source")
        self.driver = raw.get("driver")
        self.error = raw.get("error")
        self.sampled_at = raw.get("t") if isinstance(raw.get("t"), int | float) else received_at
        self.received_at = received_at
        self.state = NodeState.ONLINE
        self.next_retry_at = None
        self.host = HostSample.from_agent(raw.get("host"))
        if self.host is not None:
            if self.cpu_history.maxlen != self.history_len:
                self.cpu_history = deque(self.cpu_history, maxlen=self.history_len)
            self.cpu_history.append(self.host.cpu_pct)
        for gpu in gpus:
            ring = self.history.get(gpu.index)
            if ring is None:
                ring = self.history[gpu.index] = deque(maxlen=self.history_len)
            ring.append(gpu.utilization_pct)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "state": str(self.state), "error": self.error,
                "source": self.source, "driver": self.driver, "sampled_at": self.sampled_at,
                "next_retry_at": self.next_retry_at, "gpus": [g.to_json() for g in self.gpus],
                "host": self.host.to_json() if self.host is not None else None,
                **({"slurm": self.slurm.to_json()} if self.slurm is not None else {})}


@dataclass(frozen=True)
class Health:
    nodes_total: int
    nodes_healthy: int
    gpus_total: int
    gpus_busy: int
    memory_total_gb: float
    memory_used_gb: float
    utilization_pct: float | None

    def to_json(self) -> dict[str, Any]:
        return {"nodes_total": self.nodes_total, "nodes_healthy": self.nodes_healthy,
                "gpus_total": self.gpus_total, "gpus_busy": self.gpus_busy,
                "memory_total_gb": round(self.memory_total_gb, 2), "memory_used_gb": round(self.memory_used_gb, 2),
                "utilization_pct": None if self.utilization_pct is None else round(self.utilization_pct, 1)}


class ClusterState:
    """Every node's latest status, in config order."""

    def __init__(self, nodes: list[tuple[str, str]], history: int = 120) -> None:
        self.nodes: dict[str, NodeStatus] = {
            name: NodeStatus(name, address, history_len=history) for name, address in nodes}

    def health(self) -> Health:
        """Counts only nodes that are online now: a stale or offline node's last numbers may be wrong."""
        gpus = [g for n in self.nodes.values() if n.state is NodeState.ONLINE for g in n.gpus]
        utils = [g.utilization_pct for g in gpus if g.utilization_pct is not None]
        mib = 1024.0
        return Health(
            nodes_total=len(self.nodes),
            nodes_healthy=sum(n.healthy for n in self.nodes.values()),
            gpus_total=len(gpus),
            gpus_busy=sum(g.busy for g in gpus),
            memory_total_gb=sum(g.memory_total_mib or 0 for g in gpus) / mib,
            memory_used_gb=sum(g.memory_used_mib or 0 for g in gpus) / mib,
            utilization_pct=sum(utils) / len(utils) if utils else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {"health": self.health().to_json(), "nodes": [n.to_json() for n in self.nodes.values()]}
