"""The agent's nvidia-smi parsing against real recorded outputs (tests/fixtures, from shared/fixtures)."""

from __future__ import annotations

import pytest

from ugro_tui.core.telemetry import agent
from ugro_tui.core.telemetry.model import GpuSample

from ..conftest import FIXTURES


def read(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_rtx_4080_under_load_with_units_and_header() -> None:
    gpus = agent.parse_csv(read("exporter-rtx-4080-super-595.71.05-load-query-gpu.csv"), agent.GPU_FIELDS)
    apps = agent.parse_csv(read("exporter-rtx-4080-super-595.71.05-load-query-compute-apps.csv"), agent.APP_FIELDS)
    [gpu] = agent.gpus_from_smi(gpus, apps, lambda pid: ("someone", None))
    assert gpu["name"] == "NVIDIA GeForce RTX 4080 SUPER"
    assert (gpu["memory_used_mib"], gpu["memory_total_mib"]) == (1474, 16376)
    assert gpu["utilization_pct"] == 7
    assert gpu["temperature_c"] == 46
    assert gpu["power_w"] == 84.24 and gpu["power_limit_w"] == 320.0
    assert gpu["fan_pct"] == 0  # a real 0 at idle, kept apart from missing
    assert [(p["pid"], p["command"], p["used_mib"]) for p in gpu["processes"]] == [
        (2165, "/usr/bin/kwin_wayland", 25), (5022, "ffmpeg", 503), (5021, "ffmpeg", 360)]


def test_h100_mig_sentinels_become_none() -> None:
    gpus = agent.parse_csv(read("exporter-h100-mig-590.48.01-load-query-gpu.csv"), agent.GPU_FIELDS)
    apps = agent.parse_csv(read("exporter-h100-mig-590.48.01-load-query-compute-apps.csv"), agent.APP_FIELDS)
    [gpu] = agent.gpus_from_smi(gpus, apps, lambda pid: (None, None))
    assert gpu["utilization_pct"] is None  # [N/A] with MIG on
    assert gpu["fan_pct"] is None
    assert gpu["memory_total_mib"] == 81559
    assert gpu["power_limit_w"] == 700.0
    assert sorted(p["used_mib"] for p in gpu["processes"]) == [1272, 2296, 7484]
    sample = GpuSample.from_agent(gpu)
    assert sample.utilization_pct is None and sample.busy  # processes make it busy even without utilization


def test_idle_compute_apps_is_empty() -> None:
    assert agent.parse_csv(read("exporter-h100-mig-590.48.01-idle-query-compute-apps.csv"), agent.APP_FIELDS) == []


def test_tesla_p100_header_with_units_and_na_fan() -> None:
    [row] = agent.parse_csv(read("netdata-tesla-p100-query-gpu.csv"), agent.GPU_FIELDS)
    assert row["name"] == "Tesla P100-PCIE-16GB"
    assert row["fan.speed"] is None and row["power.draw"] == 28.16 and row["temperature.gpu"] == 37


def test_noheader_nounits_as_the_agent_asks() -> None:
    text = ("0, GPU-aaaa, NVIDIA GeForce RTX 4070, 33.4, 4000, 8188, 61, 120.50, 200.00, [N/A]\n"
            "1, GPU-bbbb, NVIDIA GeForce RTX 4070, [Not Supported], [Unknown Error], 8188, N/A, [N/A], 200.00, 0\n")
    rows = agent.parse_csv(text, agent.GPU_FIELDS)
    assert rows[0]["utilization.gpu"] == 33.4 and rows[0]["fan.speed"] is None
    assert rows[1]["utilization.gpu"] is None and rows[1]["memory.used"] is None
    assert rows[1]["temperature.gpu"] is None and rows[1]["fan.speed"] == 0


def test_process_name_with_commas() -> None:
    text = "GPU-aaaa, 42, python train.py --lr=1e-4,2e-4, 512\n"
    [row] = agent.parse_csv(text, agent.APP_FIELDS)
    assert row["process_name"] == "python train.py --lr=1e-4,2e-4" and row["used_memory"] == 512


@pytest.mark.parametrize("raw", ["[N/A]", "N/A", "[Not Supported]", "[Unknown Error]",
                                 "[Requested functionality has been deprecated]", ""])
def test_sentinels(raw: str) -> None:
    assert agent.clean_value(raw) is None


def test_malformed_agent_sample_never_crashes() -> None:
    sample = GpuSample.from_agent({"index": "x", "utilization_pct": "busy", "processes": [{"pid": "no"}, 5]})
    assert sample.index == 0 and sample.utilization_pct is None and sample.processes == ()
