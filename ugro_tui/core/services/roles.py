"""Roles of a multi-node service, pure: the first placed node is the head, the others are workers (started first).

Each command word may hold `{port}` (this node's port), `{host}` (this node's address), `{head}` (the head's
host:port), `{head_host}`, `{workers}` (the workers' host:port, comma-separated), `{node_rank}`, `{nnodes}` and
`{master_port}` (a free port for a framework's own rendezvous, e.g. vLLM's --master-port); a word that is just
`{python}` is the node's python setting. Other braces stay as they are, so JSON in an argument is safe."""

from __future__ import annotations

import re
from typing import Any

FIELDS = ("port", "host", "head", "head_host", "workers", "node_rank", "nnodes", "master_port")
FIELD_RE = re.compile(r"\{(" + "|".join(FIELDS) + r")\}")


def fill(word: str, values: dict[str, str]) -> str:
    return FIELD_RE.sub(lambda m: values[m.group(1)], word)


def node_values(job: Any, cluster: Any, node_rank: int, master_port: int) -> dict[str, str]:
    """The substitutions for the node of rank `node_rank` in the job's placement."""
    status = job.service
    head_name = job.placement[0][0]
    head_host = cluster.node(head_name).host
    ports = dict(status.workers) if status else {}
    ports[head_name] = status.port if status and status.port else 0
    name = job.placement[node_rank][0]
    workers = ",".join(f"{cluster.node(n).host}:{p}" for n, p in (status.workers if status else ()))
    return {"port": str(ports.get(name, 0)), "host": cluster.node(name).host,
            "head": f"{head_host}:{ports[head_name]}", "head_host": head_host, "workers": workers,
            "node_rank": str(node_rank), "nnodes": str(len(job.placement)), "master_port": str(master_port)}


def command_of(spec: Any, node_rank: int) -> tuple[str, ...]:
    """What runs on the node of this rank: the head's command, or the workers' where the spec has one."""
    return spec.worker_command if node_rank > 0 and spec.worker_command else spec.command


def env_of(values: dict[str, str]) -> list[tuple[str, str]]:
    return [("UGRO_PORT", values["port"]), ("UGRO_HEAD", values["head"]), ("UGRO_WORKERS", values["workers"])]
