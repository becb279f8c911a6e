"""`ugro doctor` against the real loopback cluster: all pass (with a real torchrun smoke run on the CPU), a node
without torchrun on its PATH, a node with another torch, and a rendezvous range the master cannot use."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ugro_tui.sim.loopback import LoopbackCluster, free_port

from ..conftest import FIXTURES, host, run_ugro
from ..helpers import free_ports, needs_torch

needs_torch()
pytestmark = pytest.mark.usefixtures("autostart")  # `ugro doctor` runs in the daemon it starts

NAMES = ["gpu-master", "gpu1", "gpu2"]
VENV_BIN = str(Path(sys.executable).parent)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def config(lab: LoopbackCluster, tmp_path: Path, env: dict[str, dict[str, str]] | None = None,
           port: int | None = None) -> Path:
    """Every node has one simulated GPU; `env` gives a node's env table (default: the venv's bin on PATH)."""
    port = port or free_ports(1, (host(2),))
    text = lab.cluster_toml(sim=[(["RTX 4070"], "nvml")] * 3, names=NAMES, rendezvous=(port, port))
    for name in NAMES:
        table = (env or {}).get(name, {"PATH": f"{VENV_BIN}:{SYSTEM_PATH}"})
        inline = ", ".join(f'{k} = "{v}"' for k, v in table.items())
        text = text.replace(f'name = "{name}"\n', f'name = "{name}"\nenv = {{ {inline} }}\n')
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


def doctor(path: Path, *extra: str, timeout: float = 150) -> tuple[int, dict]:
    done = run_ugro("doctor", "--json", "--config", str(path), *extra, timeout=timeout)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def by_key(report: dict) -> dict[tuple[str, str], dict]:
    return {(c["node"], c["name"]): c for c in report["checks"]}


NODE_CHECKS = ("ssh", "host key", "python", "torch", "torchrun", "driver", "disk", "clock", "interface", "rendezvous")


def test_all_pass_and_the_smoke_run_passes_for_real(lab: LoopbackCluster, tmp_path: Path) -> None:
    import os

    saved = Path(os.environ["XDG_CONFIG_HOME"]) / "ugro" / "templates"  # a 2-node template, per-node checkpoints
    saved.mkdir(parents=True)
    (saved / "per-node.toml").write_text('name = "p"\ncommand = ["t.py"]\nnnodes = 2\ncheckpoint_dir = "ck/p"\n')
    (saved / "shared.toml").write_text(f'name = "s"\ncommand = ["t.py"]\nnnodes = 2\n'
                                       f'checkpoint_dir = "{tmp_path / "shared-ck"}"\n')
    code, report = doctor(config(lab, tmp_path), "--smoke")
    checks = by_key(report)
    assert code == 0 and report["ok"] is True
    for name in NAMES:
        for check in NODE_CHECKS:
            assert checks[(name, check)]["status"] == "ok", checks[(name, check)]
        # torch here is a CPU build and the nodes have (simulated) GPUs: the doctor says torch cannot use them.
        assert checks[(name, "cuda")]["status"] == "warn" and "cannot use" in checks[(name, "cuda")]["detail"]
    assert checks[("gpu1", "rendezvous")]["detail"].startswith(f"{host(2)}:")
    for check in ("torch versions", "NCCL versions", "gpu counts", "hostnames"):
        assert checks[("cluster", check)]["status"] == "ok", checks[("cluster", check)]
    smoke = checks[("cluster", "smoke")]
    assert smoke["status"] == "ok", smoke
    assert "3 ranks (gloo)" in smoke["detail"] and "GB/s" in smoke["detail"]
    assert {c["status"] for c in report["checks"]} <= {"ok", "warn", "skip"}
    shared = {c["detail"].split(":")[0]: c for c in report["checks"] if c["name"] == "checkpoints"}
    # Relative to each node's own workdir: not shared; nor is the shipped train-tiny's ~ (each loopback node has a
    # home of its own). One folder on this machine's disk is one folder for every loopback node: shared.
    assert shared["template per-node"]["status"] == "warn" and "per node" in shared["template per-node"]["detail"]
    assert "cannot resume on other nodes" in shared["template per-node"]["hint"]
    assert shared["template train-tiny"]["status"] == "warn", shared
    assert shared["template shared"]["status"] == "ok", shared
    assert not list((tmp_path / "lab").glob("**/.ugro-shared-*"))
    queue = json.loads(run_ugro("queue", "--json").stdout)["jobs"]
    assert [(j["name"], j["state"]) for j in queue] == [("doctor-smoke", "succeeded")]  # an ordinary job


def test_a_node_without_torchrun_on_its_path(lab: LoopbackCluster, tmp_path: Path) -> None:
    code, report = doctor(config(lab, tmp_path, env={"gpu1": {"PATH": SYSTEM_PATH}}))
    checks = by_key(report)
    run = checks[("gpu1", "torchrun")]
    assert run["status"] == "warn" and "not on PATH" in run["detail"] and run["hint"]
    assert checks[("gpu-master", "torchrun")]["status"] == "ok"
    assert code == 0  # ugro itself launches `python -m torch.distributed.run`, so this is a warning


def test_a_node_with_another_torch_fails_the_version_check(lab: LoopbackCluster, tmp_path: Path) -> None:
    standin = {"PATH": f"{VENV_BIN}:{SYSTEM_PATH}", "PYTHONPATH": str(FIXTURES / "standin_torch")}
    code, report = doctor(config(lab, tmp_path, env={"gpu2": standin}))
    checks = by_key(report)
    assert code == 1 and report["ok"] is False
    assert checks[("gpu2", "torch")]["detail"] == "2.4.1+cpu"
    versions = checks[("cluster", "torch versions")]
    assert versions["status"] == "fail"
    assert "2.4.1+cpu on gpu2" in versions["detail"] and "gpu-master, gpu1" in versions["detail"]
    assert "same torch" in versions["hint"]


@pytest.fixture
def held_port() -> Iterator[int]:
    """Another program holds the one rendezvous port on the master's machine."""
    port = free_ports(1, (host(2),))
    holder = socket.socket()
    holder.bind((host(2), port))
    holder.listen()
    yield port
    holder.close()


