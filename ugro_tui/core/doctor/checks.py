"""Doctor results as data, and the rules that turn probe facts into ok / warn / fail with a fix hint. Pure."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

GIB = 1 << 30
DISK_FAIL_GIB = 0.5
DISK_WARN_GIB = 5.0
CLOCK_WARN_S = 1.0
CLOCK_FAIL_S = 60.0
CLUSTER = "cluster"  # the node column of cross-node checks


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    node: str        # a node name, or CLUSTER for a cross-node check
    name: str        # what is checked, in the user's words: ssh, torch, rendezvous...
    status: Status
    detail: str
    hint: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"status": str(self.status)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Check:
        return cls(str(doc["node"]), str(doc["name"]), Status(doc["status"]), str(doc["detail"]),
                   str(doc.get("hint") or ""))


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    master: str | None = None
    clock_offsets: dict[str, float] = field(default_factory=dict)  # node clock minus ours, in seconds
    gpu_counts: dict[str, int] = field(default_factory=dict)       # as each node's driver reports them

    @property
    def failed(self) -> bool:
        return any(c.status is Status.FAIL for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for c in self.checks if c.status is s) for s in Status}

    def to_json(self) -> dict:
        return {"ok": not self.failed, "master": self.master, "counts": self.counts(),
                "checks": [c.to_json() for c in self.checks]}

    def to_wire(self) -> dict:
        """All of it, for a client of the daemon (the smoke run's timing needs the offsets and GPU counts)."""
        return self.to_json() | {"clock_offsets": self.clock_offsets, "gpu_counts": self.gpu_counts}

    @classmethod
    def from_wire(cls, doc: dict) -> Report:
        return cls([Check.from_json(c) for c in doc["checks"]], doc.get("master"),
                   {str(k): float(v) for k, v in (doc.get("clock_offsets") or {}).items()},
                   {str(k): int(v) for k, v in (doc.get("gpu_counts") or {}).items()})


@dataclass
class NodeFacts:
    """What the doctor learned of one node; None where it could not look."""

    node: str
    host: str
    ssh: Check | None = None
    rtt_s: float | None = None
    facts: dict[str, Any] | None = None
    probe_error: str | None = None
    clock_offset_s: float | None = None   # node clock minus ours
    rendezvous: dict[str, Any] | None = None


def node_checks(f: NodeFacts, master: NodeFacts, python_setting: str) -> list[Check]:
    out: list[Check] = []

    def add(name: str, status: Status, detail: str, hint: str = "") -> None:
        out.append(Check(f.node, name, status, detail, hint))

    if f.facts is None:
        why = "no connection" if f.probe_error is None else f.probe_error
        add("python", Status.FAIL if f.probe_error else Status.SKIP, why,
            f"check `python = \"{python_setting}\"` for this node in cluster.toml" if f.probe_error else "")
        return out
    facts = f.facts
    py = facts["python"]
    add("python", Status.OK, f"{py['version']} {py['executable']}")
    _torch(add, facts)
    _driver(add, facts)
    _disk(add, facts["disk"])
    _clock(add, f, master)
    _interface(add, facts.get("interface"))
    _rendezvous(add, f)
    return out


def _torch(add, facts: dict[str, Any]) -> None:
    torch = facts["torch"]
    gpus = facts["driver"].get("gpus", 0)
    if "error" in torch:
        add("torch", Status.FAIL, f"not importable: {torch['error']}",
            "install torch in this node's environment, or point `python` at the environment that has it")
        add("torchrun", Status.SKIP, "needs torch")
        return
    if not torch.get("distributed"):
        add("torch", Status.FAIL, f"{torch['version']} without torch.distributed", "install a torch build with "
            "distributed support (the pip wheels have it)")
    else:
        add("torch", Status.OK, torch["version"])
    if torch.get("cuda_available"):
        add("cuda", Status.OK, f"CUDA {torch['cuda']}, torch sees {torch['gpu_count']} GPU(s)")
    elif gpus:
        add("cuda", Status.WARN, f"torch {torch['version']} cannot use this node's {gpus} GPU(s) "
            f"({'CPU build' if not torch.get('cuda') else 'CUDA ' + torch['cuda'] + ' not available'})",
            "install a CUDA build of torch that matches the driver; until then jobs run on the CPU (gloo)")
    else:
        add("cuda", Status.OK, "no GPUs: CPU only (gloo)")
    if torch.get("nccl"):
        add("nccl", Status.OK, torch["nccl"])
    elif gpus:
        add("nccl", Status.WARN, "this torch build has no NCCL", "multi-node GPU jobs need NCCL: install a CUDA "
            "build of torch")
    else:
        add("nccl", Status.SKIP, "no GPUs: gloo is used")
    run = facts["torchrun"]
    if run.get("path"):
        add("torchrun", Status.OK, run["path"])
    elif not torch.get("run_module"):
        add("torchrun", Status.FAIL, "neither torchrun nor torch.distributed.run is present",
            "reinstall torch in this node's environment")
    elif run.get("beside_python"):
        add("torchrun", Status.WARN, f"not on PATH; found at {run['beside_python']}",
            "ugro launches `python -m torch.distributed.run`, so jobs work; add that folder to PATH to run "
            "torchrun by hand")
    else:
        add("torchrun", Status.WARN, "not on PATH", "ugro launches `python -m torch.distributed.run`, so jobs "
            "work; add the environment's bin folder to PATH to run torchrun by hand")


def _driver(add, facts: dict[str, Any]) -> None:
    d = facts["driver"]
    if d.get("error"):
        mismatch = "mismatch" in d["error"]
        add("driver", Status.FAIL if mismatch else Status.WARN, d["error"],
            "reboot, or reload the nvidia kernel module" if mismatch else
            "install the NVIDIA driver; a CPU-only node can ignore this")
        return
    add("driver", Status.OK, f"{d.get('driver') or '?'} ({d['source']}), {d['gpus']} GPU(s)")


def _disk(add, disk: dict[str, Any]) -> None:
    if "error" in disk:
        add("disk", Status.FAIL, f"{disk['path']}: {disk['error']}", "create the workdir or fix its permissions")
        return
    free = disk["free"] / GIB
    where = disk["path"] + ("" if disk["exists"] else f" (not created yet; checked {disk['checked']})")
    if not disk["writable"]:
        add("disk", Status.FAIL, f"{where} is not writable", "set a writable `workdir` for this node")
    elif free < DISK_FAIL_GIB:
        add("disk", Status.FAIL, f"{free:.1f} GiB free in {where}", "free some space or move `workdir`")
    elif free < DISK_WARN_GIB:
        add("disk", Status.WARN, f"{free:.1f} GiB free in {where}", "checkpoints may not fit; free some space")
    else:
        add("disk", Status.OK, f"{free:.0f} GiB free in {where}")


def _clock(add, f: NodeFacts, master: NodeFacts) -> None:
    if f.clock_offset_s is None or master.clock_offset_s is None:
        add("clock", Status.SKIP, "the master's clock could not be read")
        return
    off = f.clock_offset_s - master.clock_offset_s
    err = max(f.rtt_s or 0, master.rtt_s or 0)
    text = f"{off * 1000:+.0f} ms against {master.node} (±{err * 1000:.0f} ms)"
    if f.node == master.node:
        add("clock", Status.OK, "the master (reference)")
    elif abs(off) - err > CLOCK_FAIL_S:
        add("clock", Status.FAIL, text, "run NTP (chrony or systemd-timesyncd) on every node")
    elif abs(off) - err > CLOCK_WARN_S:
        add("clock", Status.WARN, text, "run NTP (chrony or systemd-timesyncd) on every node")
    else:
        add("clock", Status.OK, text)


def _interface(add, iface: dict[str, Any] | None) -> None:
    if iface is None:
        add("interface", Status.SKIP, "socket_ifname not set: NCCL and gloo pick one")
    elif iface["exists"]:
        add("interface", Status.OK, "exists")
    else:
        add("interface", Status.FAIL, f"no such interface (have: {', '.join(iface.get('have', [])) or '?'})",
            "set `socket_ifname` for this node to one of its interfaces")


def _rendezvous(add, f: NodeFacts) -> None:
    r = f.rendezvous
    if r is None or r.get("skip"):
        add("rendezvous", Status.SKIP, r["error"] if r else "not tested")
    elif r.get("ok"):
        add("rendezvous", Status.OK, f"{r['target']} reached in {r['ms']:.0f} ms")
    else:
        add("rendezvous", Status.FAIL, f"{r.get('target', 'the master')}: {r['error']}",
            "open the rendezvous_ports range on the master's firewall, and check the master's address")


# --- across nodes ----------------------------------------------------------------------------------------------


def _spread(values: dict[str, str | None]) -> str:
    by_value: dict[str | None, list[str]] = defaultdict(list)
    for node, value in values.items():
        by_value[value].append(node)
    return "; ".join(f"{v or 'none'} on {', '.join(nodes)}" for v, nodes in by_value.items())


def cluster_checks(all_facts: list[NodeFacts]) -> list[Check]:
    seen = {f.node: f.facts for f in all_facts if f.facts is not None}
    out: list[Check] = []
    if len(seen) < 2:
        out.append(Check(CLUSTER, "versions", Status.SKIP, "fewer than two nodes answered"))
        return out
    torch = {n: f["torch"] for n, f in seen.items() if "error" not in f["torch"]}
    for key, label, bad in (("version", "torch", Status.FAIL), ("cuda", "CUDA", Status.WARN),
                            ("nccl", "NCCL", Status.FAIL)):
        values = {n: t.get(key) for n, t in torch.items()}
        if len(set(values.values())) <= 1:
            value = next(iter(values.values()), None)
            out.append(Check(CLUSTER, f"{label} versions", Status.OK,
                             f"{value or 'none'} on all {len(values)} nodes with torch"))
        else:
            out.append(Check(CLUSTER, f"{label} versions", bad, _spread(values),
                             f"install the same {label} everywhere: a multi-node run needs matching versions"))
    counts = {n: f["driver"].get("gpus", 0) for n, f in seen.items()}
    if len(set(counts.values())) <= 1:
        out.append(Check(CLUSTER, "gpu counts", Status.OK, f"{next(iter(counts.values()))} on every node"))
    else:
        least = min(counts.values())
        out.append(Check(CLUSTER, "gpu counts", Status.WARN,
                         ", ".join(f"{n} {c}" for n, c in counts.items()),
                         f"a job with equal nproc per node can use at most {least} per node on all nodes"))
    out.append(_names(seen))
    return out


def _names(seen: dict[str, dict[str, Any]]) -> Check:
    """Every name (the configured hosts, each node's own hostname) resolves, and to the same addresses on every
    node that resolves it: a node whose own name means 127.0.1.1 to itself and its LAN address to the others is
    the classic /etc/hosts trap, as NCCL and gloo then advertise the loopback address."""
    problems = []
    hosts = sorted(set().union(*(f["resolve"] for f in seen.values())))
    for host in hosts:
        answers = {n: f["resolve"][host] for n, f in seen.items() if host in f["resolve"]}
        failed = [n for n, a in answers.items() if isinstance(a, dict)]
        if failed:
            problems.append(f"{host} does not resolve on {', '.join(failed)}")
        found = {n: ",".join(a) for n, a in answers.items() if not isinstance(a, dict)}
        if len(set(found.values())) > 1:
            problems.append(f"{host}: " + _spread(found))
    if problems:
        return Check(CLUSTER, "hostnames", Status.WARN, "; ".join(problems),
                     "give every node the same /etc/hosts entries (or DNS); set socket_ifname so NCCL does not "
                     "advertise a loopback address")
    return Check(CLUSTER, "hostnames", Status.OK, f"{len(hosts)} names resolve the same on every node")
