"""The launch form's logic, without any UI: what was typed -> a JobSpec, or an error per field; and a preview.

Every field is text as typed, so the same rules serve the app's form, its tests and anything else that composes
jobs. Errors name the field in the user's words and say what would be right."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field, fields

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.elastic import node_count
from ugro_tui.core.jobs.model import BadSpec, Job, JobSpec, parse_data
from ugro_tui.core.jobs.nodecount import parse_nnodes
from ugro_tui.core.jobs.placement import NodeCapacity
from ugro_tui.core.jobs.planner import plan
from ugro_tui.core.jobs.sweep import NO_SEARCH, Search, fill_trial, parse_search
from ugro_tui.core.jobs.validate import spec_problem
from ugro_tui.errors import UgroError
from ugro_tui.names import ENV_NAME_RE

KINDS = ("torchrun", "command", "service")
_NEEDS_QUOTES = re.compile(r"[^\w@%+=:,./{}-]")  # braces stay bare: {lr} is a sweep placeholder, not shell


def join_args(words: list[str] | tuple[str, ...]) -> str:
    """Words as the args field shows them; shlex.split gives back exactly the same words."""
    return " ".join(w if w and not _NEEDS_QUOTES.search(w) else shlex.quote(w) for w in words)


@dataclass
class FormValues:
    name: str = ""
    kind: str = "torchrun"
    script: str = ""          # torchrun: the script; command: the program
    args: str = ""            # shell words
    nnodes: str = "1"
    nproc_per_node: str = "1"
    gpus_per_node: str = ""   # blank: one per process
    min_gpu_mem_gb: str = "0"
    gpu_mem: str = ""         # GB per rank, may share a card; "3 enforce" stops a rank over it; blank: whole cards
    nodes: tuple[str, ...] = ()
    env: str = ""             # KEY=VALUE lines
    workdir: str = ""
    sync: str = ""            # a folder here to copy to the nodes first (the job runs there); blank: none
    data: str = ""            # dataset paths each placed node must have, space-separated
    priority: str = "0"       # "0 preemptible": a job of higher priority may stop and requeue it
    after: str = ""
    max_retries: str = "0"
    checkpoint_dir: str = ""
    keep: str = ""            # last=2 best=1: the checkpoints retention keeps
    sweep: str = ""           # lr=1e-4,2e-4 batch=1,2 or lr=loguniform:1e-5:1e-2
    search: str = ""          # trials=8 max_concurrent=2 early_stop=median (KEY=VALUE words)
    service: str = ""         # port=8000 health=/health restart=on-failure (KEY=VALUE words; kind service)
    template: str | None = field(default=None, compare=False)


FIELDS = tuple(f.name for f in fields(FormValues) if f.name != "template")


SEARCH_WORDS = ("trials", "seed", "max_concurrent", "metric", "goal", "metric_regex", "early_stop", "warmup_steps",
                "min_trials", "grace", "reduction_factor", "max_t")
SERVICE_WORDS = ("port", "health", "health_initial_delay", "health_period", "health_timeout", "health_failures",
                 "restart", "max_restarts", "worker_command")
_SERVICE_NUMBERS = {"port": int, "health_failures": int, "max_restarts": int, "health_initial_delay": float,
                    "health_period": float, "health_timeout": float}
_WHOLE_WORDS = ("trials", "seed", "max_concurrent", "warmup_steps", "min_trials", "grace", "reduction_factor", "max_t")


@dataclass
class FormResult:
    spec: JobSpec | None
    search: Search = field(default_factory=Search)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return self.search.count if self.spec else 0


def search_words(spec: JobSpec, search: Search = NO_SEARCH) -> str:
    """The search field's text for a spec's settings that differ from the defaults."""
    defaults = JobSpec(name="", command=())
    words = [f"trials={search.trials}"] if search.trials is not None else []
    words += [f"seed={search.seed}"] if search.seed is not None else []
    for key in SEARCH_WORDS[2:]:
        value = getattr(spec, key)
        if value != getattr(defaults, key):
            words.append(f"{key}={shlex.quote(str(value))}")
    return " ".join(words)


def parse_search_words(text: str) -> dict[str, str | int]:
    """`trials=8 early_stop=median` -> {"trials": 8, "early_stop": "median"}; ValueError says what is wrong."""
    out: dict[str, str | int] = {}
    for word in shlex.split(text):
        key, sep, value = word.partition("=")
        if not sep or key not in SEARCH_WORDS:
            raise ValueError(f"search: {word!r}: expected KEY=VALUE with KEY one of {', '.join(SEARCH_WORDS)}")
        if key in _WHOLE_WORDS:
            if not value.isdecimal():
                raise ValueError(f"search: {key}: expected a whole number, got {value!r}")
            out[key] = int(value)
        else:
            out[key] = value
    return out


def service_words(spec: JobSpec) -> str:
    """The service field's text: the service settings that differ from the defaults (port and health always)."""
    if spec.kind != "service":
        return ""
    defaults = JobSpec(name="", command=())
    words = []
    for key in SERVICE_WORDS:
        value = getattr(spec, key)
        if key == "worker_command":
            value = join_args(value)
        if value != getattr(defaults, key) and value not in ("", None):
            words.append(f"{key}={shlex.quote(value if isinstance(value, str) else f'{value:g}')}")
    return " ".join(words)


