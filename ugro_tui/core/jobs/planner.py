"""The planner, pure: a job and its placement -> one shell script per node. Every value is quoted."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ugro_tui.config import Cluster, Node
from ugro_tui.core.jobs import elastic
from ugro_tui.core.jobs.logs import TEE_PREFIX
from ugro_tui.core.jobs.model import Job
from ugro_tui.core.services import roles
from ugro_tui.core.transport import export_env, path_word, python_command


@dataclass(frozen=True)
class NodePlan:
    node: str
    run_dir: str      # on the node; may start with ~/
    script: str       # POSIX sh, run detached in its own session


def run_dir(node: Node, job: Job) -> str:
    return f"{node.workdir.rstrip('/')}/runs/job-{job.id}-a{job.attempt}"


def plan(job: Job, cluster: Cluster, port: int, store: str = "") -> list[NodePlan]:
    """One script per placed node, in rank order; the first node hosts the rendezvous. `store`: the job store's
    identity (UGRO_STORE), which every sweep of leftover processes matches."""
    spec = job.spec
    first = cluster.node(job.placement[0][0])
    endpoint = f"{first.host}:{port}"
    plans = []
    for node_rank, (name, gpus) in enumerate(job.placement):
        node = cluster.node(name)
        rd = run_dir(node, job)
        env: list[tuple[str, str]] = [
            ("CUDA_VISIBLE_DEVICES", ",".join(map(str, gpus))),
            ("UGRO_NODE", node.name), ("UGRO_JOB_ID", str(job.id)), ("UGRO_NODE_RANK", str(node_rank)),
            ("UGRO_NNODES", str(spec.nnodes)), *([("UGRO_STORE", store)] if store else []),
            ("TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE", TEE_PREFIX), ("PYTHONUNBUFFERED", "1"),
        ]
        if spec.kind == "session":  # its shells, and what they start, are found on the node by this
            env.append(("UGRO_SESSION", str(job.id)))
        if elastic.is_elastic(spec):  # torch 2.x keeps the first round's store address when rank 0 moves to
            env.append(("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1"))  # another node: each round publishes anew
        if spec.preemptible:  # a job that saves on TERM loses nothing (README: preemption)
            env.append(("UGRO_PREEMPT_GRACE", f"{cluster.preempt_grace:g}"))
        if spec.gpu_mem_gb is not None:  # a shared card: the script holds each rank to it (README: sharing a card)
            env.append(("UGRO_GPU_MEM_GB", f"{spec.gpu_mem_gb:g}"))
        if node.socket_ifname:
            env += [("NCCL_SOCKET_IFNAME", node.socket_ifname), ("GLOO_SOCKET_IFNAME", node.socket_ifname)]
        values = roles.node_values(job, cluster, node_rank, port) if spec.kind == "service" else {}
        if values:
            env += roles.env_of(values)
        env += list(node.env) + list(spec.env)
        paths = []  # exported as path words: a leading ~ is the node's home
        if spec.checkpoint_dir:
            paths = [("UGRO_CHECKPOINT_DIR", _home(spec, node, spec.checkpoint_dir)),
                     ("UGRO_RESUME_FROM", _home(spec, node, job.resume_from or ""))]
        if spec.jupyter:  # JupyterLab says its port and token in a file there (sessions/watch.py reads it)
            paths.append(("JUPYTER_RUNTIME_DIR", f"{rd}/jupyter"))
        if spec.kind == "torchrun":
            argv = [python_command(node), "-m", "torch.distributed.run",
                    "--nnodes", elastic.node_count(spec), "--nproc-per-node", str(spec.nproc_per_node),
                    "--rdzv-backend", "c10d", "--rdzv-endpoint", shlex.quote(endpoint),
                    "--rdzv-id", shlex.quote(f"ugro-{job.id}-{job.attempt}"),
                    *torchrun_args(spec, node_rank == 0, cluster.rendezvous_timeout),
                    "--log-dir", path_word(f"{rd}/torchrun"), "--redirects", "3", "--tee", "3",
                    *map(_word, spec.command)]
            command = " ".join(argv)
        elif values:
            command = " ".join(python_command(node) if w == "{python}" else _word(roles.fill(w, values))
                               for w in roles.command_of(spec, node_rank))
        elif spec.kind == "session":
            command = keeper(spec, node)
        else:
            command = " ".join(map(_word, spec.command))
        workdir = workdir_of(spec, node)
        rdw = path_word(rd)
        setup = f"{node.prelude}{export_env(env)}{export_paths(paths)}"
        if spec.kind == "session":  # what each shell of the session sources (sessions/shell.py)
            command = (f"cat > {rdw}/session.sh <<'UGRO_SESSION_EOF'\ncd {path_word(workdir)} 2>/dev/null\n"
                       f"{setup}\nUGRO_SESSION_EOF\n{command}")
        role = ("head" if node_rank == 0 else "worker") if values else f"node rank {node_rank}"
        script = "\n".join([
            "#!/bin/sh",
            f"# ugro job {job.id} attempt {job.attempt} on {node.name} ({role})",
            f"echo $$ > {rdw}/pid",
            f"mkdir -p {path_word(workdir)} && cd {path_word(workdir)} || {{ echo 97 > {rdw}/exit; exit 97; }}",
            setup,
            command,
            "code=$?",
            f'echo "$code" > {rdw}/exit.tmp && mv -f {rdw}/exit.tmp {rdw}/exit',
            "exit $code",
            "",
        ])
        plans.append(NodePlan(name, rd, script))
    return plans


def torchrun_args(spec, first: bool, timeout: float = 600.0) -> list[str]:
    """torchrun's restarts and rendezvous: the nodes wait `timeout` seconds for each other ([cluster]
    rendezvous_timeout; its store answers within 60 of them). No restart for a fixed job (a failure ends the
    attempt, ugro retries it); an elastic one re-forms its group when a node goes or joins, waits briefly for more
    nodes, and drops a silent one soon. Its first node hosts the rendezvous store, named outright: where node
    addresses are all this machine's (a loopback lab), torchrun's guess would let whichever agent starts first host
    it, and its node's loss would end them all."""
    conf = f"join_timeout={timeout:g},read_timeout={min(timeout, 60.0):g}" if timeout != 600.0 else ""
    if not elastic.is_elastic(spec):  # torch's own timeouts unless the config says otherwise
        return ["--max-restarts", "0", *(["--rdzv-conf", conf] if conf else [])]
    conf += (f"{',' if conf else ''}last_call_timeout={elastic.LAST_CALL},keep_alive_interval={elastic.KEEP_ALIVE},"
             f"keep_alive_max_attempt=3,is_host={'true' if first else 'false'}")
    return ["--max-restarts", str(spec.elastic_restarts), "--rdzv-conf", conf]


