"""The doctor on Slurm: Slurm answers on the login node, the partition has GPUs, the account and QOS are the
user's, and `sbatch --test-only` accepts the job the smoke run would submit."""

from __future__ import annotations

import dataclasses

from ugro_tui.config import Cluster
from ugro_tui.core.backends.slurm.client import SlurmClient, SlurmError
from ugro_tui.core.backends.slurm.script import submission
from ugro_tui.core.backends.slurm.states import SlurmNode
from ugro_tui.core.doctor.checks import CLUSTER, Check, Status
from ugro_tui.core.jobs.model import Job, JobSpec
from ugro_tui.core.transport import Transport


def planned_shape(nodes: list[SlurmNode], partition: str | None) -> tuple[int, int]:
    """(nodes, GPUs per node) of the smoke run: two nodes where the partition has two, one GPU each if it has GPUs."""
    mine = [n for n in nodes if partition is None or partition in n.partitions]
    return min(2, max(1, len(mine))), 1 if any(n.gpus for n in mine) else 0


async def slurm_checks(cluster: Cluster, transports: dict[str, Transport]) -> list[Check]:
    assert cluster.slurm is not None
    s = cluster.slurm
    client = SlurmClient(cluster, transports.__getitem__)
    try:
        nodes = await client.nodes()
    except (SlurmError, OSError, TimeoutError) as exc:
        return [Check(CLUSTER, "slurm", Status.FAIL, f"sinfo on {s.login} failed: {exc}",
                      "is Slurm's client installed on the login node, and is [slurm] conf its slurm.conf?")]
    partitions = sorted({p for n in nodes for p in n.partitions})
    out = [Check(CLUSTER, "slurm", Status.OK, f"{len(nodes)} node(s) through {s.login}; partitions "
                 f"{', '.join(partitions) or 'none'}")]
    mine = [n for n in nodes if s.partition is None or s.partition in n.partitions]
    if s.partition and not mine:
        out.append(Check(CLUSTER, "partition", Status.FAIL, f"no partition {s.partition!r} (there are "
                         f"{', '.join(partitions) or 'none'})", "set [slurm] partition to one of them"))
        return out
    gpus = sum(n.gpus for n in mine)
    up = [n for n in mine if not any(w in n.state for w in ("down", "drain", "fail", "inval"))]
    where = f"partition {s.partition}" if s.partition else "the default partition"
    out.append(Check(CLUSTER, "partition", Status.OK if gpus and up else Status.WARN,
                     f"{where}: {len(up)}/{len(mine)} node(s) up, {gpus} GPU(s) as gres",
                     "" if gpus else "no gpu gres: jobs asking for GPUs would never start (GresTypes=gpu, gres.conf)"))
    out.append(await _association(client, s.account, s.qos))
    nnodes, per_node = planned_shape(nodes, s.partition)
    spec = JobSpec(name="doctor-test-only", command=("true",), kind="command", nnodes=nnodes, gpus_per_node=per_node)
    job = dataclasses.replace(Job(0, spec), attempt=0)
    try:
        said = await client.submit(submission([job], cluster), test_only=True)
    except (SlurmError, OSError, TimeoutError) as exc:
        out.append(Check(CLUSTER, "sbatch", Status.FAIL, f"sbatch --test-only of {nnodes} node(s) × {per_node} "
                         f"GPU refused: {exc}", "see the partition's limits: scontrol show partition"))
    else:
        text = said.splitlines()[-1] if said else "accepted"
        out.append(Check(CLUSTER, "sbatch", Status.OK, f"--test-only of {nnodes} node(s) × {per_node} GPU: "
                         f"{text.removeprefix('sbatch: ')}"))
    return out


async def _association(client: SlurmClient, account: str | None, qos: str | None) -> Check:
    """The user's account and QOS from sacctmgr, where accounting runs."""
    done = await client.run("sacctmgr -n -P show assoc user=\"$(id -un)\" format=account,qos 2>&1", check=False)
    if not done.ok or "accounting_storage/none" in done.stdout or "disabled" in done.stdout.lower():
        asked = " and ".join(x for x in (account and f"account {account}", qos and f"QOS {qos}") if x)
        return Check(CLUSTER, "account", Status.SKIP if not asked else Status.WARN,
                     "Slurm has no accounting here: accounts and QOS are not checked"
                     + (f" ({asked} asked for)" if asked else ""))
    pairs = [line.split("|", 1) for line in done.stdout.splitlines() if "|" in line]
    accounts = {a for a, _ in pairs}
    qoses = {q for _, qs in pairs for q in qs.split(",")}
    if account and account not in accounts:
        return Check(CLUSTER, "account", Status.FAIL, f"you are not in account {account!r} (yours: "
                     f"{', '.join(sorted(accounts)) or 'none'})", "set [slurm] account to one of yours")
    if qos and qos not in qoses:
        return Check(CLUSTER, "account", Status.FAIL, f"QOS {qos!r} is not yours (yours: "
                     f"{', '.join(sorted(qoses)) or 'none'})", "set [slurm] qos to one of yours")
    return Check(CLUSTER, "account", Status.OK, f"accounts {', '.join(sorted(accounts)) or '–'}; QOS "
                 f"{', '.join(sorted(qoses)) or '–'}")
