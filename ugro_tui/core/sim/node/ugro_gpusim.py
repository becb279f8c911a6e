"""The one simulator behind the stand-in `nvidia-smi` and `pynvml` (Python 3.8+, stdlib only).

Configured by $UGRO_SIM (JSON: node, gpus [[name, memory MiB, power limit W]], source). A process whose
environment has UGRO_NODE=<this node> and CUDA_VISIBLE_DEVICES naming a GPU shows as that GPU's process and
raises its utilization and memory (UGRO_SIM_MEM_MIB per process, default 1500).
"""

import hashlib
import json
import math
import os
import time

DRIVER = "570.133.07"
_env_cache = {}


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
    """(node, [gpu indexes], MiB) for a process, cached by pid and start time so /proc is read once per process."""
    try:
        with open("/proc/%s/stat" % pid, "rb") as f:
            start = f.read().rsplit(b")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    key = (pid, start)
    if key in _env_cache:
        return _env_cache[key]
    found = None
    try:
        with open("/proc/%s/environ" % pid, "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        node = env.get(b"UGRO_NODE")
        cvd = env.get(b"CUDA_VISIBLE_DEVICES")
        if node is not None and cvd is not None:
            gpus = [int(x) for x in cvd.decode().split(",") if x.strip().isdigit()]
            found = (node.decode(), gpus, int(env.get(b"UGRO_SIM_MEM_MIB", b"1500")))
    except (OSError, ValueError):
        found = None
    if len(_env_cache) > 4096:
        _env_cache.clear()
    _env_cache[key] = found
    return found


def processes(node):
    """{gpu index: [(pid, MiB)]} for this node's processes."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        info = _read_env(pid)
        if info is None or info[0] != node:
            continue
        for index in info[1]:
            out.setdefault(index, []).append((int(pid), info[2]))
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
    return gpus
