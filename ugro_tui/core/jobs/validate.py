"""The last word on whether a job can be queued on this cluster, shared by `ugro submit` and the launch form."""

from __future__ import annotations

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.model import Job, JobSpec, spec_type_problem
from ugro_tui.core.jobs.placement import NodeCapacity, allowed, could_ever_fit


def spec_problem(spec: JobSpec, cluster: Cluster) -> str | None:
    """Why `spec` cannot be queued here, in the CLI's words (flag names), or None."""
    problem = spec_type_problem(spec)
    if problem:
        return problem
    for key, lo in (("nnodes", 1), ("nproc_per_node", 1), ("gpus_per_node", 0), ("max_retries", 0)):
        value = getattr(spec, key)
        if not isinstance(value, int) or value < lo:
            return f"--{key.replace('_', '-')} must be a whole number ≥ {lo}, got {value!r}"
    if spec.checkpoint_dir and ".." in spec.checkpoint_dir.replace("\\", "/").split("/"):
        return f"--checkpoint-dir {spec.checkpoint_dir!r}: no `..` (keep it inside the node's home or workdir)"
    if spec.min_gpu_mem_gb < 0:
        return f"--min-gpu-mem must be ≥ 0 GB, got {spec.min_gpu_mem_gb:g}"
    if spec.gpu_mem_gb is not None and spec.gpus_per_node < 1:
        return "--gpu-mem is the GPU memory each rank needs on a card it shares; give --gpus-per-node 1 or more"
    if cluster.backend == "slurm":  # Slurm knows its nodes, and refuses what can never run in its own words
        if spec.gpu_mem_gb is not None:
            return "--gpu-mem shares cards on the SSH backend only (on Slurm, ask for GRES shards with [slurm] extra)"
        if spec.nodes:
            return "--nodes: on Slurm, pick nodes with [slurm] partition or extra = [\"--constraint=...\"]"
        if spec.kind == "service":
            return "--kind service runs on the SSH backend only (Slurm jobs end at their time limit)"
        if spec.kind == "session":
            return "sessions run on the SSH backend only (on Slurm, `salloc` gives a shell)"
        if spec.preemptible:
            return "--preemptible: on Slurm, preemption is Slurm's own (a QoS with PreemptMode=REQUEUE)"
        return None
    known = {n.name for n in cluster.nodes} | {label for n in cluster.nodes for label in n.labels}
    for name in spec.nodes:
        if name not in known:
            return (f"--nodes: no node or label {name!r} in {cluster.source} (nodes: "
                    f"{', '.join(n.name for n in cluster.nodes)})")
    # Node counts alone here: GPU counts need telemetry, which the dispatcher has.
    able = [NodeCapacity(n.name, n.labels, gpu_count=1 << 16, gpu_total_mib=1 << 30) for n in cluster.nodes]
    if not could_ever_fit(Job(0, spec), able):
        count = sum(1 for c in able if allowed(Job(0, spec), c))
        return f"--nnodes {spec.nnodes}: only {count} allowed node(s) in this cluster"
    return None
