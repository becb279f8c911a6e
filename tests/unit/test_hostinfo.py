"""Host metrics parsed from recorded /proc and cgroup files: a container with limits, a workstation with many
interfaces, a loopback-only machine. Rates come from two readings, as on a node."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ugro_tui.core.telemetry import hostinfo
from ugro_tui.core.telemetry.model import HostSample

RECORDED = Path(__file__).resolve().parent.parent / "fixtures" / "proc"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def two_readings(tmp_path: Path, machine: str, seconds: float, cpu_count: int) -> dict:
    """Sample the recorded machine, move its counters on to the second recording `seconds` later, sample again."""
    root = tmp_path / machine
    shutil.copytree(RECORDED / machine, root)
    clock = Clock()
    sampler = hostinfo.HostSampler(workdir=str(tmp_path), root=str(root), clock=clock, cpu_count=cpu_count)
    for later in root.rglob("*.2"):
        later.replace(later.with_suffix(""))
    clock.now += seconds
    return sampler.sample()


def test_a_container_reports_its_cgroup_limits_not_the_hosts(tmp_path: Path) -> None:
    out = two_readings(tmp_path, "container", 1.0, cpu_count=32)
    # 2 GiB used of an 8 GiB limit, although the host has 62.5 GiB.
    assert (out["mem_used_mib"], out["mem_total_mib"], out["mem_limited"]) == (2048, 8192, True)
    # 1.5 s of CPU in 1 s against a quota of 1.5 CPUs: the container is saturated, whatever the host does.
    assert out["cpu_pct"] == 100.0 and out["cores"] == 2
    assert (out["load1"], out["load5"], out["load15"]) == (3.52, 2.10, 1.75)
    assert out["uptime_s"] == 86400 and out["swap_used_mib"] == 0
    # Only eth0 counts; its 2 MB in and 400 KB out in one second.
    assert (out["net_rx_bps"], out["net_tx_bps"], out["net_loopback_only"]) == (2e6, 4e5, False)
    assert set(out["net_interfaces"]) == {"eth0"}
    assert out["disk_free_gib"] > 0


def test_a_workstation_sums_every_interface_but_loopback(tmp_path: Path) -> None:
    out = two_readings(tmp_path, "workstation", 2.0, cpu_count=16)
    # busy jiffies 1900 of 2000 between readings.
    assert out["cpu_pct"] == 95.0 and out["cores"] == 16
    assert (out["mem_used_mib"], out["mem_total_mib"]) == ((32768000 - 8192000) // 1024, 32000)
    assert out["swap_used_mib"] == 1023 and "mem_limited" not in out  # memory.max says "max"
    assert set(out["net_interfaces"]) == {"enp5s0", "wlp4s0", "docker0", "veth1a2b3c", "tailscale0"}
    assert out["net_interfaces"]["enp5s0"] == [118e6, 2.4e6]
    assert out["net_rx_bps"] == 118e6 + 1000 and out["net_tx_bps"] == 2.4e6 + 500
    assert out["uptime_s"] == 14 * 86400
    sample = HostSample.from_agent(out)
    assert sample is not None and sample.cpu_pct == 95.0 and sample.net_bps == out["net_rx_bps"] + out["net_tx_bps"]


def test_a_loopback_only_machine_counts_its_loopback_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "lo-only"
    (root / "proc" / "net").mkdir(parents=True)
    (root / "proc" / "stat").write_text("cpu  10 0 10 80 0 0 0 0 0 0\n")
    dev = RECORDED / "container" / "proc" / "net"
    lines = (dev / "dev").read_text().splitlines()
    (root / "proc" / "net" / "dev").write_text("\n".join(lines[:3]) + "\n")
    clock = Clock()
    sampler = hostinfo.HostSampler(workdir=str(tmp_path), root=str(root), clock=clock, cpu_count=4)
    (root / "proc" / "net" / "dev").write_text("\n".join((dev / "dev.2").read_text().splitlines()[:3]) + "\n")
    clock.now += 4.0
    out = sampler.sample()
    assert out["net_loopback_only"] is True and out["net_rx_bps"] == 1e6 and out["net_tx_bps"] == 1e6
    # What the node did not say stays null rather than made up.
    assert out["mem_total_mib"] is None and out["load1"] is None and out["uptime_s"] is None


def test_the_first_reading_has_no_rates_and_a_reset_counter_gives_none(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    shutil.copytree(RECORDED / "workstation", root)
    clock = Clock()
    sampler = hostinfo.HostSampler(workdir=str(tmp_path), root=str(root), clock=clock, cpu_count=8)
    first = sampler._prev
    assert first is not None  # the constructor's reading is what the first sample compares with
    # An interface re-created between readings (counters back near zero) has no rate, not a negative one.
    dev = root / "proc" / "net" / "dev"
    dev.write_text(dev.read_text().replace("9000000000", "1000"))
    clock.now += 1
    out = sampler.sample()
    assert out["net_interfaces"]["enp5s0"][0] is None and out["net_rx_bps"] == 0.0


@pytest.mark.parametrize(("limit", "usage", "host_mib", "expected"), [
    ("max\n", "100", 1000, None),
    ("9223372036854771712\n", "100", 1000, None),      # cgroup v1's "no limit"
    (str(4 << 30), str(1 << 30), 64000, (1024, 4096)),
    (str(128 << 30), str(1 << 30), 64000, None),      # a limit above the machine's memory is no limit
    ("garbage", "1", 1000, None),
])
def test_cgroup_memory(limit: str, usage: str, host_mib: int, expected) -> None:
    assert hostinfo.cgroup_memory(limit, usage, host_mib) == expected


def test_parsers_take_what_they_can() -> None:
    assert hostinfo.cgroup_cores("max 100000") is None and hostinfo.cgroup_cores("50000 100000") == 0.5
    assert hostinfo.parse_cpu_times("intr 1 2 3\n") is None
    assert hostinfo.parse_loadavg("") == (None, None, None)
    assert hostinfo.memory_from_meminfo({}) == (None, None, None)
    # An old kernel without MemAvailable: free + buffers + cache.
    assert hostinfo.memory_from_meminfo({"MemTotal": 4096, "MemFree": 1024, "Buffers": 0, "Cached": 1024}) == (
        2, 4, None)
    assert HostSample.from_agent(None) is None
    assert HostSample.from_agent({"cpu_pct": "high", "cores": True}).cpu_pct is None
