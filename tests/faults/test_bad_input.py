"""Job files, arguments and stored jobs of the wrong types: one clear line and exit 2, and the queue goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ugro_tui.core.jobs.model import JobSpec
from ugro_tui.core.jobs.store import JobStore

from ..helpers import ugro

pytestmark = pytest.mark.faults


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text('[[nodes]]\nname = "gpu-master"\nhost = "127.0.0.2"\n'
                    '[[nodes]]\nname = "gpu1"\nhost = "127.0.0.3"\n')
    return path


@pytest.mark.parametrize(("toml", "words"), [
    ('command = ["x.py"]\nenv = "A=1"', "env: expected a table"),
    ('command = ["x.py"]\nmin_gpu_mem_gb = "lots"', "min_gpu_mem_gb: expected a number"),
    ("command = [1, 2]", "command: expected text, got 1"),
    ('command = ["x.py"]\nworkdir = 5', "workdir: expected text, got 5"),
    ('command = ["x.py"]\nenv = {A = 1}', "env: expected NAME"),
    ('command = ["x.py"]\npriority = "high"', "priority: expected a whole number, got 'high'"),
    ('command = ["x.py"]\nname = "two\\nlines"', "name: at most 200 characters, no newlines"),
    ('command = ["x.py"]\nname = ""', "name: is empty"),
    ('command = ["x.py"]\nname = "' + "n" * 1_000_000 + '"', "name: at most 200 characters"),
    ('command = ["x.py", "a\\u0000b"]', "command: contains a NUL byte"),
    ('command = ["x.py"]\nnodes = "gpu1"', "nodes: expected a list"),
    ('command = ["x.py"]\npreemptible = "yes"', "preemptible: expected true or false, got 'yes'"),
    ('kind = "session"\nhours = "all night"', "hours: expected a number of hours above 0"),
], ids=["env-string", "mem-lots", "command-ints", "workdir-int", "env-int", "priority-high", "name-newline",
        "name-empty", "name-1mb", "command-nul", "nodes-string", "preemptible-yes",
        "session-hours"])  # ids: a 1 MB test id would reach the env
def test_a_bad_job_file_is_one_line_and_nothing_is_queued(config: Path, tmp_path: Path, toml: str, words: str):
    job = tmp_path / "job.toml"
    job.write_text(toml + "\n")
    done = ugro(config, "submit", "--file", str(job))
    assert done.returncode == 2 and words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert JobStore().active() == []


def test_a_string_command_is_split_as_shell_words(config: Path, tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text("command = \"train.py --lr 3 --tag 'a b'\"\n")
    assert ugro(config, "submit", "--file", str(job)).stdout == "1\n"
    assert JobStore().get(1).spec.command == ("train.py", "--lr", "3", "--tag", "a b")


def test_a_binary_job_file(config: Path, tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_bytes(bytes(range(256)))
    done = ugro(config, "submit", "--file", str(job))
    assert done.returncode == 2 and "not a text file" in done.stderr


@pytest.mark.parametrize(("args", "words"), [
    (["show", "²"], "is not a job id"),
    (["submit", "--template", "../../x"], "template name '../../x'"),
    (["logs", "١"], "is not a job id"),
])
def test_bad_arguments(config: Path, args: list[str], words: str) -> None:
    done = ugro(config, *args)
    assert done.returncode == 2 and words in done.stderr


def test_a_damaged_job_in_the_store_stops_nothing_else(config: Path) -> None:
    """A hand-edited active.json with `priority = "high"`: that job is named, the others are read and dispatched."""
    store = JobStore()
    store.submit([JobSpec("good", ("x.py",)), JobSpec("bad", ("x.py",))])
    store.take_in()  # in active.json, where a hand edit finds them
    data = json.loads(store.active_path.read_text())
    data["jobs"]["2"]["spec"]["priority"] = "high"
    store.active_path.write_text(json.dumps(data))
    assert [j.id for j in store.active()] == [1] and store.damaged == [
        "job 2: priority: expected a whole number, got 'high'"]
    done = ugro(config, "queue")
    assert done.returncode == 0 and "good" in done.stdout
    assert "job 2: priority: expected a whole number, got 'high'" in done.stderr
    assert "high" in JobStore().active_path.read_text()  # kept as it was: nothing is lost


def test_a_damaged_active_file_is_recovered_and_said_until_acknowledged(config: Path) -> None:
    store = JobStore()
    store.submit([JobSpec("first", ("x.py",))])
    store.take_in()
    store.submit([JobSpec("second", ("x.py",))])
    store.take_in()
    store.active_path.write_bytes(store.active_path.read_bytes()[:40])  # a half-written file
    for _ in range(2):
        done = ugro(config, "queue")
        assert done.returncode == 0 and "first" in done.stdout
        assert "recovered" in done.stderr and "--ack-recovery" in done.stderr
    assert ugro(config, "queue", "--ack-recovery").returncode == 0
    done = ugro(config, "queue")
    assert "first" in done.stdout and "recovered" not in done.stderr and "--ack-recovery" not in done.stderr


def test_read_only_refuses_every_change_with_one_line_and_changes_nothing(config: Path) -> None:
    assert ugro(config, "submit", "--", "x.py").stdout == "1\n"
    for args in (["submit", "--", "y.py"], ["cancel", "1"], ["hold", "1"], ["retry", "1"], ["kill", "gpu1", "42"],
                 ["nodes", "remove", "gpu1"], ["nodes", "add", "gpu9", "--host", "127.0.0.9"],
                 ["sweep", "cancel", "abc"], ["checkpoints", "1", "--prune"], ["doctor", "--smoke"], ["sync", "."]):
        done = ugro(config, args[0], "--read-only", *args[1:])
        verb = " ".join(a for a in args[:2] if not a.isdigit() and not a.startswith("-") and a != "gpu1")
        assert done.returncode == 2 and done.stderr.startswith(f"read-only: ugro {verb.split()[0]}"), (args,
                                                                                                       done.stderr)
        assert done.stderr.count("\n") == 1 and done.stdout == ""
    before = config.read_text()
    config.write_text("[cluster]\nread_only = true\n" + before)
    done = ugro(config, "cancel", "1")
    assert done.returncode == 2 and "read-only: ugro cancel is refused" in done.stderr
    # Looking still works, and nothing changed: one job, still queued; the node list as it was.
    queued = json.loads(ugro(config, "queue", "--json").stdout)["jobs"]
    assert [(j["id"], j["state"]) for j in queued] == [(1, "queued")]
    assert "read-only" not in ugro(config, "checkpoints", "1", "--prune", "--dry-run").stderr  # a dry run only looks
    assert config.read_text().endswith(before)
    config.write_text('[cluster]\nread_only = "yes"\n' + before)
    done = ugro(config, "queue")
    assert done.returncode == 2 and "cluster.read_only: expected true or false" in done.stderr


BAD_ENV = "'A-B' is not a variable name"


@pytest.mark.parametrize("path", ["flag", "job-file", "set", "template"])
def test_a_bad_env_name_is_refused_in_one_line_on_every_cli_path(config: Path, tmp_path: Path, path: str) -> None:
    """`A-B` would make a broken `export` in run.sh on the node: it is refused at submit, whichever way it came."""
    job = tmp_path / "job.toml"
    job.write_text('command = ["x.py"]\nenv = {"A-B" = "1"}\n')
    templates = tmp_path / "xdg-config" / "ugro" / "templates"
    templates.mkdir(parents=True)
    (templates / "mine.toml").write_text('command = ["x.py"]\nenv = {"A-B" = "1"}\n')
    (templates / "fine.toml").write_text('command = ["x.py"]\n')
    args = {"flag": ["--env", "A-B=1", "--", "x.py"], "job-file": ["--file", str(job)],
            "set": ["--template", "fine", "--set", "env.A-B=1"], "template": ["--template", "mine"]}[path]
    done = ugro(config, "submit", *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and ("A-B" in lines[0]), done.stderr
    assert JobStore().active() == []


def test_a_stored_job_with_a_bad_env_name_is_named_as_damaged(config: Path) -> None:
    store = JobStore()
    store.submit([JobSpec("good", ("x.py",)), JobSpec("bad", ("x.py",))])
    store.take_in()  # in active.json, where a hand edit finds them
    data = json.loads(store.active_path.read_text())
    data["jobs"]["2"]["spec"]["env"] = {"A-B": "1"}
    store.active_path.write_text(json.dumps(data))
    assert [j.id for j in store.active()] == [1] and store.damaged == [f"job 2: env: {BAD_ENV} (letters, digits and _, "
                                                                       "not starting with a digit)"]


@pytest.mark.parametrize(("args", "words"), [
    (["--gpu-mem", "0"], "--gpu-mem: expected a number of GB above 0, got 0"),
    (["--gpu-mem", "-1"], "--gpu-mem: expected a number of GB above 0, got -1"),
    (["--gpu-mem", "abc"], "--gpu-mem: expected a number of GB, got 'abc'"),
    (["--gpu-mem", "nan"], "--gpu-mem: expected a number of GB above 0, got nan"),
    (["--gpu-mem", "13"], "--gpu-mem 13: 13.0 GB is more than any card holds; the largest is gpu-master:0 with "
                          "11.9 GB, 0.5 GB of it kept free"),
    (["--gpu-mem", "2", "--gpus-per-node", "0"], "--gpu-mem is the GPU memory each rank needs on a card"),
])
def test_a_bad_gpu_mem_is_one_line_naming_the_largest_card(tmp_path: Path, args: list[str], words: str) -> None:
    sim = tmp_path / "sim.toml"  # simulated cards: the config itself says how big they are (no daemon asked)
    sim.write_text('[[nodes]]\nname = "gpu-master"\nhost = "127.0.0.2"\nsim = { gpus = ["RTX 5070 Ti"] }\n'
                   '[[nodes]]\nname = "gpu1"\nhost = "127.0.0.3"\nsim = { gpus = ["RTX 4070"] }\n')
    done = ugro(sim, "submit", *args, "--", "x.py")
    assert done.returncode == 2 and words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert JobStore().active() == []


@pytest.mark.parametrize(("toml", "words"), [
    ('command = ["x.py"]\ngpu_mem_gb = 0', "gpu_mem_gb: expected a number of GB above 0"),
    ('command = ["x.py"]\ngpu_mem_gb = "lots"', "gpu_mem_gb: expected a number of GB above 0"),
    ('command = ["x.py"]\ngpu_mem_gb = true', "gpu_mem_gb: expected a number of GB above 0"),
    ('command = ["x.py"]\ngpu_mem_gb = 2\ngpu_mem_enforce = "yes"', "gpu_mem_enforce: expected true or false"),
], ids=["zero", "text", "bool", "enforce-text"])
def test_a_bad_gpu_mem_in_a_job_file(config: Path, tmp_path: Path, toml: str, words: str) -> None:
    job = tmp_path / "job.toml"
    job.write_text(toml + "\n")
    done = ugro(config, "submit", "--file", str(job))
    assert done.returncode == 2 and words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert JobStore().active() == []


def test_a_bad_share_gpus_or_headroom_is_one_config_line(tmp_path: Path) -> None:
    for table, words in (('[[nodes]]\nname = "a"\nhost = "127.0.0.2"\nshare_gpus = "yes"\n', "nodes[0].share_gpus"),
                         ('[cluster]\ngpu_mem_headroom_gb = -1\n[[nodes]]\nname = "a"\nhost = "127.0.0.2"\n',
                          "cluster.gpu_mem_headroom_gb: expected a number of GB from 0 to 1024, got -1")):
        path = tmp_path / "bad.toml"
        path.write_text(table)
        done = ugro(path, "nodes")
        assert done.returncode == 2 and words in done.stderr, done.stderr


@pytest.mark.parametrize(("args", "words"), [
    (["session", "--node", "gpu9"], "--node 'gpu9': no such node in"),
    (["session", "--node", "gpu1:x"], "--node 'gpu1:x': expected NODE or NODE:GPU"),
    (["session", "--idle-stop", "abc"], "--idle-stop 'abc': expected minutes, or 30s, 5m, 2h"),
    (["session", "--hours", "0"], "--hours: expected a number of hours above 0, got 0"),
    (["session", "extend", "1", "--hours", "x"], "--hours: expected a number of hours, got 'x'"),
    (["session", "--gpus", "0"], "--gpus: expected 1 or more"),
    (["session", "attach", "99"], "job 99"),
    (["session", "end", "abc"], "is not a job id"),
    (["session", "extend", "1"], "the following arguments are required: --hours"),
])
def test_a_bad_session_is_one_line(config: Path, args: list[str], words: str) -> None:
    done = ugro(config, *args)
    assert done.returncode == 2 and words in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert json.loads(ugro(config, "queue", "--json").stdout)["jobs"] == []  # nothing was queued


def test_a_session_verb_on_a_job_that_is_no_session_and_read_only(config: Path) -> None:
    assert ugro(config, "submit", "--", "x.py").stdout == "1\n"
    for verb in ("attach", "end"):
        done = ugro(config, "session", verb, "1")
        assert done.returncode == 2 and "job 1 (x.py) is a torchrun job, not a session" in done.stderr, done.stderr
    for args in (["session", "--read-only"], ["session", "--read-only", "end", "1"]):
        done = ugro(config, *args)
        assert done.returncode == 2 and done.stderr.startswith("read-only: ugro session"), done.stderr
    assert "no sessions" in ugro(config, "session", "--read-only", "list").stdout  # looking is fine