def parse_service_words(text: str) -> dict[str, object]:
    """`port=8000 health=/health` -> {"port": 8000, "health": "/health"}; ValueError says what is wrong."""
    out: dict[str, object] = {}
    for word in shlex.split(text):
        key, sep, value = word.partition("=")
        if not sep or key not in SERVICE_WORDS:
            raise ValueError(f"service: {word!r}: expected KEY=VALUE with KEY one of {', '.join(SERVICE_WORDS)}")
        if key in _SERVICE_NUMBERS:
            try:
                out[key] = _SERVICE_NUMBERS[key](value)
            except ValueError:
                raise ValueError(f"service: {key}: expected a number, got {value!r}") from None
        elif key == "worker_command":
            out[key] = tuple(shlex.split(value))
        else:
            out[key] = value
    return out


def from_spec(spec: JobSpec) -> FormValues:
    """A past job's settings as the form shows them (`e` in the Jobs view)."""
    nodes = spec.nodes
    script, *args = spec.command or ("",)
    return FormValues(
        name=spec.name, kind=spec.kind, script=script, args=join_args(args), nnodes=node_count(spec),
        nproc_per_node=str(spec.nproc_per_node),
        gpus_per_node="" if spec.gpus_per_node == spec.nproc_per_node else str(spec.gpus_per_node),
        min_gpu_mem_gb=f"{spec.min_gpu_mem_gb:g}", nodes=nodes,
        gpu_mem="" if spec.gpu_mem_gb is None else f"{spec.gpu_mem_gb:g}{' enforce' if spec.gpu_mem_enforce else ''}",
        env="\n".join(f"{k}={v}" for k, v in spec.env if not k.startswith("UGRO_SWEEP_")),
        workdir=spec.workdir or "", sync=spec.sync or "", data=join_args([p for p, _, _ in spec.data]),
        priority=f"{spec.priority}{' preemptible' if spec.preemptible else ''}", after=",".join(map(str, spec.after)),
        max_retries=str(spec.max_retries), checkpoint_dir=spec.checkpoint_dir or "", search=search_words(spec),
        keep=" ".join(f"{w}={v}" for w, v in (("last", spec.keep_last), ("best", spec.keep_best)) if v is not None),
        service=service_words(spec), template=spec.template)


