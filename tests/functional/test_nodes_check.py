"""`ugro nodes --check` against the real loopback cluster: ok, refused, auth, unknown and changed host keys."""

from __future__ import annotations

import json
from pathlib import Path

from ugro_tui.sim.loopback import LoopbackCluster, free_port, write_key

from ..conftest import host, run_ugro


def check(config: Path, *extra: str) -> tuple[int, list[dict]]:
    done = run_ugro("nodes", "--check", "--json", "--config", str(config), *extra)
    assert "Traceback" not in done.stderr
    return done.returncode, json.loads(done.stdout)["nodes"]


def test_all_three_nodes_ok(lab_config) -> None:
    _, config = lab_config
    code, nodes = check(config)
    assert code == 0
    assert [(n["name"], n["result"]) for n in nodes] == [("node0", "ok"), ("node1", "ok"), ("node2", "ok")]
    table = run_ugro("nodes", "--check", "--config", str(config))
    assert table.returncode == 0 and table.stdout.count(" ok ") == 3


def test_nothing_listening_is_refused_fast(lab: LoopbackCluster, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    port = free_port(host(9))  # bound and released: nothing listens there now
    config.write_text(f'[cluster]\nknown_hosts = "{lab.known_hosts_path}"\n[[nodes]]\nname = "gone"\n'
                      f'host = "{host(9)}"\nport = {port}\nidentity_file = "{lab.client_key_path}"\n')
    code, [node] = check(config)
    assert code == 1
    assert node["result"] == "refused" and node["seconds"] < 2
    assert f"port {port}" in node["detail"]


def test_changed_host_key_is_refused_with_the_fingerprint(solo_lab: LoopbackCluster, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(solo_lab.cluster_toml())
    assert check(config)[1][0]["result"] == "ok"
    solo_lab.change_host_key(0)
    new_fp = solo_lab.nodes[0].host_key.get_fingerprint("sha256")
    for extra in ((), ("--accept-new",)):  # a changed key is never trusted, even with --accept-new
        code, [node] = check(config, *extra)
        assert code == 1 and node["result"] == "host-key-mismatch"
        assert node["fingerprint"] == new_fp and new_fp in node["detail"] and "CHANGED" in node["detail"]
    table = run_ugro("nodes", "--check", "--config", str(config))
    assert new_fp in table.stdout


def test_unknown_host_key_needs_explicit_trust(solo_lab: LoopbackCluster, tmp_path: Path) -> None:
    solo_lab.known_hosts_path.write_text("")
    config = tmp_path / "c.toml"
    config.write_text(solo_lab.cluster_toml())
    fp = solo_lab.nodes[0].host_key.get_fingerprint("sha256")
    code, [node] = check(config)
    assert code == 1 and node["result"] == "unknown-host-key" and node["fingerprint"] == fp
    assert solo_lab.known_hosts_path.read_text() == ""  # nothing was trusted silently
    code, [node] = check(config, "--accept-new")
    assert code == 0 and node["result"] == "ok"
    assert f"[{host(5)}]:{solo_lab.nodes[0].port} ssh-ed25519 " in solo_lab.known_hosts_path.read_text()
    assert check(config)[0] == 0


def test_wrong_key_is_auth_failed(lab: LoopbackCluster, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    write_key(stranger)
    config = tmp_path / "c.toml"
    config.write_text(lab.cluster_toml().replace(str(lab.client_key_path), str(stranger)))
    code, nodes = check(config)
    assert code == 1 and {n["result"] for n in nodes} == {"auth-failed"}


def test_ssh_config_host_alias_is_honoured(lab: LoopbackCluster, tmp_path: Path) -> None:
    node = lab.nodes[1]
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host gpu1-alias\n  HostName {node.host}\n  Port {node.port}\n"
                          f"  IdentityFile {lab.client_key_path}\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[cluster]\nknown_hosts = "{lab.known_hosts_path}"\nssh_config = "{ssh_config}"\n'
                      '[[nodes]]\nname = "gpu1"\nhost = "gpu1-alias"\n')
    code, [result] = check(config)
    assert (code, result["result"]) == (0, "ok")
