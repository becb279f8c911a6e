"""cluster.toml <-> Cluster/Node dataclasses. Every error names the file and the field path."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ugro_tui import paths
from ugro_tui.config_check import Checker as _Checker
from ugro_tui.config_check import choice as _choice
from ugro_tui.config_check import show as _show
from ugro_tui.config_check import string as _string
from ugro_tui.errors import ConfigError
from ugro_tui.names import ENV_NAME_RE, NAME_RE

if TYPE_CHECKING:
    from ugro_tui.config_slurm import SlurmConfig

# Hostnames, IPv4, IPv6 (with optional zone) and ~/.ssh/config aliases; never spaces or shell characters.
HOST_RE = re.compile(r"^[A-Za-z0-9_.:%-]{1,253}$")
USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
LOCAL_HOSTS = frozenset({"localhost"})
SIM_SOURCES = ("nvml", "nvidia-smi", "none", "mismatch")


@dataclass(frozen=True)
class SimGpu:
    """A simulated GPU model for demos and tests (only the data source is simulated)."""

    name: str
    memory_mib: int
    power_limit_w: float


@dataclass(frozen=True)
class SimSpec:
    gpus: tuple[SimGpu, ...]
    source: str = "nvml"


@dataclass(frozen=True)
class Node:
    name: str
    host: str
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    python: str = "python3"
    workdir: str = "~/ugro"
    labels: tuple[str, ...] = ()
    socket_ifname: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    transport: str = "auto"
    sim: SimSpec | None = None
    data: tuple[tuple[str, float, str], ...] = ()  # datasets every job placed here needs (path, min GB, sha256)
    code_dir: str = "~/.cache/ugro/code"  # where `--sync` trees live on the node
    energy_price: float | None = None  # per kWh, where this node's electricity costs other than [cluster]'s
    share_gpus: bool = True  # jobs that declare --gpu-mem may share a card here; false keeps every card whole
    desktop: bool = False  # someone sits at it: its GPUs are yielded to a process ugro did not start

    @property
    def prelude(self) -> str:
        """Shell exports that every command ugro runs on the node starts with. Empty for a real node; a simulated
        node puts its stand-in nvidia-smi and pynvml first on PATH/PYTHONPATH. Core code reads this and never
        imports the simulator."""
        if self.sim is None:
            return ""
        from ugro_tui.sim.stage import shell_prefix

        return shell_prefix(self.name, self.sim.source,
                            [(g.name, g.memory_mib, g.power_limit_w) for g in self.sim.gpus])

    @property
    def is_local(self) -> bool:
        if self.transport == "auto":
            return self.host in LOCAL_HOSTS
        return self.transport == "local"

    @property
    def address(self) -> str:
        """user@host[:port] as the user would type it."""
        who = f"{self.user}@" if self.user else ""
        where = f"{who}{self.host}"
        return f"{where}:{self.port}" if self.port and self.port != 22 else where


@dataclass(frozen=True)
class AlertsConfig:
    """[alerts]: thresholds of the GPU alerts, the bell, and a command run once per event."""

    gpu_hot_c: float = 85.0
    idle_minutes: float = 10.0
    notify_command: str | None = None
    bell: bool = True


@dataclass(frozen=True)
class DaemonConfig:
    """[daemon]: when the background daemon (one per master and state dir) starts and stops by itself."""

    idle_exit: float = 600.0  # seconds with no client, no unfinished job and no service; 0: never
    autostart: bool = True    # clients start one when none answers, as tmux starts its server
    ledger: bool = True       # record GPU-hours, energy and each job's GPU history (`ugro usage`)


@dataclass(frozen=True)
class Cluster:
    name: str = "ugro"
    poll_interval: float = 1.0
    rendezvous_ports: tuple[int, int] = (29500, 29599)
    service_ports: tuple[int, int] = (8000, 8099)  # where a service without --port gets one
    known_hosts: str | None = None
    ssh_config: str | None = None
    connect_timeout: float = 5.0
    node_lost_after: float = 30.0  # seconds unreachable before a node's jobs fail their attempt
    history: int = 120
    read_only: bool = False  # refuse every change (submit, cancel, kill, node edits): a shared machine's viewer
    sync_limit_mb: int = 200  # the most a `--sync` tree may hold
    energy_price: float = 0.0  # per kWh, in `currency`: every energy figure shows its cost
    currency: str = "EUR"
    gpu_mem_headroom_gb: float = 0.5  # kept free on a card that jobs share
    preempt_grace: float = 60.0  # seconds a preempted job has, after TERM, to save its work before KILL
    session_grace: float = 10.0  # seconds an ending session's processes (an editor, a notebook) have before KILL
    rendezvous_timeout: float = 600.0  # seconds torchrun's nodes wait for each other (its store: up to 60 of them)
    yield_min_mib: int = 512  # a desktop's GPU is yielded to a process ugro did not start that holds more than this
    yield_after: float = 20.0  # ... for this many seconds
    yield_idle_minutes: float = 5.0  # and comes back once that process has been gone this long
    alerts: AlertsConfig = AlertsConfig()
    daemon: DaemonConfig = DaemonConfig()
    backend: str = "ssh"  # where jobs run: ugro's own dispatcher over SSH, or a Slurm cluster
    slurm: SlurmConfig | None = None  # the [slurm] table
    nodes: tuple[Node, ...] = ()
    keys: tuple[tuple[str, str], ...] = ()
    source: str = "cluster.toml"

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def known_hosts_path(self) -> Path:
        return Path(os.path.expanduser(self.known_hosts or "~/.ssh/known_hosts"))


# --- validation -----------------------------------------------------------------------------------------------


def _integer(lo: int, hi: int) -> Callable[..., int]:
    def check(c: _Checker, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            c.fail(key, f"expected an integer {lo}-{hi}, got {_show(value)}")
        return value

    return check


def _seconds(lo_exclusive: float, hi: float) -> Callable[..., float]:
    def check(c: _Checker, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo_exclusive < value <= hi:
            c.fail(key, f"expected a number of seconds above {lo_exclusive:g} and at most {hi:g}, got {_show(value)}")
        return float(value)

    return check


def _boolean(c: _Checker, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        c.fail(key, f"expected true or false, got {_show(value)}")
    return value


def _data(c: _Checker, key: str, value: Any) -> tuple[tuple[str, float, str], ...]:
    from ugro_tui.core.jobs.model import BadSpec, parse_data

    try:
        return parse_data(value)
    except BadSpec as exc:
        c.fail(key, str(exc).removeprefix("data: "))
        raise


def _port_range(c: _Checker, key: str, value: Any) -> tuple[int, int]:
    ok = (isinstance(value, list) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) and 1024 <= v <= 65535 for v in value))
    if not ok:
        c.fail(key, f"expected [first, last] with ports 1024-65535, got {_show(value)}")
    if value[0] > value[1]:
        c.fail(key, f"the range is reversed: {value[0]} > {value[1]}")
    return (value[0], value[1])


def _labels(c: _Checker, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and NAME_RE.match(v) for v in value):
        c.fail(key, f"expected an array of label names (letters, digits, . _ -), got {_show(value)}")
    return tuple(value)


def _env(c: _Checker, key: str, value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        c.fail(key, f"expected a table of NAME = \"value\", got {_show(value)}")
    for name, val in value.items():
        if not ENV_NAME_RE.match(name):
            c.fail(f"{key}.{name}", "is not a valid environment variable name")
        if not isinstance(val, str):
            c.fail(f"{key}.{name}", f"expected a string, got {_show(val)}")
    return tuple(value.items())


def _sim(c: _Checker, key: str, value: Any) -> SimSpec:
    from ugro_tui.sim.catalogue import lookup_gpu

    sim = _Checker(c.source, c.where(key), value)
    sim.only(("gpus", "source"))
    raw = sim.get("gpus", lambda s, k, v: v, required=True)
    if not isinstance(raw, list):
        sim.fail("gpus", f"expected an array of GPU models, got {_show(raw)}")
    gpus = []
    for i, item in enumerate(raw):
        where = f"gpus[{i}]"
        if isinstance(item, str):
            gpu = lookup_gpu(item)
            if gpu is None:
                sim.fail(where, f"unknown GPU model {_show(item)}; give a table with name, memory_mib, power_limit_w")
            gpus.append(SimGpu(*gpu))
            continue
        g = _Checker(c.source, f"{sim.where(where)}", item)
        g.only(("name", "memory_mib", "power_limit_w"))
        gpus.append(SimGpu(
            g.get("name", _string(), required=True),
            g.get("memory_mib", _integer(256, 1 << 20), required=True),
            float(g.get("power_limit_w", _integer(10, 2000), default=250)),
        ))
    return SimSpec(tuple(gpus), sim.get("source", _choice(SIM_SOURCES), default="nvml"))


def _number_in(lo: float, hi: float, what: str) -> Callable[..., float]:
    def check(c: _Checker, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            c.fail(key, f"expected {what} from {lo:g} to {hi:g}, got {_show(value)}")
        return float(value)

    return check


def _alerts(c: _Checker, key: str, value: Any) -> AlertsConfig:
    a = _Checker(c.source, c.where(key), value)
    a.only(("gpu_hot_c", "idle_minutes", "notify_command", "bell"))
    return AlertsConfig(
        gpu_hot_c=a.get("gpu_hot_c", _number_in(40, 120, "degrees Celsius"), default=85.0),
        idle_minutes=a.get("idle_minutes", _number_in(0.1, 1440, "minutes"), default=10.0),
        notify_command=a.get("notify_command", _string(what="a command line (a string)")),
        bell=a.get("bell", _boolean, default=True),
    )


def _daemon(c: _Checker, key: str, value: Any) -> DaemonConfig:
    d = _Checker(c.source, c.where(key), value)
    d.only(("idle_exit", "autostart", "ledger"))
    return DaemonConfig(idle_exit=d.get("idle_exit", _number_in(0, 7 * 86400, "seconds"), default=600.0),
                        autostart=d.get("autostart", _boolean, default=True),
                        ledger=d.get("ledger", _boolean, default=True))


KEY_RE = re.compile(r"^[a-z0-9_+-]+(,[a-z0-9_+-]+)*$")


def _keys(c: _Checker, key: str, value: Any) -> tuple[tuple[str, str], ...]:
    """[keys] binding-id = "key[,key]": remaps the app's keys (ids are listed by `?` in the app)."""
    if not isinstance(value, dict):
        c.fail(key, f'expected a table of binding-id = "key", got {_show(value)}')
    for bid, keys in value.items():
        if not isinstance(keys, str) or not KEY_RE.match(keys):
            c.fail(f"{key}.{bid}", f'expected key names such as "f5" or "ctrl+r,r", got {_show(keys)}')
    return tuple(value.items())


