"""`ugro submit` with a daemon running: the daemon checks and stores the jobs (the command imports no job or
config code: that is what makes it fast), with the same answers, lines and exit codes as without one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import daemon_on
from ..helpers import host, ugro

pytestmark = pytest.mark.timeout(120)

JOB_CODE = ("ugro_tui.config", "ugro_tui.core.jobs.model", "ugro_tui.core.jobs.request")


def write_config(path: Path, extra: str = "") -> Path:
    # Nothing listens on this address: the daemon's connections fail, which a submit does not need.
    path.write_text(f'{extra}[[nodes]]\nname = "a"\nhost = "{host(9)}"\n[[nodes]]\nname = "b"\nhost = "{host(9)}"\n'
                    'port = 2\n')
    return path


def submit(config: Path, *args: str, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """`ugro submit` in a new process, and the ugro modules it imported (Python's -X importtime)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "ugro_tui", "submit", "--config", str(config),
                           *args], capture_output=True, text=True, timeout=60, cwd=cwd)
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    done.stderr = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("import time:"))
    assert "Traceback" not in done.stderr and "unexpected error" not in done.stderr, done.stderr
    return done, {m for m in imported if m.startswith("ugro_tui")}


def queue(config: Path) -> list[dict]:
    return json.loads(ugro(config, "queue", "--json").stdout)["jobs"]


def test_the_daemon_stores_the_jobs_with_the_answers_the_command_gives(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "cluster.toml")
    here = tmp_path / "work"
    here.mkdir()
    (here / "job.toml").write_text('name = "from-file"\ncommand = ["train.py", "--epochs", "3"]\npriority = 1\n')
    with daemon_on(config, monkeypatch):
        done, imported = submit(config, "--file", "job.toml", "--priority", "7", "--env", "LR=3e-4", cwd=here)
        assert (done.returncode, done.stdout, done.stderr) == (0, "1\n", "")
        assert not imported & set(JOB_CODE), sorted(imported)  # the daemon read the file (named from our folder)
        [job] = queue(config)
        assert (job["name"], job["priority"], job["spec"]["command"], job["spec"]["env"]) == \
            ("from-file", 7, ["train.py", "--epochs", "3"], {"LR": "3e-4"})

        sweep, imported = submit(config, "--sweep", "lr=1e-4,3e-4,1e-3", "--trials", "2", "--", "x.py")
        assert sweep.returncode == 0 and sweep.stdout == "2\n3\n" and not imported & set(JOB_CODE)
        assert sweep.stderr.startswith("sweep ") and ": 2 trials (seed " in sweep.stderr  # the seed is said

        for args, line in ((["--nnodes", "3", "--", "x.py"], "ugro submit: --nnodes 3: only 2 allowed node(s)"),
                           (["--after", "99", "--", "x.py"], "--after: no job 99"),
                           (["--file", "missing.toml"], "missing.toml: cannot read the job file")):
            bad, imported = submit(config, *args, cwd=here)
            assert bad.returncode == 2 and bad.stdout == "" and line in bad.stderr, bad.stderr
            assert len(bad.stderr.splitlines()) == 1 and not imported & set(JOB_CODE)
        assert [j["id"] for j in queue(config)] == [1, 2, 3]  # nothing stored by a refused request

        # Another config than the daemon's: the command checks and stores the job itself, in the same store.
        other = write_config(tmp_path / "other.toml")
        done, imported = submit(other, "--hold", "--", "y.py")
        assert (done.returncode, done.stdout) == (0, "4\n") and set(JOB_CODE) <= imported
        assert queue(config)[-1]["state"] == "held"


def test_a_read_only_daemon_refuses_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "cluster.toml", "[cluster]\nread_only = true\n")
    with daemon_on(config, monkeypatch):
        done, imported = submit(config, "--", "x.py")
        assert done.returncode == 2 and done.stderr.startswith("read-only: ugro submit is refused")
        assert not imported & set(JOB_CODE) and queue(config) == []
