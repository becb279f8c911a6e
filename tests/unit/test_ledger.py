"""The ledger's arithmetic against recorded samples: energy from the counter or the power integral, segments,
gaps, [N/A] power, the split of idle and other users' GPUs by day, and the files."""

from __future__ import annotations

import json
import math

from ugro_tui.core.ledger.book import IDLE, Book, day_of
from ugro_tui.core.ledger.meter import COUNTER, MAX_GAP, NONE, POWER, GpuMeter, Usage
from ugro_tui.core.telemetry.model import GpuProcess, GpuSample

T0 = 1_800_000_000.0


def gpu(index: int = 0, power: float | None = 100.0, util: float | None = 50.0, mem: int | None = 1000,
        users: tuple[str, ...] = ()) -> GpuSample:
    procs = tuple(GpuProcess(100 + i, u, "python", 10) for i, u in enumerate(users))
    return GpuSample(index, f"GPU-{index}", "RTX 4070", util, mem, 12282, 50.0, power, 200.0, 30.0, procs)


def test_the_power_integral_of_a_varying_draw_is_within_one_percent() -> None:
    meter, total, exact = GpuMeter(), 0.0, 0.0
    for i in range(0, 601):  # 10 minutes at 1 s of a draw between 100 and 300 W
        watts = 200 + 100 * math.sin(i / 60)
        total += meter.step(T0 + i, watts, None).wh
    exact = sum(200 + 100 * math.sin(i / 60 + 1 / 120) for i in range(600)) / 3600  # midpoints
    assert abs(total - exact) / exact < 0.01


def test_the_counter_wins_and_a_counter_that_goes_back_starts_a_new_segment() -> None:
    meter = GpuMeter()
    assert meter.step(T0, 100.0, 5_000_000.0).source == NONE  # the first sample opens the interval
    step = meter.step(T0 + 10, 100.0, 5_000_000.0 + 3_600_000.0)
    assert step.source == COUNTER and step.wh == 1.0  # 3.6 MJ... in mJ: 1 Wh, whatever the power said
    reloaded = meter.step(T0 + 20, 360.0, 1_000.0)  # a driver reload: the counter restarts
    assert reloaded.source == POWER and reloaded.wh > 0  # never negative: this interval from the power
    assert meter.step(T0 + 30, 360.0, 1_000.0 + 360_000.0).wh == 0.1


def test_a_gap_and_na_power_are_never_guessed() -> None:
    meter = GpuMeter()
    meter.step(T0, 100.0, None)
    gone = meter.step(T0 + MAX_GAP + 1, 100.0, None)  # the node was offline
    assert gone.seconds == 0 and gone.wh == 0
    na = meter.step(T0 + MAX_GAP + 2, None, None)
    assert na.seconds == 1 and na.wh > 0  # one end known: that power for the interval
    blind = meter.step(T0 + MAX_GAP + 3, None, None)
    assert blind.seconds == 1 and blind.wh == 0 and blind.source == NONE
    usage = Usage()
    usage.add(blind, 10.0, 5)
    assert usage.gpu_seconds == 1 and usage.energy_source == NONE
    assert meter.step(T0, 100.0, None).seconds == 0  # out of order: nothing


def test_a_two_node_job_idle_gpus_and_other_users_by_day(tmp_path) -> None:
    book = Book(tmp_path / "ledger")
    held = {("a", 0): 7, ("b", 0): 7}
    for i in range(61):
        at = T0 + i
        book.observe("a", at, [gpu(0, 200.0, 80.0, 9000), gpu(1, 20.0, 0.0, 0)], lambda n, g: held.get((n, g)),
                     "ob")
        book.observe("b", at, [gpu(0, 100.0, 40.0, 5000), gpu(1, 60.0, 30.0, 800, users=("ollie", "ann"))],
                     lambda n, g: held.get((n, g)), "ollie")
    job = book.job(7)
    assert job is not None and job.gpu_seconds == 120 and math.isclose(job.wh, (200 + 100) * 60 / 3600)
    assert job.peak_memory_mib == 9000 and job.mean_util == 60.0 and job.energy_source == POWER
    day = book.days[day_of(T0)]
    assert math.isclose(day["a"]["ob"].wh, 200 * 60 / 3600) and math.isclose(day["a"][IDLE].wh, 20 * 60 / 3600)
    assert math.isclose(day["b"]["ollie"].wh, (100 + 30) * 60 / 3600)  # the job's GPU there, and half the other
    assert math.isclose(day["b"]["ann"].wh, 30 * 60 / 3600)
    assert math.isclose(job.cost(0.32), job.wh / 1000 * 0.32)
    book.ended(7, T0 + 60)
    book.save()
    again = Book(tmp_path / "ledger")
    assert again.job(7).to_json() == job.to_json()
    assert len(again.jobs[7]["history"]["a:0"].points) == 13  # 60 s at 5 s, kept after the job ended
    assert math.isclose(again.days[day_of(T0)]["b"]["ann"].wh, day["b"]["ann"].wh)
    again.prune(T0 + 91 * 86400)
    assert again.job(7) is None and not again.days  # past 90 days: gone, day rows too after their own 90


