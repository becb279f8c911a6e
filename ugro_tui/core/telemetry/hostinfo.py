"""Host metrics on the node: CPU, load, memory, swap, disk, network, uptime. Stdlib only, Python 3.8+.

ugro sends this file's code ahead of agent.py as one script. /proc is read where it exists (Linux, and it shows a
container's cgroup limits, which psutil does not); psutil is the fallback elsewhere. Rates (CPU %, network bytes
per second) are differences between two readings, so the sampler keeps the previous counters.
"""

import contextlib
import os
import time

MIB = 1024 * 1024
HOST_KEYS = ("cpu_pct", "cores", "load1", "load5", "load15", "mem_used_mib", "mem_total_mib", "swap_used_mib",
             "disk_free_gib", "net_rx_bps", "net_tx_bps", "uptime_s")
NO_LIMIT = ("max", "-1", "")
UNLIMITED_V1 = 1 << 60  # cgroup v1 says "no limit" with a number near 2**63


def parse_cpu_times(stat_text):
    """(busy, total) jiffies of the "cpu" line of /proc/stat, or None."""
    for line in stat_text.splitlines():
        if line.startswith("cpu "):
            fields = [int(x) for x in line.split()[1:9]]
            idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
            total = sum(fields)
            return total - idle, total
    return None


def parse_meminfo(text):
    """{field: kB} of /proc/meminfo."""
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[name.strip()] = int(parts[0])
    return out


def memory_from_meminfo(info):
    """(used MiB, total MiB, swap used MiB): used is what is not available, so page cache counts as free."""
    total = info.get("MemTotal")
    if total is None:
        return None, None, None
    available = info.get("MemAvailable")
    if available is None:  # kernels before 3.14
        available = info.get("MemFree", 0) + info.get("Buffers", 0) + info.get("Cached", 0)
    swap = None
    if "SwapTotal" in info and "SwapFree" in info:
        swap = (info["SwapTotal"] - info["SwapFree"]) // 1024
    return (total - available) // 1024, total // 1024, swap


def parse_net_dev(text):
    """{interface: (rx bytes, tx bytes)} of /proc/net/dev."""
    out = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or len(fields) < 9:
            continue
        try:
            out[name.strip()] = (int(fields[0]), int(fields[8]))
        except ValueError:
            continue
    return out


