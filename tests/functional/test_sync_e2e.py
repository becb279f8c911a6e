"""`--sync` and `data` end to end on a loopback cluster of its own (127.0.W.12-14), each node with its own workdir
and code store: the exact tree arrives, only what changed travels, a cut-off copy is never used, jobs run the
edited code, and a node without the job's data keeps it queued, named."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ugro_tui.config import Cluster, parse_cluster
from ugro_tui.core.pool import Pool
from ugro_tui.core.sync.push import CodeStore, push
from ugro_tui.core.sync.service import snapshot
from ugro_tui.core.sync.tree import SyncError
from ugro_tui.sim.loopback import LoopbackCluster

from ..conftest import host, run_ugro
from ..helpers import SERVICE_PORTS

pytestmark = pytest.mark.timeout(240)
HOSTS = [host(12), host(13), host(14)]  # a lab of its own, on this worker's addresses


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCluster]:
    cluster = LoopbackCluster(tmp_path_factory.mktemp("sync-lab"), hosts=HOSTS, service_ports=SERVICE_PORTS).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def config(lab: LoopbackCluster, tmp_path: Path) -> Path:
    """Each node's workdir and code store in this test's folder (they are one machine, so they must not share)."""
    lines = []
    for line in lab.cluster_toml(poll_interval=0.5, sim=[(["RTX 4070"], "nvml")] * 3).splitlines():
        lines.append(line)
        if line.startswith("workdir = "):
            name = Path(line.split('"')[1]).name
            lines[-1] = f'workdir = "{tmp_path / "nodes" / name / "work"}"'
            lines.append(f'code_dir = "{tmp_path / "nodes" / name / "code"}"')
    path = tmp_path / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cluster_of(path: Path) -> Cluster:
    return parse_cluster(tomllib.loads(path.read_text()), str(path))


def project(root: Path) -> Path:
    """A training project as users have them: code, a .git with many small files, data and checkpoints inside."""
    (root / "lib").mkdir(parents=True)
    (root / "train.py").write_text("import os, lib.model as m\nprint('trained', m.VERSION, os.environ['UGRO_NODE'])\n")
    (root / "lib" / "__init__.py").write_text("")
    (root / "lib" / "model.py").write_text("VERSION = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\nexec python3 train.py\n")
    (root / "run.sh").chmod(0o755)
    (root / "current.py").symlink_to("train.py")
    for i in range(200):
        (root / ".git" / "objects" / f"{i:02x}").mkdir(parents=True, exist_ok=True)
        (root / ".git" / "objects" / f"{i:02x}" / "obj").write_bytes(os.urandom(64))
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "step-1.pt").write_bytes(b"w" * 4096)
    (root / "data").mkdir()
    (root / "data" / "tokens.bin").write_bytes(b"t" * 2048)
    (root / ".gitignore").write_text("checkpoints/\n*.pyc\n")
    return root


def manifest_of(folder: Path) -> dict[str, tuple[str, str]]:
    """Every file and link under `folder`: sha256 and mode, or the link's target."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_file():
            out[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), oct(path.stat().st_mode & 0o111))
    return out


def sent(stdout: str) -> dict[str, tuple[int, int]]:
    """`node0: 7 files, 123 bytes sent -> ...` per node."""
    out = {}
    for line in stdout.splitlines():
        name, _, rest = line.partition(": ")
        words = rest.split()
        out[name] = (int(words[0]), int(words[2]))
    return out