def keeper(spec, node: Node) -> str:
    """What a session runs while it holds its GPUs: JupyterLab on the node's loopback (a free port of its
    choosing), or nothing but a sleep that the session's end stops."""
    if not spec.jupyter:
        return "sleep 2147483647"
    return (f"{python_command(node)} -m jupyterlab --no-browser --allow-root --ip 127.0.0.1 --port 0 "
            "--ServerApp.root_dir=.")


def _home(spec, node: Node, folder: str) -> str:
    """A relative checkpoint path of a job that runs in its synced tree: under the node's workdir, as for any
    other job, never inside the tree (collecting an old tree must not take checkpoints along)."""
    if folder and spec.sync_hash and not spec.workdir and not folder.startswith(("/", "~")):
        return f"{node.workdir.rstrip('/')}/{folder}"
    return folder


def workdir_of(spec, node: Node) -> str:
    """Where the job runs on the node: its workdir, else its synced tree, else the node's workdir."""
    if spec.workdir:
        return spec.workdir
    if spec.sync_hash:
        return f"{node.code_dir.rstrip('/')}/{spec.sync_hash}"
    return node.workdir


def export_paths(items: list[tuple[str, str]]) -> str:
    return "".join(f"export {k}={path_word(v) if v else shlex.quote(v)}; " for k, v in items)


def _word(word: str) -> str:
    """A command word, quoted; `{resume}` in it becomes the checkpoint the attempt resumes from (empty if none)."""
    if "{resume}" not in word:
        return shlex.quote(word)
    return '"$UGRO_RESUME_FROM"'.join(shlex.quote(part) for part in word.split("{resume}"))