NODE_KEYS = ("name", "host", "port", "user", "identity_file", "python", "workdir", "labels",
             "socket_ifname", "env", "transport", "sim", "data", "code_dir", "energy_price", "share_gpus", "desktop")
CLUSTER_KEYS = ("name", "backend", "poll_interval", "rendezvous_ports", "service_ports", "known_hosts", "ssh_config",
                "connect_timeout", "history", "node_lost_after", "read_only", "sync_limit_mb", "energy_price",
                "currency", "gpu_mem_headroom_gb", "preempt_grace", "session_grace", "yield_min_mib", "yield_after",
                "yield_idle_minutes", "rendezvous_timeout")
# ISO 4217's active codes: a price's currency is one of them (a typo such as "EUD" is one line, not a silent label)
_ISO_4217 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF "
    "CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD "
    "HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD "
    "MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN "
    "PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY "
    "TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL")
CURRENCIES = frozenset(_ISO_4217.split())


def _currency(c: _Checker, key: str, value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in CURRENCIES:
        c.fail(key, f'expected an ISO 4217 currency code such as "EUR" or "USD", got {_show(value)}')
    return value.upper()


_PRICE = _number_in(0, 1000, "a price per kWh")


def parse_node(source: str, index: int, table: Any) -> Node:
    c = _Checker(source, f"nodes[{index}]", table)
    c.only(NODE_KEYS)
    return Node(
        name=c.get("name", _string(NAME_RE, "a name of letters, digits, . _ -"), required=True),
        host=c.get("host", _string(HOST_RE, "a host name or address without spaces or shell characters"),
                   required=True),
        port=c.get("port", _integer(1, 65535)),
        user=c.get("user", _string(USER_RE, "a user name without spaces or shell characters")),
        identity_file=c.get("identity_file", _string(what="a path")),
        python=c.get("python", _string(what="a command such as python3 or /opt/conda/envs/torch/bin/python"),
                     default="python3"),
        workdir=c.get("workdir", _string(what="a path"), default="~/ugro"),
        labels=c.get("labels", _labels, default=()),
        socket_ifname=c.get("socket_ifname", _string(IFNAME_RE, "a network interface name")),
        env=c.get("env", _env, default=()),
        transport=c.get("transport", _choice(("auto", "ssh", "local")), default="auto"),
        sim=c.get("sim", _sim),
        data=c.get("data", _data, default=()),
        code_dir=c.get("code_dir", _string(what="a path"), default="~/.cache/ugro/code"),
        energy_price=c.get("energy_price", _PRICE),
        share_gpus=c.get("share_gpus", _boolean, default=True),
        desktop=c.get("desktop", _boolean, default=False),
    )


def parse_cluster(data: dict[str, Any], source: str = "cluster.toml") -> Cluster:
    """Validate a decoded cluster.toml; raises ConfigError naming the first bad field."""
    top = _Checker(source, "", data)
    top.only(("cluster", "nodes", "keys", "alerts", "slurm", "daemon"))
    c = _Checker(source, "cluster", data.get("cluster", {}))
    c.only(CLUSTER_KEYS)
    raw_nodes = data.get("nodes", [])
    if not isinstance(raw_nodes, list):
        top.fail("nodes", "expected [[nodes]] tables")
    if not raw_nodes:
        top.fail("nodes", "no nodes configured; add at least one [[nodes]] table")
    nodes = [parse_node(source, i, t) for i, t in enumerate(raw_nodes)]
    seen: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node.name in seen:
            raise ConfigError(source, f"nodes[{i}].name", f'duplicate node name "{node.name}" '
                              f"(also nodes[{seen[node.name]}])")
        seen[node.name] = i
    backend = c.get("backend", _choice(("ssh", "slurm")), default="ssh")
    if backend == "slurm" and "slurm" not in data:
        c.fail("backend", 'is "slurm" but there is no [slurm] table (login = "NODE" at least)')
    slurm = None
    if "slurm" in data:
        from ugro_tui.config_slurm import parse_slurm

        slurm = parse_slurm(source, data["slurm"], set(seen))
    return Cluster(
        backend=backend, slurm=slurm,
        name=c.get("name", _string(what="a cluster name"), default="ugro"),
        poll_interval=c.get("poll_interval", _seconds(0.0, 3600.0), default=1.0),
        rendezvous_ports=c.get("rendezvous_ports", _port_range, default=(29500, 29599)),
        service_ports=c.get("service_ports", _port_range, default=(8000, 8099)),
        known_hosts=c.get("known_hosts", _string(what="a path")),
        ssh_config=c.get("ssh_config", _string(what="a path")),
        connect_timeout=c.get("connect_timeout", _seconds(0.0, 300.0), default=5.0),
        history=c.get("history", _integer(2, 100_000), default=120),
        node_lost_after=c.get("node_lost_after", _seconds(0.0, 86400.0), default=30.0),
        read_only=c.get("read_only", _boolean, default=False),
        sync_limit_mb=c.get("sync_limit_mb", _integer(1, 1_000_000), default=200),
        energy_price=c.get("energy_price", _PRICE, default=0.0),
        currency=c.get("currency", _currency, default="EUR"),
        gpu_mem_headroom_gb=c.get("gpu_mem_headroom_gb", _number_in(0, 1024, "a number of GB"), default=0.5),
        preempt_grace=c.get("preempt_grace", _number_in(0, 86400, "a number of seconds"), default=60.0),
        session_grace=c.get("session_grace", _number_in(0, 3600, "a number of seconds"), default=10.0),
        rendezvous_timeout=c.get("rendezvous_timeout", _seconds(1.0, 86400.0), default=600.0),
        yield_min_mib=c.get("yield_min_mib", _integer(0, 1_000_000), default=512),
        yield_after=c.get("yield_after", _number_in(0, 86400, "a number of seconds"), default=20.0),
        yield_idle_minutes=c.get("yield_idle_minutes", _number_in(0, 10080, "a number of minutes"), default=5.0),
        nodes=tuple(nodes),
        keys=top.get("keys", _keys, default=()),
        alerts=top.get("alerts", _alerts, default=AlertsConfig()),
        daemon=top.get("daemon", _daemon, default=DaemonConfig()),
        source=source,
    )


_TOML_POS = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def load_cluster(path: str | os.PathLike[str]) -> Cluster:
    source = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(source, None, "file not found") from None
    except IsADirectoryError:
        raise ConfigError(source, None, "is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(source, None, "cannot read the file: permission denied") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, None, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(source, None, f"cannot read the file: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_POS.match(str(exc))
        if m:
            raise ConfigError(source, f"line {m['line']}", f"invalid TOML: {m['msg']}") from None
        raise ConfigError(source, None, f"invalid TOML: {exc}") from None
    return parse_cluster(data, source)


def resolve_config_path(explicit: str | None = None) -> Path:
    """--config > $UGRO_CONFIG > ./cluster.toml > $XDG_CONFIG_HOME/ugro/cluster.toml."""
    found = paths.config_path(explicit)
    if found is None:
        user = paths.config_home() / "cluster.toml"
        raise ConfigError("cluster.toml", None,
                          f"no config found; pass --config, set $UGRO_CONFIG, or create ./cluster.toml or {user}")
    return found
