"""cluster.toml validation: every bad input gets one line naming the file and the field path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ugro_tui.config import load_cluster, resolve_config_path
from ugro_tui.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
GOOD_NODE = '[[nodes]]\nname = "gpu1"\nhost = "127.0.0.1"\n'

BAD = [
    # (config text, expected field path, words the message must contain)
    ('[cluster]\npoll_intervl = 1.0\n' + GOOD_NODE, "cluster.poll_intervl", 'did you mean "poll_interval"'),
    (GOOD_NODE + 'hots = "x"\n', "nodes[0].hots", 'did you mean "host"'),
    ('[[nodes]]\nname = "a"\nhost = "127.0.0.1"\n[[nodes]]\nname = "b"\nhost = "127.0.0.1"\nport = "22a"\n',
     "nodes[1].port", 'expected an integer 1-65535, got "22a"'),
    (GOOD_NODE + "port = 0\n", "nodes[0].port", "expected an integer 1-65535, got 0"),
    (GOOD_NODE + "port = 70000\n", "nodes[0].port", "1-65535"),
    (GOOD_NODE + "port = true\n", "nodes[0].port", "got true"),
    ('[[nodes]]\nname = "gpu1"\n', "nodes[0].host", "is required"),
    ('[[nodes]]\nhost = "127.0.0.1"\n', "nodes[0].name", "is required"),
    (GOOD_NODE + GOOD_NODE, "nodes[1].name", 'duplicate node name "gpu1"'),
    ('[[nodes]]\nname = "gpu1"\nhost = "my host"\n', "nodes[0].host", "without spaces"),
    ('[[nodes]]\nname = "gpu1"\nhost = "h;rm -rf /"\n', "nodes[0].host", "shell characters"),
    (GOOD_NODE + 'user = "ob$(id)"\n', "nodes[0].user", "shell characters"),
    (GOOD_NODE + 'user = "o b"\n', "nodes[0].user", "shell characters"),
    ('[cluster]\npoll_interval = 0\n' + GOOD_NODE, "cluster.poll_interval", "above 0"),
    ('[cluster]\npoll_interval = -1.5\n' + GOOD_NODE, "cluster.poll_interval", "above 0"),
    ('[cluster]\npoll_interval = "fast"\n' + GOOD_NODE, "cluster.poll_interval", 'got "fast"'),
    ('[cluster]\nrendezvous_ports = [29599, 29500]\n' + GOOD_NODE, "cluster.rendezvous_ports", "reversed"),
    ('[cluster]\nrendezvous_ports = [29500]\n' + GOOD_NODE, "cluster.rendezvous_ports", "[first, last]"),
    ('[cluster]\nrendezvous_ports = [80, 90]\n' + GOOD_NODE, "cluster.rendezvous_ports", "1024-65535"),
    (GOOD_NODE + 'labels = "master"\n', "nodes[0].labels", "expected an array"),
    (GOOD_NODE + 'labels = ["ok", "not ok"]\n', "nodes[0].labels", "label names"),
    (GOOD_NODE + 'socket_ifname = "eth0; reboot"\n', "nodes[0].socket_ifname", "interface name"),
    (GOOD_NODE + 'env = { "1BAD" = "x" }\n', "nodes[0].env.1BAD", "environment variable name"),
    (GOOD_NODE + "env = { OMP_NUM_THREADS = 4 }\n", "nodes[0].env.OMP_NUM_THREADS", "expected a string"),
    (GOOD_NODE + 'transport = "telnet"\n', "nodes[0].transport", "one of auto, ssh, local"),
    ('[[nodes]]\nname = "bad name"\nhost = "127.0.0.1"\n', "nodes[0].name", "letters, digits"),
    ('[cluster]\nname = "x"\n', "nodes", "no nodes configured"),
    ('nodes = "gpu1"\n', "nodes", "expected [[nodes]]"),
    ('[clusterr]\nname = "x"\n' + GOOD_NODE, "clusterr", 'did you mean "cluster"'),
    (GOOD_NODE + 'sim = { gpus = ["RTX 9999"] }\n', "nodes[0].sim.gpus[0]", "unknown GPU model"),
    (GOOD_NODE + 'sim = { gpus = ["RTX 4070"], source = "cuda" }\n', "nodes[0].sim.source", "one of"),
    ('[cluster]\nconnect_timeout = 0\n' + GOOD_NODE, "cluster.connect_timeout", "above 0"),
]


@pytest.mark.parametrize(("text", "field", "words"), BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_config_names_file_and_field(tmp_path: Path, text: str, field: str, words: str) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_cluster(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert words in message
    assert "\n" not in message


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text('[cluster]\nname = "x"\npoll_interval 1.0\n')
    with pytest.raises(ConfigError) as info:
        load_cluster(path)
    assert str(info.value).startswith(f"{path}: line 3: invalid TOML: ")


@pytest.mark.parametrize("problem", ["missing", "directory", "binary"])
def test_unreadable_file(tmp_path: Path, problem: str) -> None:
    path = tmp_path / "cluster.toml"
    if problem == "directory":
        path.mkdir()
    elif problem == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError) as info:
        load_cluster(path)
    assert str(info.value).startswith(f"{path}: ")


def test_good_config_round_trips_every_field(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text("""
[cluster]
name = "home-lab"
poll_interval = 2
rendezvous_ports = [29500, 29510]
known_hosts = "~/.ssh/known_hosts"

[[nodes]]
name = "gpu-master"
host = "127.0.0.1"
port = 2222
user = "ugro"
identity_file = "~/.ssh/id_ed25519"
python = "/opt/conda/envs/torch/bin/python"
workdir = "~/ugro"
labels = ["master"]
socket_ifname = "lo"
env = { OMP_NUM_THREADS = "4" }

[[nodes]]
name = "gpu1"
host = "localhost"
""")
    cluster = load_cluster(path)
    assert cluster.name == "home-lab" and cluster.poll_interval == 2.0
    assert cluster.rendezvous_ports == (29500, 29510)
    master = cluster.node("gpu-master")
    assert (master.port, master.user, master.labels, master.socket_ifname) == (2222, "ugro", ("master",), "lo")
    assert master.env == (("OMP_NUM_THREADS", "4"),)
    assert master.address == "ugro@127.0.0.1:2222" and not master.is_local
    assert cluster.node("gpu1").is_local and cluster.node("gpu1").python == "python3"


def test_shipped_cluster_toml_is_valid_and_loopback_only() -> None:
    import ipaddress

    cluster = load_cluster(REPO / "cluster.toml")
    for node in cluster.nodes:
        assert node.host == "localhost" or ipaddress.ip_address(node.host).is_loopback


def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    user = tmp_path / "xdg-config" / "ugro" / "cluster.toml"
    user.parent.mkdir(parents=True)
    user.write_text(GOOD_NODE)
    assert resolve_config_path() == user
    (tmp_path / "cluster.toml").write_text(GOOD_NODE)
    assert resolve_config_path() == Path("cluster.toml")
    monkeypatch.setenv("UGRO_CONFIG", "/from/env.toml")
    assert resolve_config_path() == Path("/from/env.toml")
    assert resolve_config_path("explicit.toml") == Path("explicit.toml")


def test_no_config_anywhere_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no config found"):
        resolve_config_path()


def test_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(GOOD_NODE + 'port = "22a"\n')
    done = subprocess.run([sys.executable, "-m", "ugro_tui", "nodes", "--config", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr == f'{path}: nodes[0].port: expected an integer 1-65535, got "22a"\n'
    assert "Traceback" not in done.stdout + done.stderr