def _whole(text: str, least: int, errors: dict[str, str], key: str, what: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        errors[key] = f"{what}: a whole number, got {text.strip()!r}" if text.strip() else f"{what}: required"
        return least
    if value < least:
        errors[key] = f"{what}: at least {least}"
    return value


def _gpu_mem(text: str, errors: dict[str, str]) -> tuple[float | None, bool]:
    """`3` or `3 enforce`: GB per rank (the job may share a card); blank: whole cards."""
    words = text.split()
    if not words:
        return None, False
    try:
        value = float(words[0])
        if not 0 < value < 1e6 or words[1:] not in ([], ["enforce"]):
            raise ValueError
    except ValueError:
        errors["gpu_mem"] = "GPU mem per rank: a number of GB above 0, then `enforce` if over-use stops the job"
        return None, False
    return value, words[1:] == ["enforce"]


def check(values: FormValues, cluster: Cluster, capacity: list[NodeCapacity] | None = None) -> FormResult:
    """Validate everything; `capacity` (from telemetry) adds the GPU-count checks."""
    errors: dict[str, str] = {}
    if values.kind not in KINDS:
        errors["kind"] = "kind: torchrun, command or service"
    script = values.script.strip()
    if not script:
        errors["script"] = "script: required (e.g. train.py, or a program with kind = command)"
    try:
        args = shlex.split(values.args)
    except ValueError as exc:
        errors["args"] = f"args: {exc} (quote with ' or \")"
        args = []
    nodes_min, nnodes = 0, 1
    try:
        nodes_min, nnodes = parse_nnodes(values.nnodes.strip() or "1", "nodes:")
    except UgroError as exc:
        errors["nnodes"] = f"{exc} (MIN:MAX: elastic)"
    nproc = _whole(values.nproc_per_node, 1, errors, "nproc_per_node", "procs per node")
    gpus = nproc if not values.gpus_per_node.strip() else _whole(values.gpus_per_node, 0, errors, "gpus_per_node",
                                                                   "GPUs per node")
    try:
        min_mem = float(values.min_gpu_mem_gb.strip() or "0")
        if min_mem < 0:
            raise ValueError
    except ValueError:
        errors["min_gpu_mem_gb"] = "min GPU memory: a number of GB, 0 or more"
        min_mem = 0.0
    gpu_mem, enforce = _gpu_mem(values.gpu_mem, errors)
    priority, preemptible = 0, False
    words = values.priority.split()
    try:
        priority = int(words[0] if words else "0")
        if words[1:] not in ([], ["preemptible"]):
            raise ValueError(words)
        preemptible = words[1:] == ["preemptible"]
    except ValueError:
        errors["priority"] = "priority: a whole number (higher runs first), then `preemptible` if a higher one may " \
                             "stop it"
    retries = _whole(values.max_retries or "0", 0, errors, "max_retries", "max retries")
    after: list[int] = []
    for item in (a.strip() for a in values.after.split(",") if a.strip()):
        if not item.isdigit():
            errors["after"] = f"after: job ids such as 3,4 (got {item!r})"
        else:
            after.append(int(item))
    env: list[tuple[str, str]] = []
    for number, line in enumerate(values.env.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.strip().partition("=")
        if not sep or not ENV_NAME_RE.match(key):
            errors["env"] = f"env line {number}: expected NAME=VALUE, got {line.strip()!r}"
            break
        env.append((key, value))
    known = {n.name: n for n in cluster.nodes}
    labels = {label for n in cluster.nodes for label in n.labels}
    unknown = [n for n in values.nodes if n not in known and n not in labels]
    if unknown:
        errors["nodes"] = f"nodes: no node or label {unknown[0]!r} (nodes: {', '.join(known)})"
    chosen = [n for n in cluster.nodes if not values.nodes or n.name in values.nodes
              or any(label in values.nodes for label in n.labels)]
    slurm = cluster.backend == "slurm"  # Slurm knows its nodes and their GPUs, and says what can never run
    if "nnodes" not in errors and "nodes" not in errors and (nodes_min or nnodes) > len(chosen) and not slurm:
        errors["nnodes"] = f"nodes: {nodes_min or nnodes} asked, {len(chosen)} chosen"
    if capacity and gpus and "nproc_per_node" not in errors and not slurm:
        counts = {c.name: c.gpu_count for c in capacity if c.gpu_count}
        sized = [(counts[n.name], n.name) for n in chosen if n.name in counts]
        if sized:
            least, where = min(sized)
            if gpus > least:
                key = "gpus_per_node" if values.gpus_per_node.strip() else "nproc_per_node"
                what = "GPUs per node" if key == "gpus_per_node" else "procs per node"
                errors[key] = f"{what}: {gpus} is more than {where}'s {least} GPU(s); lower it or leave {where} out"
    keep: dict[str, int] = {}
    for word in values.keep.split():
        key, sep, value = word.partition("=")
        if not sep or key not in ("last", "best") or not value.isdecimal():
            errors["keep"] = f"keep: expected last=N and/or best=K, got {word!r}"
            break
        keep[f"keep_{key}"] = int(value)
    options: dict[str, str | int] = {}
    try:
        options = parse_search_words(values.search)
    except ValueError as exc:
        errors["search"] = str(exc)
    search = Search()
    if values.sweep.strip() or "trials" in options or "seed" in options:
        try:
            search = parse_search(values.sweep, options.get("trials"), options.get("seed"))  # type: ignore[arg-type]
        except UgroError as exc:
            errors["sweep"] = str(exc)
    if options.get("early_stop") and not values.sweep.strip() and "sweep" not in errors:
        errors["sweep"] = "sweep: early stopping compares the trials of a sweep; give one (lr=loguniform:1e-4:1e-1)"
    service: dict[str, object] = {}
    try:
        service = parse_service_words(values.service)
    except ValueError as exc:
        errors["service"] = str(exc)
    if service and values.kind != "service":
        errors["service"] = "service: these settings are for kind service"
    sync = values.sync.strip() or None
    if sync is not None and not os.path.isdir(os.path.expanduser(sync)):
        errors["sync"] = f"sync: no folder {sync!r} here (the tree to copy to the nodes)"
    data: tuple[tuple[str, float, str], ...] = ()
    try:
        data = parse_data(shlex.split(values.data))
    except (ValueError, BadSpec) as exc:
        errors["data"] = f"data: {exc}".replace("data: data: ", "data: ")
    if errors:
        return FormResult(None, search, errors)
    extra = {k: v for k, v in options.items() if k not in ("trials", "seed")}
    spec = JobSpec(
        name=values.name.strip() or script.rsplit("/", 1)[-1], command=(script, *args), kind=values.kind,
        nnodes=nnodes, nnodes_min=nodes_min, nproc_per_node=nproc, gpus_per_node=gpus, min_gpu_mem_gb=min_mem,
        nodes=tuple(values.nodes),
        gpu_mem_gb=gpu_mem, gpu_mem_enforce=enforce,
        env=tuple(env), workdir=values.workdir.strip() or None, priority=priority, preemptible=preemptible,
        after=tuple(after),
        max_retries=retries, checkpoint_dir=values.checkpoint_dir.strip() or None, template=values.template,
        sync=sync, data=data, **extra, **keep, **service)  # type: ignore[arg-type]
    problem = spec_problem(spec, cluster)  # the CLI's last word too, so both refuse the same jobs
    if problem:
        key = problem.split(":")[0]
        field_ = "search" if key in SEARCH_WORDS else "keep" if key.startswith("keep_") else \
            "service" if key in SERVICE_WORDS else "form"
        return FormResult(None, search, {field_: problem})
    return FormResult(spec, search)


def preview(spec: JobSpec, cluster: Cluster, search: Search = NO_SEARCH) -> list[tuple[str, str]]:
    """(node, exact command) per node for the first job of the sweep, placed on the first chosen nodes.
    The job id, GPUs and port are chosen at launch; the preview shows the first free ones."""
    first = fill_trial(spec, search.first()) if search else spec
    if cluster.backend == "slurm":
        return slurm_preview(first, cluster)
    chosen = [n for n in cluster.nodes if not first.nodes or n.name in first.nodes
              or any(label in first.nodes for label in n.labels)][: first.nnodes]
    placement = tuple((n.name, tuple(range(first.gpus_per_node))) for n in chosen)
    job = Job(id=0, spec=first, placement=placement, attempt=1)
    if first.kind == "service":  # the ports as a start would pick them on an idle cluster
        from ugro_tui.core.services.status import ServiceStatus

        head = first.port or cluster.service_ports[0]
        workers = tuple((n, cluster.service_ports[0] + i + (0 if first.port else 1)) for i, (n, _) in
                        enumerate(placement[1:]))
        job = Job(id=0, spec=first, placement=placement, attempt=1,
                  service=ServiceStatus(port=head, endpoint=f"{placement[0][0]}:{head}", workers=workers))
    out = []
    for p in plan(job, cluster, cluster.rendezvous_ports[0]):
        lines = p.script.splitlines()
        command = next(line for line in lines[5:] if line and not line.startswith(("export", "echo", "mkdir")))
        gpus = dict(placement)[p.node]
        share = [("UGRO_GPU_MEM_GB", f"{first.gpu_mem_gb:g}")] if first.gpu_mem_gb is not None else []
        user_env = " ".join(f"{k}={shlex.quote(v)}" for k, v in (*share, *first.env))
        out.append((p.node, f"CUDA_VISIBLE_DEVICES={','.join(map(str, gpus))} {user_env + ' ' if user_env else ''}"
                            f"{command}"))
    return out


def slurm_preview(spec: JobSpec, cluster: Cluster) -> list[tuple[str, str]]:
    """On Slurm: the sbatch the login node runs, with its batch script, and the command srun runs on each node."""
    from ugro_tui.core.backends.slurm.script import node_script, submission

    job = Job(id=0, spec=spec, attempt=1)
    script = node_script(job, cluster).splitlines()
    command = next(line for line in script if line.endswith(" &")).removesuffix(" &")
    return [(f"sbatch on {cluster.slurm.login}", submission([job], cluster).preview().rstrip()),
            ("srun on each node", command)]
