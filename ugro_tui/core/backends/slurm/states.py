"""What Slurm says about jobs and nodes, parsed, pure: squeue --json, scontrol show job -o, sacct -P, sinfo --json.

Slurm 22.05's `squeue --json` ignores `-j` (so we read the whole queue and filter here) and gives `exit_code` as a
raw wait status; a pending array's tasks not yet started are one record with a task string ("3-8%2").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ugro_tui.core.jobs.model import JobState

RUNNING_STATES = frozenset({"RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING",
                            "RESIZING", "REQUEUED"})
FAILED_STATES = frozenset({"FAILED", "NODE_FAIL", "TIMEOUT", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED",
                           "REVOKED", "SPECIAL_EXIT"})
HELD_REASONS = frozenset({"JobHeldUser", "JobHeldAdmin"})
REASONS = {  # Slurm's pending reasons in the user's words
    "Priority": "waits: jobs of higher priority go first",
    "Resources": "waits: the GPUs or nodes it asks for are busy",
    "Dependency": "waits for the jobs it runs after",
    "DependencyNeverSatisfied": "a job it runs after did not succeed",
    "JobHeldUser": "held by the user",
    "JobHeldAdmin": "held by an administrator",
    "BeginTime": "waits for its start time",
    "PartitionNodeLimit": "asks for more nodes than the partition allows",
    "PartitionTimeLimit": "asks for more time than the partition allows",
    "QOSMaxJobsPerUserLimit": "waits: the QOS's limit of running jobs per user is reached",
    "AssocGrpGRES": "waits: the account's GPU limit is reached",
    "ReqNodeNotAvail": "waits: a node it needs is not available",
    "JobArrayTaskLimit": "waits: its sweep's max_concurrent trials already run",
    "NonZeroExitCode": "a node exited with an error",
    "None": "waits for Slurm to schedule it",
}


@dataclass(frozen=True)
class SlurmJob:
    job_id: str          # "123", or "120_3" for a task of an array
    state: str           # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    reason: str = "None"
    nodes: str = ""      # a host list: n[1-2]
    partition: str = ""
    exit_code: int | None = None
    signal: int | None = None

    @property
    def ugro_state(self) -> JobState:
        if self.state == "PENDING":
            return JobState.HELD if self.reason in HELD_REASONS else JobState.QUEUED
        if self.state in RUNNING_STATES:
            return JobState.RUNNING
        if self.state == "COMPLETED":
            return JobState.SUCCEEDED
        if self.state == "CANCELLED":
            return JobState.CANCELLED
        return JobState.FAILED

    @property
    def said(self) -> str:
        """Slurm's reason in the user's words, with Slurm's own word after it."""
        if self.state == "PENDING":
            return f"{REASONS.get(self.reason, 'waits')} (Slurm: {self.reason})"
        if self.state in FAILED_STATES:
            return f"Slurm says {self.state}" + (f" ({self.reason})" if self.reason not in ("None", "") else "")
        return self.state.lower()


def wait_status(raw: Any) -> tuple[int | None, int | None]:
    """A raw wait status as (exit code, signal)."""
    if isinstance(raw, bool) or not isinstance(raw, int):
        return None, None
    return (raw >> 8) & 0xFF, (raw & 0x7F) or None


def task_ids(text: str) -> list[int]:
    """An array task string ("3-8%2", "1,4-5") as indexes."""
    out: list[int] = []
    for part in text.split("%", 1)[0].split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?(?::(\d+))?", part.strip())
        if m:
            lo, hi, step = int(m[1]), int(m[2] or m[1]), int(m[3] or 1)
            out.extend(range(lo, hi + 1, step))
    return out


