"""What a client asks the daemon to do over its connections, as plain calls (blocking: the app runs them in a
thread): the doctor, a job's checkpoints, a kept tree's copy to nodes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ugro_tui.core.daemon.client import Client
from ugro_tui.core.doctor.checks import Check, Report
from ugro_tui.core.jobs.checkpoints import Checkpoint
from ugro_tui.errors import UgroError, UsageError

Progress = Callable[[str, int, int, int, int], None]  # node, files, bytes sent, files to send, bytes to send


def doctor(client: Client, smoke: bool, on_check: Callable[[Check], None] | None = None) -> Report:
    """Every check (each given to `on_check` as the daemon finishes it); with `smoke`, the smoke job's too."""
    for line in client.lines("POST", "daemon/doctor", {"smoke": smoke}, timeout=900.0):
        if line.get("kind") == "check" and on_check is not None:
            on_check(Check.from_json(line["check"]))
        elif line.get("kind") == "report":
            return Report.from_wire(line["report"])
        elif line.get("kind") == "error":
            raise UgroError(f"doctor: {line.get('message')}")
    raise UgroError("doctor: the daemon's answer was cut before the report")


def checkpoints(client: Client, job_id: int) -> list[Checkpoint]:
    docs = client.call("GET", f"daemon/checkpoints/{job_id}", timeout=120.0)["checkpoints"]
    return [checkpoint_of(d) for d in docs]


def push(client: Client, tree_hash: str, nodes: list[str], progress: Progress | None = None
         ) -> dict[str, dict[str, Any]]:
    """A tree kept here copied to `nodes` over the daemon's connections; per node, what travelled or `error`."""
    for line in client.lines("POST", "daemon/sync", {"tree": tree_hash, "nodes": nodes}):
        if line.get("kind") == "progress" and progress is not None:
            progress(line["node"], line["files"], line["sent"], line["files_total"], line["bytes_total"])
        elif line.get("kind") == "done":
            return line["results"]
    raise UgroError("sync: the daemon's answer was cut")


def keep(client: Client, job_id: int, do: str, body: dict[str, Any],
         progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """`prune` or `pull` a job's checkpoints over the daemon's connections; its last word (`checkpoints`, `files`)."""
    for line in client.lines("POST", f"daemon/checkpoints/{job_id}/{do}", body, timeout=3600.0):
        if line.get("kind") == "progress" and progress is not None:
            progress(str(line["what"]), int(line["done"]), int(line["total"]))
        elif line.get("kind") == "done":
            return line
        elif line.get("kind") == "error":
            raise (UsageError if line.get("usage") else UgroError)(f"ugro checkpoints: {line.get('message')}")
    raise UgroError("ugro checkpoints: the daemon's answer was cut")


def checkpoint_of(doc: dict[str, Any]) -> Checkpoint:
    return Checkpoint(**{**doc, "seen_by": tuple(doc.get("seen_by") or ())})
