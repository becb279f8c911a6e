"""cluster.toml edited in place: every comment and blank line survives; bad values never reach the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ugro_tui.config import load_cluster
from ugro_tui.config_edit import add_node, remove_node, update_node
from ugro_tui.errors import ConfigError, UsageError

from ..conftest import run_ugro

COMMENTED = """\
# my lab — do not lose this header
[cluster]
name = "lab"   # trailing comment on the name
poll_interval = 0.5

# the master, under my desk
[[nodes]]
name = "gpu-master"   # RTX 5070 Ti
host = "127.0.0.2"
labels = ["master"]   # keep

[[nodes]]
# gpu1 is ob's machine
name = "gpu1"
host = "127.0.0.3"
user = "ob"

# [[nodes]]
# name = "gpu2"        # a commented-out node stays commented out
# host = "192.168.1.102"
"""


def comments(text: str) -> list[str]:
    return [line[line.index("#"):] for line in text.splitlines() if "#" in line]


def test_add_edit_remove_keep_every_comment(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(COMMENTED)
    add_node(path, {"name": "gpu2", "host": "127.0.0.4", "user": "ollie", "port": 2222, "labels": ["worker"]})
    update_node(path, "gpu1", {"python": "~/env/bin/python", "user": None})
    cluster = load_cluster(path)
    assert [n.name for n in cluster.nodes] == ["gpu-master", "gpu1", "gpu2"]
    assert cluster.node("gpu2").port == 2222 and cluster.node("gpu1").user is None
    assert cluster.node("gpu1").python == "~/env/bin/python"
    text = path.read_text()
    assert comments(text) == comments(COMMENTED)
    assert text.startswith(COMMENTED.split("[[nodes]]\n# gpu1")[0])  # untouched up to the edited node
    remove_node(path, "gpu2")
    assert comments(path.read_text()) == comments(COMMENTED)


def test_add_then_remove_gives_back_the_same_bytes(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(COMMENTED)
    add_node(path, {"name": "gpu2", "host": "127.0.0.4"})
    update_node(path, "gpu-master", {"host": "127.0.0.12"})
    update_node(path, "gpu-master", {"host": "127.0.0.2"})
    remove_node(path, "gpu2")
    assert path.read_text() == COMMENTED


def test_an_invalid_node_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(COMMENTED)
    with pytest.raises(ConfigError, match=r"nodes\[2\]\.host"):
        add_node(path, {"name": "evil", "host": "x; rm -rf ~"})
    with pytest.raises(UsageError, match="exists already"):
        add_node(path, {"name": "gpu1", "host": "127.0.0.9"})
    with pytest.raises(UsageError, match="no node 'gpu9'"):
        remove_node(path, "gpu9")
    assert path.read_text() == COMMENTED


def test_cli_nodes_add_and_remove(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(COMMENTED)
    done = run_ugro("nodes", "add", "gpu2", "--host", "127.0.0.4", "--user", "ollie", "--labels", "worker",
                    "--config", str(path))
    assert done.returncode == 0, done.stderr
    assert "added gpu2 (ollie@127.0.0.4)" in done.stdout
    listed = run_ugro("nodes", "--json", "--config", str(path))
    assert "gpu2" in listed.stdout
    bad = run_ugro("nodes", "add", "gpu3", "--host", "127.0.0.5", "--port", "0", "--config", str(path))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "--port" in bad.stderr
    gone = run_ugro("nodes", "remove", "gpu2", "--config", str(path))
    assert gone.returncode == 0 and path.read_text() == COMMENTED
