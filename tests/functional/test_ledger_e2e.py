"""The ledger and the metrics on the loopback lab: a real Prometheus (Debian's) scrapes `ugro web` behind its
token and answers PromQL for every simulated GPU and the running jobs; a 2-node job on nodes that log in as two
users is split between them by `ugro usage --by user`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import SIM3, daemon_on, private_lab
from ..helpers import SERVICE_PORTS, free_ports, host, job, ugro, wait

pytestmark = pytest.mark.timeout(180)
OTHER = "ugro-ob"  # a second login, as gpu1's `ob` in the reference lab


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def web(lab: LoopbackCluster, tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    """`ugro web` on a loopback port: (config, its base URL, the token)."""
    with private_lab(lab, tmp_path) as config:
        port = free_ports(1, ("127.0.0.1",))
        proc = subprocess.Popen([sys.executable, "-m", "ugro_tui", "web", "--port", str(port), "--config",
                                 str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = proc.stdout.readline().strip()  # printed once it accepts connections
            assert url.startswith(f"http://127.0.0.1:{port}/?token="), proc.stderr.read() if proc.poll() else url
            yield config, f"http://127.0.0.1:{port}", url.split("token=", 1)[1]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)


def test_prometheus_scrapes_ugro_web_and_promql_sees_every_gpu_and_the_running_job(web, tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("Debian's prometheus is not installed (.ci/run installs it)")
    config, base, token = web
    assert get(f"{base}/metrics")[0] == 401  # the token, as every route
    assert ugro(config, "submit", "--kind", "command", "--nodes", "node0", "--", "sleep", "120").returncode == 0
    from ugro_tui.web.token import token_path

    port = free_ports(1, ("127.0.0.1",))
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: ugro\n    metrics_path: /metrics\n"
        f"    authorization:\n      credentials_file: {token_path()}\n"
        f"    static_configs:\n      - targets: ['{base.removeprefix('http://')}']\n")
    proc = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))
    try:
        def query(promql: str) -> list[dict]:
            status, body = get(f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
            return json.loads(body)["data"]["result"] if status == 200 else []

        def ready() -> bool:
            try:
                return len(query("DCGM_FI_DEV_GPU_UTIL")) == 3 and [r["value"][1] for r in query(
                    'ugro_jobs{state="running"}')] == ["1"]
            except (urllib.error.URLError, ConnectionError, KeyError, ValueError):
                return False

        wait(ready, 90, "Prometheus to see 3 GPUs and 1 running job")
        gpus = query("DCGM_FI_DEV_GPU_UTIL")
        assert sorted(r["metric"]["Hostname"] for r in gpus) == ["node0", "node1", "node2"]
        assert {r["metric"]["modelName"] for r in gpus} >= {"NVIDIA GeForce RTX 4070"}
        assert all(r["metric"]["UUID"].startswith("GPU-") and r["metric"]["gpu"] == "0" for r in gpus)
        energy = query("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")
        assert len(energy) == 3 and all(float(r["value"][1]) > 0 for r in energy)
        wait(lambda: len(query("ugro_job_energy_wh_total")) == 1, 30, "the running job's energy series")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


@pytest.fixture
def two_logins() -> Iterator[Path]:
    """A lab of its own (127.0.W.15-16) that other users may log in to: node0 logs in as this user, node1 as OTHER
    (made here, as root), with a workdir OTHER may write and the system's python (the tests' interpreter may sit
    in a home only root can enter). sshd reads authorized_keys as the user logging in, so it is readable."""
    if os.geteuid() != 0:
        pytest.skip("a second login is made with useradd, which needs root")
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if system_python is None:
        pytest.skip("no system python3 for the second login's agent")
    if subprocess.run(["id", OTHER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-m", OTHER], check=True, capture_output=True)
    # "*": no password, yet not locked ("!"), which sshd without PAM refuses even with a key.
    subprocess.run(["usermod", "-p", "*", OTHER], check=True, capture_output=True)
    root = Path(tempfile.mkdtemp(prefix="ugro-ledger-", dir="/tmp"))
    root.chmod(0o755)
    lab = LoopbackCluster(root / "lab", hosts=[host(15), host(16)], service_ports=SERVICE_PORTS).start()
    try:
        lab.root.chmod(0o755)
        lab.authorized_keys.chmod(0o644)
        for folder in (lab.root / "work", lab.nodes[1].folder / "home"):  # node1's workdir and $HOME
            folder.mkdir(exist_ok=True)
            folder.chmod(0o777)
        text = lab.cluster_toml(sim=SIM3[:2], poll_interval=0.5)
        node1 = text.index('name = "node1"')
        rest = text[node1:].replace('user = "root"', f'user = "{OTHER}"', 1)
        rest = rest.replace(f'python = "{sys.executable}"', f'python = "{system_python}"', 1)
        path = root / "cluster.toml"
        path.write_text(text[:node1] + rest)
        yield path
    finally:
        lab.stop()
        subprocess.run(["pkill", "-9", "-u", OTHER], check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_usage_by_user_splits_a_two_node_jobs_energy_between_the_nodes_logins(two_logins: Path,
                                                                                monkeypatch) -> None:
    config = two_logins
    with daemon_on(config, monkeypatch):
        began = time.time()
        done = ugro(config, "submit", "--kind", "command", "--nnodes", "2", "--nodes", "node0,node1", "--",
                    "sleep", "4")
        assert done.stdout == "1\n", done.stderr

        def shown() -> dict:
            return job(config, 1)

        try:
            wait(lambda: shown()["state"] in ("succeeded", "failed"), 60, "the job to end")
        except AssertionError:
            nodes = json.loads(ugro(config, "status", "--json").stdout)["nodes"]
            raise AssertionError(f"the job did not end: {shown()['reason']}; nodes: {nodes}") from None
        ended = shown()
        assert ended["state"] == "succeeded", ended
        took = ended["finished_at"] - ended["started_at"]

        def by_user() -> dict[str, dict]:
            doc = json.loads(ugro(config, "usage", "--by", "user", "--json").stdout)
            return {r["user"]: r for r in doc["rows"]}

        wait(lambda: {"root", OTHER} <= set(by_user()), 30, "the ledger to have both logins")
    rows = by_user()
    for user in ("root", OTHER):
        row = rows[user]
        # One GPU each for the job's run (samples every 0.5 s: within a second or so of the job's own time).
        assert abs(row["gpu_hours"] * 3600 - took) < 2.5, (user, row, took)
        assert row["kwh"] > 0 and row["energy_source"] == "counter", row
    energy = ended["energy"] if ended.get("energy") else shown()["energy"]
    assert energy is not None and energy["energy_source"] == "counter"
    assert set(ended.get("gpu_history") or shown()["gpu_history"]) == {"node0:0", "node1:0"}
    assert time.time() - began < 120


def test_a_damaged_ledger_file_is_set_aside_and_said_as_an_event(lab: LoopbackCluster, tmp_path: Path,
                                                                  monkeypatch) -> None:
    from ugro_tui import paths
    from ugro_tui.core.ledger.book import day_of

    yesterday = day_of(time.time() - 86400)
    ledger = paths.state_dir() / "ledger"
    ledger.mkdir(parents=True)
    (ledger / "jobs.json").write_text('{"version": 1, "jobs": {"3": {"user": ')  # a half-written file
    days = {yesterday: {"node0": {"ob": {"gpu_seconds": 3600, "wh": 200.0, "sources": ["counter"]}}}}
    (ledger / "days.json").write_text(json.dumps({"version": 1, "days": days}))
    with private_lab(lab, tmp_path) as config, daemon_on(config, monkeypatch):
        def said() -> list[dict]:
            doc = json.loads(ugro(config, "events", "--json").stdout)
            return [e for e in doc["events"] if e["event"] == "ledger-recovered"]

        wait(lambda: said(), 30, "the ledger's recovery as an event")
        assert "jobs.json was damaged: set aside as jobs.json.corrupt-" in said()[0]["message"]
        assert len(list(ledger.glob("jobs.json.corrupt-*"))) == 1
        # The other file's figures stand.
        rows = json.loads(ugro(config, "usage", "--by", "user", "--since", "7d", "--json").stdout)["rows"]
        assert [(r["user"], r["kwh"]) for r in rows if r["user"] == "ob"] == [("ob", 0.2)]