def test_a_damaged_file_is_set_aside_and_the_other_stands(tmp_path) -> None:
    book = Book(tmp_path / "ledger")
    for i in range(3):
        book.observe("a", T0 + i, [gpu()], lambda n, g: 1, "ob")
    book.save()
    (tmp_path / "ledger" / "jobs.json").write_text('{"version": 1, "jobs": {"1": {"user": ')  # cut mid-write
    again = Book(tmp_path / "ledger")
    assert again.job(1) is None and again.days[day_of(T0)]["a"]["ob"].gpu_seconds == 2
    assert len(again.recovered) == 1 and "jobs.json" in again.recovered[0]
    assert [p.name for p in (tmp_path / "ledger").iterdir() if "corrupt" in p.name]
    (tmp_path / "ledger" / "days.json").write_text(json.dumps({"version": 1, "days": {"x": {"a": {"u": 3}}}}))
    assert not Book(tmp_path / "ledger").days  # bad types: set aside too, never a traceback


def test_prices_in_the_config_and_bad_ones_name_their_field() -> None:
    import pytest

    from ugro_tui.config import parse_cluster
    from ugro_tui.errors import ConfigError

    node = {"name": "gpu1", "host": "127.0.0.3"}
    cluster = parse_cluster({"cluster": {"energy_price": 0.32, "currency": "eur"},
                             "nodes": [node, {**node, "name": "gpu2", "energy_price": 0.25}]})
    assert (cluster.energy_price, cluster.currency) == (0.32, "EUR")
    assert [n.energy_price for n in cluster.nodes] == [None, 0.25]
    for table, field in (({"energy_price": -1}, "cluster.energy_price"), ({"energy_price": "cheap"},
                         "cluster.energy_price"), ({"currency": "EUD"}, "cluster.currency")):
        with pytest.raises(ConfigError) as info:
            parse_cluster({"cluster": table, "nodes": [node]})
        assert field in str(info.value) and "\n" not in str(info.value)


def test_the_simulated_counter_matches_the_power_integral_within_one_percent(tmp_path, monkeypatch) -> None:
    """The simulator's counter (what NVML's total energy would say) against the ledger's integral of the same
    samples: the two ways of knowing a job's energy agree."""
    import importlib
    import sys

    monkeypatch.setenv("UGRO_SIM", json.dumps({"node": "n0", "gpus": [["RTX 4070", 12282, 200]]}))
    monkeypatch.setenv("UGRO_SIM_STATE", str(tmp_path))
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parents[2] / "ugro_tui" / "sim" / "node"))
    sim = importlib.import_module("ugro_gpusim")
    try:
        by_counter, by_power = GpuMeter(), GpuMeter()
        counted = integrated = 0.0
        for i in range(121):
            [g] = sim.snapshot(now=T0 + i)
            counted += by_counter.step(T0 + i, g["power"], g["energy_mj"]).wh
            integrated += by_power.step(T0 + i, g["power"], None).wh
        assert counted > 0 and abs(counted - integrated) / integrated < 0.01
    finally:
        sys.modules.pop("ugro_gpusim", None)


