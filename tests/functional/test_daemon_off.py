"""Auto-start off and no daemon (the tests' default): every verb that needs the runtime says so in one line and
starts nothing of its own; the read-only verbs still answer, saying what is live only with a daemon."""

from __future__ import annotations

import json
from pathlib import Path

from ugro_tui.config import Cluster

from ..helpers import ugro

NEEDS_THE_DAEMON = (["kill", "node0", "4242"], ["logs", "1", "-f"], ["status", "--watch"], ["checkpoints", "1"],
                    ["checkpoints", "1", "--pull", "latest"], ["doctor"], ["doctor", "--smoke"])


def test_verbs_that_need_the_daemon_say_so_in_one_line_and_start_nothing(lab_config: tuple[Cluster, Path],
                                                                          tmp_path: Path) -> None:
    _, config = lab_config
    submitted = ugro(config, "submit", "--checkpoint-dir", "ck", "--", "t.py")
    assert submitted.stdout == "1\n" and "no ugro daemon runs and auto-start is off" in submitted.stderr
    (tmp_path / "code").mkdir()
    for args in [*NEEDS_THE_DAEMON, ["sync", str(tmp_path / "code")]]:
        done = ugro(config, *args)
        assert done.returncode == 1 and done.stdout == "", (args, done.stdout)
        [line] = done.stderr.splitlines()
        assert f"ugro {args[0]}" in line and "`ugro daemon start` starts one" in line, (args, line)
    assert json.loads(ugro(config, "daemon", "status", "--json").stdout)["running"] is False
    # Looking still works: the queue from the store, the nodes with a line that says telemetry is the daemon's.
    assert json.loads(ugro(config, "queue", "--json").stdout)["jobs"][0]["state"] == "queued"
    status = ugro(config, "status")
    assert status.returncode == 1 and "no node has live telemetry" in status.stderr
    assert all(name in status.stdout for name in ("node0", "node1", "node2"))
    logs = ugro(config, "logs", "1")
    assert logs.returncode == 1 and "has not run yet" in logs.stderr