@pytest.mark.usefixtures("autostart")  # `ugro sync` copies through the daemon it starts
def test_the_exact_tree_arrives_and_only_changes_travel(config: Path, tmp_path: Path) -> None:
    src = project(tmp_path / "src")
    first = run_ugro("sync", str(src), "--nodes", "node0,node1,node2", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "left out: " in first.stderr and ".git/" in first.stderr and "checkpoints/" in first.stderr
    moved = sent(first.stdout)
    assert set(moved) == {"node0", "node1", "node2"} and all(f == 6 for f, _ in moved.values()), moved
    tree = first.stdout.split("-> ")[1].split()[0]
    expected = {k: v for k, v in manifest_of(src).items()
                if not k.startswith((".git", "checkpoints")) or k == ".gitignore"}
    for name in ("node0", "node1", "node2"):
        folder = tmp_path / "nodes" / name / "code" / Path(tree).name
        assert manifest_of(folder) == expected  # data/ is sent: only .gitignore's rules and .git/ leave things out
        assert os.readlink(folder / "current.py") == "train.py" and os.access(folder / "run.sh", os.X_OK)
    again = run_ugro("sync", str(src), "--config", str(config))
    assert sent(again.stdout) == {n: (0, 0) for n in ("node0", "node1", "node2")}  # nothing changed: 0 bytes
    (src / "lib" / "model.py").write_text("VERSION = 2\n")
    edited = run_ugro("sync", str(src), "--config", str(config))
    assert sent(edited.stdout) == {n: (1, 12) for n in ("node0", "node1", "node2")}  # one file, 12 bytes
    # With .ugroignore the user decides: .git/ now travels too, checkpoints still do not.
    (src / ".ugroignore").write_text("checkpoints/\n")
    with_git = run_ugro("sync", str(src), "--nodes", "node1", "--config", str(config))
    assert sent(with_git.stdout)["node1"][0] >= 200


def test_over_the_limit_nothing_is_copied_and_the_summary_says_why(config: Path, tmp_path: Path) -> None:
    src = project(tmp_path / "src")
    (src / "data" / "huge.bin").write_bytes(b"h" * 2_000_000)
    config.write_text(config.read_text().replace("[cluster]\n", "[cluster]\nsync_limit_mb = 1\n"))
    out = run_ugro("submit", "--sync", str(src), "--config", str(config), "--", "train.py")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "over the 1 MB limit" in out.stderr and "data/huge.bin (2.0 MB)" in out.stderr
    assert ".ugroignore" in out.stderr
    assert not (tmp_path / "nodes").exists() or not any((tmp_path / "nodes").rglob(".done"))
    assert json.loads(run_ugro("queue", "--json", "--config", str(config)).stdout)["jobs"] == []


async def test_a_copy_cut_off_midway_is_never_used_and_the_next_one_completes(lab: LoopbackCluster, config: Path,
                                                                                tmp_path: Path) -> None:
    src = project(tmp_path / "src")
    # Three batches of content (8 MiB each at most). Sends are pipelined one batch ahead, so when the first is
    # stored (and the node killed) the second may have arrived too, but never the third: some is always left.
    for name in ("a.bin", "b.bin", "c.bin"):
        (src / "data" / name).write_bytes(os.urandom(9 << 20))
    cluster = dataclasses.replace(cluster_of(config), sync_limit_mb=100)
    tree, manifest = snapshot(str(src), cluster, name="cut")
    node = cluster.node("node2")
    code = tmp_path / "nodes" / "node2" / "code"
    calls = []

    def kill_after_first_batch(name: str, files: int, done: int, total_files: int, total: int) -> None:
        calls.append(done)
        if done and len(calls) == 2:
            lab.kill_node(2)  # the node vanishes midway: its sshd and the session copying

    try:
        async with Pool(cluster) as pool:
            with pytest.raises((SyncError, OSError, Exception)) as err:
                await push(pool.get("node2"), node, manifest, CodeStore(), kill_after_first_batch)
            assert "node2" in str(err.value) or err.type is not SyncError
        assert not (code / ".done" / tree.hash).exists() and not (code / tree.hash).exists()  # nothing to use
    finally:
        lab.restart_node(2)
    async with Pool(cluster) as pool:
        result = await push(pool.get("node2"), node, manifest, CodeStore())
    assert 0 < result.files_sent < len(tree.files)  # what arrived before the cut was kept, checked, and reused
    assert not [p for p in (code / ".objects").iterdir() if p.name.startswith(".tmp-")]  # the cut file: removed
    assert manifest_of(code / tree.hash)["data/a.bin"][0] == hashlib.sha256((src / "data/a.bin").read_bytes()
                                                                            ).hexdigest()


def scheduler(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ugro_tui", "scheduler", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def queue(config: Path) -> dict[int, dict]:
    return {j["id"]: j for j in json.loads(run_ugro("queue", "--json", "--config", str(config)).stdout)["jobs"]}


def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_three_nodes_run_the_edited_file_and_the_job_records_what_moved(config: Path, tmp_path: Path) -> None:
    src = project(tmp_path / "src")
    args = ["--kind", "command", "--nnodes", "3", "--checkpoint-dir", "ckpt", "--", sys.executable, "train.py"]
    out = run_ugro("submit", "--sync", str(src), "--config", str(config), *args)
    assert out.returncode == 0, out.stderr
    done = run_ugro("scheduler", "--until-idle", "--config", str(config), timeout=120)
    assert done.returncode == 0, done.stderr
    (src / "lib" / "model.py").write_text("VERSION = 2\n")  # the user edits on the master...
    out = run_ugro("submit", "--sync", str(src), "--config", str(config), *args)
    (src / "lib" / "model.py").write_text("VERSION = 3\n")  # ...and edits again while job 2 waits: it keeps 2
    done = run_ugro("scheduler", "--until-idle", "--config", str(config), timeout=120)
    assert done.returncode == 0, done.stderr
    for job_id, version in ((1, 1), (2, 2)):
        shown = json.loads(run_ugro("show", str(job_id), "--json", "--config", str(config)).stdout)
        assert shown["state"] == "succeeded", shown
        logs = run_ugro("logs", str(job_id), "--config", str(config)).stdout
        assert sorted(line.split(maxsplit=1)[1] for line in logs.splitlines() if "trained" in line) == [
            f"trained {version} node{i}" for i in range(3)], logs
        record = shown["sync"]
        assert record["hash"] == shown["spec"]["sync_hash"] and set(record["nodes"]) == {"node0", "node1", "node2"}
        files = {n: v["files_sent"] for n, v in record["nodes"].items()}
        assert files == ({n: 6 for n in files} if job_id == 1 else {n: 1 for n in files}), files
    # Checkpoints of a synced job live under the node's workdir, never in the code tree.
    assert not any((tmp_path / "nodes").rglob("code/*/ckpt"))


def test_data_missing_on_one_node_keeps_the_job_queued_naming_it(config: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "datasets" / "wikitext.txt"
    dataset.parent.mkdir()
    dataset.write_text("hello\n")
    absent = tmp_path / "only-on-node0-and-1"
    text = config.read_text().replace('code_dir = "' + str(tmp_path / "nodes" / "node2" / "code") + '"',
                                      'code_dir = "' + str(tmp_path / "nodes" / "node2" / "code") + '"\n'
                                      f'data = ["{absent}"]')
    config.write_text(text)
    good = run_ugro("submit", "--config", str(config), "--kind", "command", "--nnodes", "3",
                    "--data", str(dataset), "--", "true")
    wrong = tmp_path / "job.toml"
    wrong.write_text(f'command = ["true"]\nkind = "command"\nnodes = ["node0"]\n'
                     f'data = [{{ path = "{dataset}", sha256 = "{"0" * 64}" }}]\n')
    bad_hash = run_ugro("submit", "--config", str(config), "--file", str(wrong))
    assert (good.stdout, bad_hash.stdout) == ("1\n", "2\n"), good.stderr + bad_hash.stderr
    proc = scheduler(config)
    try:
        until(lambda: "data missing on node2" in queue(config).get(1, {}).get("reason", ""), 60, "job 1's reason")
        until(lambda: "data sha256 differs on node0" in queue(config).get(2, {}).get("reason", ""), 60,
              "job 2's reason")
        jobs = queue(config)
        assert jobs[1]["state"] == "queued" and f"data missing on node2: {absent}" in jobs[1]["reason"]
        assert jobs[1]["attempt"] == 0  # waiting for data spends no retry
        assert jobs[2]["state"] == "queued" and str(dataset) in jobs[2]["reason"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_bad_sync_input_is_one_line(config: Path, tmp_path: Path) -> None:
    src = project(tmp_path / "src")
    (src / "escape").symlink_to("/etc")
    cases = [(["submit", "--sync", str(tmp_path / "nope"), "--", "t.py"], "nope: no such directory"),
             (["submit", "--sync", str(src), "--", "t.py"], "a symlink pointing outside the tree (/etc)"),
             (["submit", "--data", "", "--", "t.py"], "data: path: expected a path"),
             (["sync", str(src), "--nodes", "nodeX"], "no node or label 'nodeX'")]
    for toml, words in (("sync = 5", "sync: expected text, got 5"), ('sync_git = "yes"', "sync_git: expected true"),
                        ('data = "x"', "data: expected a list"), ("data = [{ path = 'x', min_gb = -1 }]", "min_gb")):
        job = tmp_path / f"job{len(cases)}.toml"
        job.write_text(f'command = ["t.py"]\n{toml}\n')
        cases.append((["submit", "--file", str(job)], words))
    for args, words in cases:
        out = run_ugro(*args, "--config", str(config))
        assert out.returncode == 2 and words in out.stderr and out.stderr.count("\n") == 1, (args, out.stderr)


async def test_the_form_copies_the_folder_with_progress_then_queues(config: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The form keeps the tree and the daemon copies it (its connections), with progress in the preview."""
    from ..conftest import daemon_on

    with daemon_on(config, monkeypatch):
        await copy_from_the_form(config, tmp_path)


async def copy_from_the_form(config: Path, tmp_path: Path) -> None:
    from textual.widgets import Input, Static

    from ugro_tui.core.daemon.client import Client
    from ugro_tui.core.jobs.store import JobStore
    from ugro_tui.ui.app import make_app
    from ugro_tui.ui.screens.launch import LaunchScreen

    from ..ui_states import showing, wait_for

    src = project(tmp_path / "src")
    store = JobStore(tmp_path / "state")  # not the daemon's: it copies the code, and dispatches nothing of this
    app = make_app(cluster_of(config), monitor=False, store=store)
    app.daemon = Client()
    shown: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("n")
        await wait_for(pilot, lambda: showing(app, LaunchScreen), what="the form")
        for field, text in (("script", "train.py"), ("sync", str(tmp_path / "nope")), ("data", "'a b' ~/c")):
            box = app.screen.query_one(f"#f-{field}", Input)
            box.focus()
            await pilot.press(*text)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not store.all() and "sync: no folder" in str(app.screen.query_one("#err-sync", Static).render())
        box = app.screen.query_one("#f-sync", Input)
        box.value = str(src)
        preview = app.screen.query_one("#preview", Static)
        original = preview.update

        def spy(content="", **kwargs):
            shown.append(str(content))
            return original(content, **kwargs)

        preview.update = spy  # type: ignore[method-assign]
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: bool(store.all()) and app.current_mode == "jobs", 30, "the job, then its view")
    [job] = store.all()
    assert job.spec.sync == str(src) and job.spec.sync_hash and job.spec.data == (("a b", 0.0, ""), ("~/c", 0.0, ""))
    assert {n: f for n, f, _ in job.sync_sent} == {"node0": 6, "node1": 6, "node2": 6}
    assert any("node2: 6/6 files" in text for text in shown), shown  # the copy's progress, in the preview
    assert (tmp_path / "nodes" / "node1" / "code" / job.spec.sync_hash / "train.py").exists()


async def test_the_doctor_looks_for_the_data_templates_declare(config: Path, tmp_path: Path) -> None:
    from ugro_tui import paths
    from ugro_tui.core.doctor.data_checks import data_checks

    dataset = tmp_path / "wikitext"
    dataset.mkdir()
    (dataset / "train.txt").write_bytes(b"w" * 5000)
    folder = paths.config_home() / "templates"
    folder.mkdir(parents=True)
    (folder / "lm.toml").write_text(f'command = ["train.py"]\ndata = ["{dataset}", "{tmp_path / "absent"}"]\n')
    cluster = cluster_of(config)
    async with Pool(cluster) as pool:
        checks = await data_checks(cluster, {n.name: pool.get(n.name) for n in cluster.nodes}, ["node0", "node1"])
    assert [(c.node, c.name, str(c.status)) for c in checks] == [("node0", "data", "warn"), ("node1", "data", "warn")]
    assert f"{tmp_path / 'absent'} missing (needed by lm)" in checks[0].detail
    assert "wikitext" not in checks[0].detail  # only what is wrong is listed when something is
    (folder / "lm.toml").write_text(f'command = ["train.py"]\ndata = ["{dataset}"]\n')
    async with Pool(cluster) as pool:
        [ok] = await data_checks(cluster, {n.name: pool.get(n.name) for n in cluster.nodes}, ["node2"])
    assert (str(ok.status), ok.detail) == ("ok", f"{dataset} 5.0 KB")


@pytest.mark.usefixtures("autostart")  # `ugro sync` copies through the daemon it starts
def test_a_full_disk_on_a_node_is_one_line_naming_the_node_and_the_file(config: Path, tmp_path: Path) -> None:
    small = tmp_path / "nodes" / "node2" / "code"
    small.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 1 MB tmpfs as node2's code store here: {mounted.stderr.decode().strip()}")
    try:
        src = project(tmp_path / "src")
        (src / "data" / "weights.bin").write_bytes(os.urandom(3_000_000))
        out = run_ugro("sync", str(src), "--nodes", "node2", "--config", str(config))
        assert out.returncode == 2 and out.stderr.splitlines()[-1].startswith("node2: No space left on device"), \
            out.stderr
        assert str(small / ".objects") in out.stderr.splitlines()[-1]
        assert not any(small.glob(".done/*"))  # nothing usable was left
    finally:
        subprocess.run(["umount", str(small)], check=False)
    again = run_ugro("sync", str(src), "--nodes", "node2", "--config", str(config))
    assert again.returncode == 0 and sent(again.stdout)["node2"][0] == 7, again.stderr


async def test_nodes_whose_code_dir_is_one_folder_get_the_tree_once(lab: LoopbackCluster, config: Path,
                                                                    tmp_path: Path) -> None:
    """A shared home: node0 and node1 see one code dir (ugro proves it with an id it writes there), node2 its own.
    The tree travels once to the shared folder and once to node2, and every node has it complete."""
    from ugro_tui.core.sync.service import push_to

    shared = tmp_path / "nfs-home" / "code"
    cluster = cluster_of(config)
    nodes = [dataclasses.replace(n, code_dir=str(shared)) if n.name in ("node0", "node1") else n
             for n in cluster.nodes]
    cluster = dataclasses.replace(cluster, nodes=tuple(nodes))
    tree, manifest = snapshot(str(project(tmp_path / "src")), cluster, name="shared")
    async with Pool(cluster) as pool:
        sent = await push_to(pool, cluster.nodes, manifest)
    assert all(not isinstance(s, BaseException) for s in sent.values()), sent
    assert sent["node0"] is sent["node1"] and sent["node0"].files_sent == len(tree.files)  # once, for both
    assert sent["node2"].files_sent == len(tree.files)
    assert (shared / ".done" / tree.hash).exists()
    assert (tmp_path / "nodes" / "node2" / "code" / ".done" / tree.hash).exists()


async def test_a_copy_that_failed_on_one_node_records_what_reached_the_others(config: Path, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A job's code reached two nodes and not the third (its code dir cannot be made): it waits, naming the node,
    and its record keeps what did travel, so the next try sends the third node alone and the record is whole."""
    from ugro_tui.core.jobs.launcher import SshLauncher
    from ugro_tui.core.jobs.model import Job, JobSpec
    from ugro_tui.core.jobs.store import JobStore
    from ugro_tui.core.sync.service import NotReady

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    cluster = cluster_of(config)
    tree, _ = snapshot(str(project(tmp_path / "src")), cluster, name="partial")
    blocked = tmp_path / "nodes" / "node2" / "code"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where node2's code dir should be\n")  # mkdir fails there, even for root
    job = Job(1, JobSpec("t", ("train.py",), nnodes=3, sync_hash=tree.hash),
              placement=tuple((n, (0,)) for n in ("node0", "node1", "node2")))
    async with Pool(cluster) as pool:
        launcher = SshLauncher(cluster, JobStore(), pool)
        with pytest.raises(NotReady) as waiting:
            await launcher.prepare_nodes(job)
        assert "code copy failed on node2" in str(waiting.value)
        files = len(tree.files)
        assert [(n, f) for n, f, _ in waiting.value.sync_sent] == [("node0", files), ("node1", files)]
        blocked.unlink()
        ready = await launcher.prepare_nodes(dataclasses.replace(job, sync_sent=waiting.value.sync_sent))
    assert [(n, f) for n, f, _ in ready.sync_sent] == [("node0", files), ("node1", files), ("node2", files)]
    assert (blocked / ".done" / tree.hash).exists()