def test_a_rendezvous_port_the_master_cannot_use(lab: LoopbackCluster, tmp_path: Path, held_port: int) -> None:
    code, report = doctor(config(lab, tmp_path, port=held_port))
    checks = by_key(report)
    assert code == 1
    for name in NAMES:
        r = checks[(name, "rendezvous")]
        assert r["status"] == "fail" and f"{held_port}" in r["detail"] and "in use" in r["detail"], r
        assert "rendezvous_ports" in r["hint"]
    table = run_ugro("doctor", "--config", str(config(lab, tmp_path, port=held_port)))
    assert table.returncode == 1 and "FAIL" in table.stdout and "Traceback" not in table.stderr


def test_an_unreachable_master_fails_once_and_the_others_are_still_checked(lab: LoopbackCluster,
                                                                          tmp_path: Path) -> None:
    path = config(lab, tmp_path)
    dead = free_port(host(9))  # bound and released: nothing listens there
    text = path.read_text().replace('[[nodes]]\nname = "gpu-master"', f'[[nodes]]\nname = "gone"\nhost = "{host(9)}"\n'
                                    f'port = {dead}\n\n[[nodes]]\nname = "gpu-master"', 1)
    path.write_text(text)
    code, report = doctor(path)
    checks = by_key(report)
    assert code == 1 and report["master"] == "gone"
    assert checks[("gone", "ssh")]["status"] == "fail" and "refused" in checks[("gone", "ssh")]["detail"]
    assert checks[("gpu1", "torch")]["status"] == "ok"
    assert checks[("gpu1", "rendezvous")]["status"] == "skip" and "not reachable" in checks[("gpu1", "rendezvous")][
        "detail"]


def test_a_service_templates_port_in_use_and_a_bind_to_every_interface_are_warned(lab: LoopbackCluster,
                                                                                   tmp_path: Path) -> None:
    import os

    holder = socket.socket()  # another program on the port, on the nodes' loopback (where services are probed)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    saved = Path(os.environ["XDG_CONFIG_HOME"]) / "ugro" / "templates"
    saved.mkdir(parents=True)
    (saved / "my-api.toml").write_text(f'name = "api"\nkind = "service"\nport = {port}\n'
                                       'command = ["srv", "--host", "0.0.0.0", "--port", "{port}"]\n')
    try:
        code, report = doctor(config(lab, tmp_path))
    finally:
        holder.close()
    checks = by_key(report)
    for name in NAMES:
        check = checks[(name, "service")]
        assert check["status"] == "warn", check
        assert f"my-api: port {port} is in use by another program" in check["detail"]
        assert "my-api: binds 0.0.0.0" in check["detail"] and "ugro forward" in check["detail"]
        assert "serve-tiny" not in check["detail"]  # the shipped templates are fine; only problems are listed
    assert code == 0  # warnings, not failures