def parse_squeue(text: str) -> dict[str, SlurmJob]:
    """`squeue --json` -> job id -> SlurmJob (a pending array's remaining tasks, one each)."""
    data = json.loads(text)
    out: dict[str, SlurmJob] = {}
    for raw in data.get("jobs") or ():
        if not isinstance(raw, dict):
            continue
        code, sig = wait_status(raw.get("exit_code"))
        common = {"state": str(raw.get("job_state") or ""), "reason": str(raw.get("state_reason") or "None"),
                  "nodes": str(raw.get("nodes") or ""), "partition": str(raw.get("partition") or ""),
                  "exit_code": code, "signal": sig}
        array, task = raw.get("array_job_id") or 0, raw.get("array_task_id")
        if array and isinstance(task, int):
            out[f"{array}_{task}"] = SlurmJob(f"{array}_{task}", **common)
        elif array and raw.get("array_task_string"):
            for i in task_ids(str(raw["array_task_string"])):
                out[f"{array}_{i}"] = SlurmJob(f"{array}_{i}", **common)
        else:
            out[str(raw.get("job_id"))] = SlurmJob(str(raw.get("job_id")), **common)
    return out


def _exit_pair(text: str) -> tuple[int | None, int | None]:
    m = re.fullmatch(r"(\d+):(\d+)", text.strip())
    return (int(m[1]), int(m[2]) or None) if m else (None, None)


def parse_scontrol_job(text: str) -> SlurmJob | None:
    """`scontrol show job -o ID`: one line of Key=Value words."""
    words = dict(w.split("=", 1) for w in text.split() if "=" in w)
    if "JobId" not in words or "JobState" not in words:
        return None
    array, task = words.get("ArrayJobId"), words.get("ArrayTaskId")
    job_id = f"{array}_{task}" if array and task and task.isdecimal() else words["JobId"]
    code, sig = _exit_pair(words.get("ExitCode", ""))
    nodes = words.get("NodeList", "")
    return SlurmJob(job_id, words["JobState"], words.get("Reason", "None"), "" if nodes == "(null)" else nodes,
                    words.get("Partition", ""), code, sig)


SACCT_FORMAT = "JobID,State,ExitCode,Reason,NodeList,Partition"


def parse_sacct(text: str) -> dict[str, SlurmJob]:
    """`sacct -P -n -X --format=SACCT_FORMAT`."""
    out = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 6:
            continue
        code, sig = _exit_pair(parts[2])
        state = parts[1].split()[0] if parts[1] else ""  # "CANCELLED by 0"
        out[parts[0]] = SlurmJob(parts[0], state, parts[3] or "None", parts[4], parts[5], code, sig)
    return out


def hostnames(hostlist: str) -> list[str]:
    """A Slurm host list (n[1-3,5],gpu-a) as names, in order; what `scontrol show hostnames` does."""
    out: list[str] = []
    for m in re.finditer(r"([^,\[]+)(?:\[([^\]]+)\])?([^,\[]*)", hostlist):
        prefix, ranges, suffix = m.group(1), m.group(2), m.group(3)
        if not ranges:
            out.append(prefix + suffix)
            continue
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            for i in range(int(lo), int(hi or lo) + 1):
                out.append(f"{prefix}{str(i).zfill(len(lo))}{suffix}")
    return [h for h in out if h]


@dataclass(frozen=True)
class SlurmNode:
    name: str
    state: str           # idle, mixed, allocated, down, drained, ...
    address: str
    gpus: int
    gpus_used: int
    partitions: tuple[str, ...]
    reason: str = ""


def gres_count(text: str) -> int:
    """GPUs in a gres string: "gpu:2", "gpu:a100:4(S:0-1)", "gpu:(null):1(IDX:0)", several comma-separated."""
    total = 0
    for part in re.split(r",(?![^(]*\))", text or ""):
        m = re.match(r"gpu(?::[^:]+?)?:(\d+)", part.strip())
        if m:
            total += int(m[1])
    return total


def parse_sinfo(text: str) -> list[SlurmNode]:
    """`sinfo --json`: every node with its state and GPUs (gres) and how many of them jobs hold."""
    data = json.loads(text)
    out = []
    for raw in data.get("nodes") or ():
        if not isinstance(raw, dict) or not raw.get("name"):
            continue
        flags = [str(f).lower() for f in raw.get("state_flags") or ()]
        state = "+".join([str(raw.get("state") or "unknown").lower(), *flags])
        out.append(SlurmNode(str(raw["name"]), state, str(raw.get("address") or ""),
                             gres_count(str(raw.get("gres") or "")), gres_count(str(raw.get("gres_used") or "")),
                             tuple(str(p) for p in raw.get("partitions") or ()), str(raw.get("reason") or "")))
    return out
