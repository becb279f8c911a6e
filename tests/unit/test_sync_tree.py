"""The tree `--sync` sends (ignore rules, .git, symlinks, bad input) and the node's code store (run as the node
runs it, under the oldest Python here), without a network."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ugro_tui.core.sync import node_store
from ugro_tui.core.sync.tree import HashCache, SyncError, scan

from .test_node_python import oldest_python


def make_tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("print('train')\n")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "run.sh").chmod(0o755)
    (root / "pkg" / "model.py").write_text("W = 1\n")
    (root / "pkg" / "model.pyc").write_bytes(b"\0\1")
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"x" * 1000)
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "latest.py").symlink_to("train.py")
    return root


def paths(tree) -> list[str]:
    return [e.path for e in tree.entries]


def test_gitignore_applies_and_git_stays_home(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "src")
    (root / ".gitignore").write_text("*.pyc\ndata/\n")
    tree = scan(root)
    assert paths(tree) == [".gitignore", "latest.py", "pkg/model.py", "run.sh", "train.py"]
    assert set(tree.excluded) == {".git/", "data/", "pkg/model.pyc"}
    assert tree.rules == ".gitignore and .git/"
    link = next(e for e in tree.entries if e.path == "latest.py")
    assert (link.kind, link.target) == ("l", "train.py")
    run = next(e for e in tree.entries if e.path == "run.sh")
    assert run.mode == 0o755 and run.key.endswith("x") and run.sha256 == hashlib.sha256(b"#!/bin/sh\necho run\n"
                                                                                           ).hexdigest()
    with_git = scan(root, include_git=True)
    assert ".git/HEAD" in paths(with_git) and with_git.hash != tree.hash
    assert "largest: " in tree.summary() and "left out: " in tree.summary()


def test_ugroignore_wins_over_gitignore(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "src")
    (root / ".gitignore").write_text("data/\n")  # the classic trap: data/ silently skipped
    (root / ".ugroignore").write_text("*.pyc\n.git/\n")
    tree = scan(root)
    assert "data/big.bin" in paths(tree) and "pkg/model.pyc" not in paths(tree) and ".gitignore" in paths(tree)
    assert tree.rules == ".ugroignore"


def test_same_content_same_hash_and_one_edit_changes_it(tmp_path: Path) -> None:
    a, b = make_tree(tmp_path / "a"), make_tree(tmp_path / "b")
    assert scan(a).hash == scan(b).hash  # where a tree lives does not matter
    (b / "train.py").write_text("print('edited')\n")
    assert scan(a).hash != scan(b).hash


def test_the_hash_cache_reads_an_unchanged_file_once(tmp_path: Path, monkeypatch) -> None:
    root = make_tree(tmp_path / "src")
    cache_path = tmp_path / "hashes.json"
    first = scan(root, cache=HashCache(cache_path))
    opened = []
    real_open = open

    def counting(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting)
    again = scan(root, cache=HashCache(cache_path))
    assert again.hash == first.hash and not [p for p in opened if p.startswith(str(root))]


@pytest.mark.parametrize(("setup", "words"), [
    (lambda r: (r / "out").symlink_to("/etc/passwd"), "a symlink pointing outside the tree (/etc/passwd)"),
    (lambda r: (r / ".ugroignore").write_text("ok.txt\n[z-a]\n"), ".ugroignore: line 2: invalid pattern '[z-a]'"),
    (lambda r: (r / ".gitignore").write_text("!\n"), ".gitignore: line 1: invalid pattern '!'"),
])
def test_bad_trees_are_refused_naming_the_file(tmp_path: Path, setup, words: str) -> None:
    root = make_tree(tmp_path / "src")
    setup(root)
    with pytest.raises(SyncError) as err:
        scan(root)
    assert words in str(err.value)


def test_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SyncError, match="nope: no such directory"):
        scan(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(SyncError, match="not a directory"):
        scan(tmp_path / "file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file: an unreadable file cannot be made")
def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "src")
    (root / "secret.py").write_text("x")
    (root / "secret.py").chmod(0)
    with pytest.raises(SyncError, match="secret.py: cannot read it"):
        scan(root)


def store(python: str, root: Path, verb: str, payload: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([python, node_store.__file__, verb, str(root)], input=payload, capture_output=True)


def frames(items: list[tuple[str, bytes]]) -> bytes:
    return b"".join(f"{k} {len(d)}\n".encode() + d for k, d in items)


def test_the_node_store_on_the_oldest_python(tmp_path: Path) -> None:
    python = oldest_python() if sys.version_info >= (3, 9) else sys.executable
    src = make_tree(tmp_path / "src")
    tree = scan(src)
    manifest = json.dumps(tree.manifest("train")).encode()
    code = tmp_path / "node-code"
    have = json.loads(store(python, code, "have", manifest).stdout)
    assert not have["complete"] and sorted(have["missing"]) == sorted({e.key for e in tree.files})
    objects = {e.key: (src / e.path).read_bytes() for e in tree.files}
    # A damaged object and a copy cut off midway leave nothing behind.
    key, data = next(iter(objects.items()))
    bad = store(python, code, "put", frames([(key, data[:-1] + b"?")]))
    assert bad.returncode == 1 and b"arrived damaged" in bad.stderr
    cut = store(python, code, "put", frames([(key, data)])[:-1])
    assert cut.returncode == 1 and b"cut off" in cut.stderr
    assert not [p for p in (code / ".objects").iterdir()]
    done = store(python, code, "put", frames(list(objects.items())))
    assert json.loads(done.stdout) == {"stored": len(objects), "bytes": sum(map(len, objects.values()))}
    # A partial tree (no .done marker) is never used: build makes it again.
    (code / tree.hash).mkdir()
    (code / tree.hash / "stale").write_text("half a copy")
    assert json.loads(store(python, code, "build", manifest).stdout)["linked"] == len(tree.files)
    built = code / tree.hash
    assert sorted(str(p.relative_to(built)) for p in built.rglob("*")) == sorted(
        ["latest.py", "pkg", "pkg/model.py", "run.sh", "train.py", ".gitignore"] if (src / ".gitignore").exists()
        else ["latest.py", "pkg", "pkg/model.py", "pkg/model.pyc", "data", "data/big.bin", "run.sh", "train.py"])
    assert os.readlink(built / "latest.py") == "train.py" and os.access(built / "run.sh", os.X_OK)
    assert json.loads(store(python, code, "have", manifest).stdout) == {"complete": True, "missing": []}
    # A path that climbs out of the tree is refused.
    evil = json.dumps({"hash": "abc", "name": "x", "entries": [["../escape", "l", 0, 0, "", "x"]]}).encode()
    assert b"outside the tree" in store(python, code, "build", evil).stderr
    # gc: six trees of one name keep the newest five; the objects only the dropped one used go.
    for i in range(6):
        (src / "train.py").write_text(f"print({i})\n")
        t = scan(src)
        store(python, code, "put", frames([(e.key, (src / e.path).read_bytes()) for e in t.files]))
        store(python, code, "build", json.dumps(t.manifest("train")).encode())
    out = json.loads(store(python, code, "gc", json.dumps({"keep": [], "per_name": 5}).encode()).stdout)
    assert len(out["removed"]) == 2 and out["objects"] >= 2  # the first tree and the original one
    assert len(list((code / ".done").iterdir())) == 5


def test_the_data_check_on_the_oldest_python(tmp_path: Path) -> None:
    from ugro_tui.core.sync.service import DATA_SCRIPT

    python = oldest_python() if sys.version_info >= (3, 9) else sys.executable
    data = tmp_path / "tokens.bin"
    data.write_bytes(b"t" * 3000)
    folder = tmp_path / "set"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "x").write_bytes(b"x" * 100)
    wants = [[str(data), 0, hashlib.sha256(b"t" * 3000).hexdigest()], [str(data), 0, "0" * 64],
             [str(folder), 1e-7, ""], [str(folder), 1.0, ""], [str(tmp_path / "nope"), 0, ""],
             [str(folder), 0, "0" * 64]]
    out = subprocess.run([python, "-c", DATA_SCRIPT, json.dumps(wants)], capture_output=True, text=True)
    rows = json.loads(out.stdout)
    assert [r[1] for r in rows] == [None, "sha256 differs", None, "too small (0.00 GB, needs 1 GB)", "missing",
                                    "sha256 given, but it is a directory"]
    assert rows[2][2] == 100