def parse_loadavg(text):
    parts = text.split()
    try:
        return float(parts[0]), float(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        return None, None, None


def cgroup_memory(limit_text, usage_text, host_total_mib):
    """(used MiB, limit MiB) when a cgroup limit below the host's memory applies, else None."""
    limit = limit_text.strip()
    if limit in NO_LIMIT:
        return None
    try:
        limit_b, used_b = int(limit), int(usage_text.strip())
    except ValueError:
        return None
    if limit_b >= UNLIMITED_V1 or (host_total_mib is not None and limit_b // MIB >= host_total_mib):
        return None
    return used_b // MIB, limit_b // MIB


def cgroup_cores(cpu_max_text):
    """CPUs a cgroup v2 quota allows ("200000 100000" -> 2.0), or None without a quota."""
    parts = cpu_max_text.split()
    if len(parts) != 2 or parts[0] in NO_LIMIT:
        return None
    try:
        return int(parts[0]) / float(int(parts[1]))
    except (ValueError, ZeroDivisionError):
        return None


def cgroup_usage_usec(cpu_stat_text):
    for line in cpu_stat_text.splitlines():
        if line.startswith("usage_usec "):
            try:
                return int(line.split()[1])
            except ValueError:
                return None
    return None


def is_loopback(name, root="/"):
    """Loopback by the interface's flags (IFF_LOOPBACK), or by the name where /sys does not say."""
    try:
        with open(os.path.join(root, "sys/class/net", name, "flags")) as f:
            return bool(int(f.read().strip(), 16) & 0x8)
    except (OSError, ValueError):
        return name == "lo"


def _rate(new, old, seconds):
    if old is None or seconds <= 0 or new < old:  # a counter reset (interface re-created) is no rate
        return None
    return round((new - old) / seconds, 1)


class HostSampler:
    """One reading per call; rates come from the difference with the previous call."""

    def __init__(self, workdir="~", root="/", clock=time.time, cpu_count=None):
        self.workdir = workdir
        self.cpu_count = cpu_count or os.cpu_count()
        self.root = root
        self.clock = clock
        self.proc = os.path.exists(os.path.join(root, "proc/stat"))
        self.psutil = None
        if not self.proc:
            try:
                import psutil  # noqa: F401 (a node without /proc, such as macOS)
                self.psutil = psutil
            except Exception:
                pass
        self._prev = None
        self.sample()  # the first rates need something to compare with

    def _read(self, *parts):
        try:
            with open(os.path.join(self.root, *parts)) as f:
                return f.read()
        except (OSError, UnicodeDecodeError):
            return None

    def disk_free_gib(self):
        path = os.path.expanduser(self.workdir)
        while path and not os.path.exists(path):  # the workdir may not exist yet: its nearest parent's disk
            parent = os.path.dirname(path)
            path = parent if parent != path else ""
        try:
            st = os.statvfs(path or "/")
        except OSError:
            return None
        return round(st.f_bavail * st.f_frsize / float(1 << 30), 2)

    def counters(self):
        """The raw readings that rates come from: time, cpu (busy, total), cgroup usec, net per interface."""
        now = self.clock()
        if self.psutil is not None:
            t = self.psutil.cpu_times()
            busy = sum(t) - t.idle - getattr(t, "iowait", 0)
            nets = {k: (v.bytes_recv, v.bytes_sent) for k, v in self.psutil.net_io_counters(pernic=True).items()}
            return now, (busy, sum(t)), None, nets
        stat = self._read("proc/stat")
        usage = self._read("sys/fs/cgroup/cpu.stat")
        net = self._read("proc/net/dev")
        return (now, parse_cpu_times(stat) if stat else None, cgroup_usage_usec(usage) if usage else None,
                parse_net_dev(net) if net else {})

    def sample(self):
        now, cpu, cg_usec, nets = self.counters()
        prev, self._prev = self._prev, (now, cpu, cg_usec, nets)
        out = dict.fromkeys(HOST_KEYS)
        out["cores"] = self.cpu_count
        out["disk_free_gib"] = self.disk_free_gib()
        if self.psutil is not None:
            self._fill_psutil(out)
        else:
            self._fill_proc(out)
        quota = out.pop("_quota", None)
        real = [n for n in nets if not is_loopback(n, self.root)]
        out["net_loopback_only"] = not real
        if prev is None:
            return out
        elapsed = now - prev[0]
        if quota is not None and cg_usec is not None and prev[2] is not None and elapsed > 0:
            out["cpu_pct"] = round(min(100.0, 100.0 * (cg_usec - prev[2]) / 1e6 / elapsed / quota), 1)
        elif cpu is not None and prev[1] is not None and cpu[1] > prev[1][1]:
            out["cpu_pct"] = round(100.0 * (cpu[0] - prev[1][0]) / (cpu[1] - prev[1][1]), 1)
        counted = real or list(nets)
        interfaces = {}
        for name in counted:
            if name in prev[3]:
                interfaces[name] = [_rate(nets[name][0], prev[3][name][0], elapsed),
                                    _rate(nets[name][1], prev[3][name][1], elapsed)]
        out["net_interfaces"] = interfaces
        rx = [v[0] for v in interfaces.values() if v[0] is not None]
        tx = [v[1] for v in interfaces.values() if v[1] is not None]
        out["net_rx_bps"] = round(sum(rx), 1) if rx else None
        out["net_tx_bps"] = round(sum(tx), 1) if tx else None
        return out

    def _fill_proc(self, out):
        load = self._read("proc/loadavg")
        if load:
            out["load1"], out["load5"], out["load15"] = parse_loadavg(load)
        mem = self._read("proc/meminfo")
        if mem:
            out["mem_used_mib"], out["mem_total_mib"], out["swap_used_mib"] = memory_from_meminfo(parse_meminfo(mem))
        limit = self._read("sys/fs/cgroup/memory.max") or self._read("sys/fs/cgroup/memory/memory.limit_in_bytes")
        usage = (self._read("sys/fs/cgroup/memory.current")
                 or self._read("sys/fs/cgroup/memory/memory.usage_in_bytes"))
        if limit is not None and usage is not None:
            limited = cgroup_memory(limit, usage, out["mem_total_mib"])
            if limited is not None:
                out["mem_used_mib"], out["mem_total_mib"] = limited
                out["mem_limited"] = True
        cpu_max = self._read("sys/fs/cgroup/cpu.max")
        quota = cgroup_cores(cpu_max) if cpu_max else None
        if quota is not None and quota < (out["cores"] or quota + 1):
            out["_quota"] = quota
            out["cores"] = max(1, int(round(quota)))
        up = self._read("proc/uptime")
        if up:
            with contextlib.suppress(IndexError, ValueError):
                out["uptime_s"] = int(float(up.split()[0]))

    def _fill_psutil(self, out):
        ps = self.psutil
        out["load1"], out["load5"], out["load15"] = os.getloadavg()
        vm, sw = ps.virtual_memory(), ps.swap_memory()
        out["mem_used_mib"], out["mem_total_mib"] = (vm.total - vm.available) // MIB, vm.total // MIB
        out["swap_used_mib"] = sw.used // MIB
        out["uptime_s"] = int(time.time() - ps.boot_time())
