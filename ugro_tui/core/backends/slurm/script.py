"""A job as Slurm sees it, pure: the sbatch options, the batch script, and the script srun runs once per node.

Each node writes to its own folder under the job's run root on the shared filesystem (`<root>/<Slurm node>/`:
console.log, torchrun/ per-rank files, exit), laid out like the SSH backend's run dir, so the same log copies,
rank demux, metric reader and diagnosis work unchanged. Every value is quoted.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.logs import TEE_PREFIX
from ugro_tui.core.jobs.model import Job
from ugro_tui.core.jobs.planner import _home, _word, export_paths, workdir_of
from ugro_tui.core.transport import export_env, path_word, python_command


@dataclass(frozen=True)
class Submission:
    """One sbatch: its options (an argv), the batch script, and per job of it (one, or a sweep's trials) the run
    root and the node script to write there."""

    options: tuple[str, ...]
    batch: str
    roots: tuple[tuple[int, str, str], ...]  # (ugro job id, run root, node script)

    def preview(self) -> str:
        """What the form shows: the command line and the batch script."""
        return "sbatch " + " ".join(map(shlex.quote, self.options)) + " batch.sh\n\n" + self.batch


def job_name(job: Job) -> str:
    """The name Slurm shows, which also finds a submit whose answer a dispatcher crash lost."""
    return f"ugro-{job.id}-a{job.attempt}"


def run_root(cluster: Cluster, job: Job) -> str:
    login = cluster.node(cluster.slurm.login)
    return f"{login.workdir.rstrip('/')}/runs/job-{job.id}-a{job.attempt}"


def node_dir(root: str, node: str) -> str:
    return f"{root}/{node}"


def node_script(job: Job, cluster: Cluster, store: str = "") -> str:
    """What srun runs on every node of the allocation (the node rank is Slurm's node id)."""
    spec, login = job.spec, cluster.node(cluster.slurm.login)
    root = run_root(cluster, job)
    env = [("UGRO_JOB_ID", str(job.id)), ("UGRO_NNODES", str(spec.nnodes)), *([("UGRO_STORE", store)] if store else []),
           ("TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE", TEE_PREFIX), ("PYTHONUNBUFFERED", "1"),
           *login.env, *spec.env]
    paths = []
    if spec.checkpoint_dir:
        paths = [("UGRO_CHECKPOINT_DIR", _home(spec, login, spec.checkpoint_dir)),
                 ("UGRO_RESUME_FROM", _home(spec, login, job.resume_from or ""))]
    if spec.kind == "torchrun":
        command = " ".join([
            python_command(login), "-m", "torch.distributed.run", "--nnodes", str(spec.nnodes),
            "--nproc-per-node", str(spec.nproc_per_node), "--rdzv-backend", "c10d",
            "--rdzv-endpoint", '"$UGRO_RDZV"', "--rdzv-id", shlex.quote(f"ugro-{job.id}-{job.attempt}"),
            "--max-restarts", "0", '--log-dir "$rd/torchrun"', "--redirects", "3", "--tee", "3",
            *map(_word, spec.command)])
    else:
        command = " ".join(map(_word, spec.command))
    workdir = path_word(workdir_of(spec, login))
    return "\n".join([
        "#!/bin/sh",
        f"# ugro job {job.id} attempt {job.attempt}: one node of it, run by srun",
        f'rd={path_word(root)}/"$SLURMD_NODENAME"',
        'mkdir -p "$rd" && exec >"$rd/console.log" 2>&1 </dev/null',
        'echo $$ > "$rd/pid"',
        'export UGRO_NODE="$SLURMD_NODENAME" UGRO_NODE_RANK="$SLURM_NODEID"',
        f"{export_env(env)}{export_paths(paths)}",
        f'mkdir -p {workdir} && cd {workdir} || {{ echo 97 > "$rd/exit"; exit 97; }}',
        # In the background, and this shell waits: it stays the command's parent until the command is gone, so
        # Slurm's process tracking (the tree, with proctrack/linuxproc) still finds it when the job is killed.
        f"{command} &",
        'child=$!',
        "trap 'kill -TERM \"$child\" 2>/dev/null' TERM INT HUP",
        'wait "$child"; code=$?',
        'while kill -0 "$child" 2>/dev/null; do wait "$child"; code=$?; done',
        'echo "$code" > "$rd/exit.tmp" && mv -f "$rd/exit.tmp" "$rd/exit"',
        "exit $code",
        "",
    ])


# The port from the job's own id: an array's tasks each have one (SLURM_ARRAY_JOB_ID, shared by them, put two
# trials running at once on one node onto one c10d store).
RDZV = """head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
addr=$(scontrol show node "$head" | tr ' ' '\\n' | sed -n 's/^NodeAddr=//p' | head -n 1)
export UGRO_RDZV="${{addr:-$head}}:$(( {lo} + $SLURM_JOB_ID % {size} ))\""""


def options(job: Job, cluster: Cluster, after: tuple[str, ...] = ()) -> list[str]:
    """sbatch's options for a job (a sweep's array adds --array)."""
    spec, s = job.spec, cluster.slurm
    out = [f"--job-name={job_name(job)}", f"--nodes={spec.nnodes}", "--ntasks-per-node=1",
           "--output=batch.log", "--open-mode=append", "--kill-on-invalid-dep=yes"]  # sbatch runs in the root
    if spec.gpus_per_node:
        out.append(f"--gpus-per-node={spec.gpus_per_node}")
    for key in ("partition", "account", "qos", "time"):
        if getattr(s, key):
            out.append(f"--{key}={getattr(s, key)}")
    if spec.priority < 0:  # Slurm lets a user lower a job's priority only
        out.append(f"--nice={-spec.priority}")
    if after:
        out.append(f"--dependency=afterok:{':'.join(after)}")
    return [*out, *s.extra]


def batch_script(cluster: Cluster, roots: list[tuple[int, str]], array: bool) -> str:
    lo, hi = cluster.rendezvous_ports
    lines = ["#!/bin/sh", "# ugro: one srun of the job's node script on every node of the allocation",
             RDZV.format(lo=lo, size=hi - lo + 1)]
    if array:  # the array index is the trial's place in the list
        arms = " ".join(f"{i}) root={path_word(root)};;" for i, (_, root) in enumerate(roots, 1))
        lines.append(f'case "$SLURM_ARRAY_TASK_ID" in {arms} *) exit 2;; esac')
    else:
        lines.append(f"root={path_word(roots[0][1])}")
    lines += ['exec srun --ntasks-per-node=1 --kill-on-bad-exit=1 sh "$root/node.sh"', ""]
    return "\n".join(lines)


def submission(jobs: list[Job], cluster: Cluster, after: tuple[str, ...] = (), max_concurrent: int = 0,
               store: str = "") -> Submission:
    """One job, or a sweep's trials as one job array (index i is the i-th trial given)."""
    first = jobs[0]
    opts = options(first, cluster, after)
    if len(jobs) > 1:
        limit = f"%{max_concurrent}" if max_concurrent else ""
        opts.append(f"--array=1-{len(jobs)}{limit}")
        opts[opts.index("--output=batch.log")] = "--output=batch-%a.log"
        opts[0] = f"--job-name=ugro-sweep-{first.spec.sweep_id or first.id}"
    roots = [(j.id, run_root(cluster, j)) for j in jobs]
    return Submission(tuple(opts), batch_script(cluster, roots, len(jobs) > 1),
                      tuple((jid, root, node_script(j, cluster, store))
                            for (jid, root), j in zip(roots, jobs, strict=True)))


SLURM_NAME_RE = re.compile(r"^ugro-(\d+)-a(\d+)$")