def test_ugro_usage_by_user_node_and_job_with_prices(tmp_path, monkeypatch, capsys) -> None:
    from argparse import Namespace

    from ugro_tui.commands import usage
    from ugro_tui.config import parse_cluster

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    book = Book()
    now = __import__("time").time()
    for i in range(3601):  # an hour: a job on a at 200 W, an idle GPU on b at 20 W
        book.observe("a", now - 3600 + i, [gpu(0, 200.0)], lambda n, g: 3, "ob")
        book.observe("b", now - 3600 + i, [gpu(0, 20.0, 0.0, 0)], lambda n, g: None, "ollie")
    book.save()
    cluster = parse_cluster({"cluster": {"energy_price": 0.30, "currency": "EUR"},
                             "nodes": [{"name": "a", "host": "127.0.0.2"},
                                       {"name": "b", "host": "127.0.0.3", "energy_price": 0.10}]})
    assert usage.run(Namespace(since="1d", until=None, by="user", json=True), cluster) == 0
    rows = {r["user"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert math.isclose(rows["ob"]["kwh"], 0.2, rel_tol=1e-6) and math.isclose(rows["ob"]["cost"], 0.06, rel_tol=1e-4)
    assert math.isclose(rows[IDLE]["kwh"], 0.02, rel_tol=1e-6) and math.isclose(rows[IDLE]["cost"], 0.002,
                                                                                   rel_tol=1e-3)
    assert usage.run(Namespace(since=None, until=None, by="job", json=False), cluster) == 0
    out = capsys.readouterr().out
    assert "0.200" in out and "0.06 EUR" in out and "total" in out
    import pytest

    from ugro_tui.errors import UsageError

    with pytest.raises(UsageError, match="--since"):
        usage.run(Namespace(since="last tuesday", until=None, by="user", json=False), cluster)


def test_a_jobs_energy_in_words_and_json(tmp_path) -> None:
    from ugro_tui.config import parse_cluster
    from ugro_tui.core.ledger.report import energy_doc, energy_lines

    book = Book(tmp_path / "ledger")
    for i in range(361):
        book.observe("a", T0 + i, [gpu(0, 250.0, 90.0, 7000)], lambda n, g: 4, "ob")
    cluster = parse_cluster({"cluster": {"energy_price": 0.32, "currency": "EUR"},
                             "nodes": [{"name": "a", "host": "127.0.0.2"}]})
    doc = energy_doc(book.jobs[4], cluster)
    assert doc["energy"]["kwh"] == 0.025 and doc["energy"]["cost"] == 0.008 and doc["energy"]["currency"] == "EUR"
    assert len(doc["gpu_history"]["a:0"]["points"]) == 73
    [line] = energy_lines(book.jobs[4], cluster)
    assert "0.10 GPU-hours, 0.025 kWh, 0.01 EUR (from the power)" in line and "peak memory 7000 MiB" in line
    assert energy_doc(None, cluster) == {"energy": None, "gpu_history": {}, "starved": []}
    assert energy_lines(None, cluster) == [] and doc["starved"] == []


def test_a_job_that_starved_its_gpus_says_so_in_words(tmp_path) -> None:
    """Low GPU use under a saturated CPU, over the job's history (the doctor's rule): named per node."""
    from ugro_tui.config import parse_cluster
    from ugro_tui.core.ledger.report import energy_doc, energy_lines

    book = Book(tmp_path / "ledger")
    for i in range(120):
        book.observe("a", T0 + i, [gpu(0, 90.0, 12.0, 3000)], lambda n, g: 9, "ob", cpu_pct=97.0)
        book.observe("b", T0 + i, [gpu(0, 250.0, 95.0, 9000)], lambda n, g: 9, "ob", cpu_pct=97.0)
    cluster = parse_cluster({"nodes": [{"name": "a", "host": "127.0.0.2"}, {"name": "b", "host": "127.0.0.3"}]})
    assert energy_doc(book.jobs[9], cluster)["starved"] == [{"node": "a", "cpu_mean": 97.0, "gpu_mean": 12.0,
                                                             "minutes": 1.7, "of_minutes": 1.7}]
    [_, words] = energy_lines(book.jobs[9], cluster)
    assert "on a for 2 of 2 min the GPUs averaged 12% while the CPU was 97% busy: they waited for data" in words


def test_the_ledger_may_be_turned_off_and_a_bad_switch_is_one_line() -> None:
    from ugro_tui.config import parse_cluster
    from ugro_tui.errors import ConfigError

    nodes = [{"name": "a", "host": "127.0.0.2"}]
    assert parse_cluster({"nodes": nodes}).daemon.ledger is True
    assert parse_cluster({"daemon": {"ledger": False}, "nodes": nodes}).daemon.ledger is False
    try:
        parse_cluster({"daemon": {"ledger": "no"}, "nodes": nodes}, "c.toml")
    except ConfigError as exc:
        assert "daemon.ledger" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("a string accepted as the ledger switch")
