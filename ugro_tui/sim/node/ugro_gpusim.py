"""The one simulator behind the stand-in `nvidia-smi` and `pynvml` (Python 3.8+, stdlib only).

Configured by $UGRO_SIM (JSON: node, gpus [[name, memory MiB, power limit W]], source). A process whose
environment has UGRO_NODE=<this node> and CUDA_VISIBLE_DEVICES naming a GPU shows as that GPU's process and
raises its utilization and memory (UGRO_SIM_MEM_MIB per process, default 1500). torchrun's agent is not one: it
never opens the GPU, its ranks do. Every loopback lab's nodes run on this one machine, and two labs may both have
a `node0`: a process that came in through another sshd than this simulator's own (SSH_CONNECTION) is another
lab's, not this node's.
"""

import hashlib
import json
import math
import os
import time

DRIVER = "570.133.07"
_env_cache = {}
_SSHD = os.environ.get("SSH_CONNECTION", "").encode().split()[2:]  # [address, port] of the sshd this runs under


def config():
    raw = os.environ.get("UGRO_SIM")
    if not raw:
        raise RuntimeError("UGRO_SIM is not set: this stand-in only runs on a simulated node")
    return json.loads(raw)


def _phase(node, index):
    return int(hashlib.md5(("%s/%d" % (node, index)).encode()).hexdigest()[:6], 16) / float(0xFFFFFF)


def gpu_uuid(node, index):
    h = hashlib.md5(("ugro-sim/%s/%d" % (node, index)).encode()).hexdigest()
    return "GPU-%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:32])


def _read_env(pid):
    """(node, [gpu indexes], MiB) of a process, or None if it is no simulated GPU user."""
    try:
        with open("/proc/%s/environ" % pid, "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    except (OSError, ValueError):
        return None
    node = env.get(b"UGRO_NODE")
    cvd = env.get(b"CUDA_VISIBLE_DEVICES")
    if node is None or cvd is None or _launcher(pid):
        return None
    if _SSHD and env.get(b"SSH_CONNECTION", b"").split()[2:] not in ([], _SSHD):
        return None  # another lab's node of the same name
    if b"UGRO_SESSION" in env and b"UGRO_SIM_MEM_MIB" not in env:
        return None  # a session's keeper and shells never open the GPU; what a session runs on it says its memory
    try:
        gpus = [int(x) for x in cvd.decode().split(",") if x.strip().isdigit()]
        return node.decode(), gpus, int(env.get(b"UGRO_SIM_MEM_MIB", b"1500"))
    except ValueError:
        return None


def _launcher(pid):
    """torchrun's agent: it starts the ranks and never opens the GPU itself, so a driver does not list it."""
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return b"torch.distributed.run" in argv[:4] or any(a.endswith(b"/torchrun") or a == b"torchrun" for a in argv[:2])


def _zombie(pid):
    """An ended process not yet reaped: the driver has freed its GPU context, so it is nobody's GPU user."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def processes(node):
    """{gpu index: [(pid, MiB)]} for this node's processes.

    A pid's environment is read once: a pid that leaves /proc is forgotten, and pids are not reused within one
    sample interval, so a cached answer always belongs to the same process."""
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    live = set(pids)
    for gone in [p for p in _env_cache if p not in live]:
        del _env_cache[gone]
    out = {}
    for pid in pids:
        if pid not in _env_cache:
            _env_cache[pid] = _read_env(pid)
        info = _env_cache[pid]
        if info is None or info[0] != node or _zombie(pid):
            continue
        for index in info[1]:
            out.setdefault(index, []).append((int(pid), info[2]))
    return out


def _energy(node, now, powers):
    """Each GPU's energy counter in mJ, as a driver keeps it: the simulator's power integrated over its own samples
    (kept in a small file per node, replaced atomically: the agent and the nvidia-smi stand-in both sample)."""
    path = os.path.join(os.environ.get("UGRO_SIM_STATE") or os.path.expanduser("~/.cache"),
                        "ugro-sim-energy-%s.json" % node)
    try:
        with open(path) as f:
            kept = json.load(f)
    except (OSError, ValueError):
        kept = {}
    out = []
    for index, power in enumerate(powers):
        last_t, total = kept.get(str(index), (now, 1000.0 * 1e6 * (1 + index)))  # a boot's worth already
        if now > last_t:
            total += power * 1000.0 * (now - last_t)
        kept[str(index)] = (max(now, last_t), total)
        out.append(int(total))
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "w") as f:
            json.dump(kept, f)
        os.replace(tmp, path)
    except OSError:
        pass
    return out


def has_fan(name):
    return not any(word in name for word in ("A100", "H100", "Tesla", "A10G"))


def snapshot(now=None):
    """Every GPU of this node as a dict of plain numbers; the stand-ins format it their own way."""
    cfg = config()
    node = cfg["node"]
    now = time.time() if now is None else now
    procs = processes(node)
    gpus = []
    for index, (name, memory_mib, limit_w) in enumerate(cfg["gpus"]):
        wobble = math.sin(now / 7.0 + 6.283 * _phase(node, index))
        mine = procs.get(index, [])
        util = min(100, 92 + 6 * wobble) if mine else max(0, 2 + 2 * wobble)
        used = min(memory_mib, 310 + int(40 * _phase(node, index)) + sum(m for _, m in mine))
        gpus.append({
            "index": index,
            "uuid": gpu_uuid(node, index),
            "name": name,
            "util": int(round(util)),
            "mem_used": used,
            "mem_total": memory_mib,
            "temp": int(round(33 + 0.5 * util + 2 * wobble)),
            "power": round(limit_w * (0.07 + 0.85 * util / 100.0), 2),
            "power_limit": float(limit_w),
            "fan": int(round(30 + 0.55 * util)) if has_fan(name) else None,
            "procs": mine,
        })
    if cfg.get("energy_counter", True):
        for gpu, total in zip(gpus, _energy(node, now, [g["power"] for g in gpus])):
            gpu["energy_mj"] = total
    return gpus
