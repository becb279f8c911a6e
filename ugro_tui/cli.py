"""`ugro`: the TUI and the headless verbs. Imports stay lazy so `ugro --help` never loads Textual or asyncssh."""

from __future__ import annotations

import argparse
import os
import sys

from ugro_tui import __version__
from ugro_tui.cli_types import (
    attempt,
    count,
    gigabytes,
    node_count,
    number,
    port,
    positive_int,
    seconds,
    share_gb,
)
from ugro_tui.cli_verbs import session_parser, yield_parsers
from ugro_tui.errors import UgroError

EPILOG = """\
config: --config PATH > $UGRO_CONFIG > ./cluster.toml > $XDG_CONFIG_HOME/ugro/cluster.toml
state:  $XDG_STATE_HOME/ugro (jobs, logs)
"""


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr and exit 2 (`--help` still shows the usage)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


class _Skipped:
    """A verb's parser not built: `ugro submit` and `ugro queue` build only their own (all cost ~8 ms)."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: self


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only`, the top level and that verb's parser alone (what it parses the same)."""
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="cluster.toml to use")
    common.add_argument("--read-only", action="store_true", default=argparse.SUPPRESS,
                        help="look, never change: submit, cancel, kill and node edits are refused")
    p = _Parser(
        prog="ugro", parents=[common], epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Unified GPU Resource Orchestrator: watch and run a small cluster of NVIDIA machines over SSH.")
    p.add_argument("--version", action="version", version=f"ugro {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND")
    if only is not None:
        build = sub.add_parser
        sub.add_parser = lambda name, **kw: build(name, **kw) if name == only else _Skipped()  # type: ignore

    nodes = sub.add_parser("nodes", parents=[common], help="list the configured nodes; --check connects to each")
    nodes.add_argument("--check", action="store_true", help="connect to every node in parallel and report")
    nodes.add_argument("--accept-new", action="store_true",
                       help="with --check: trust host keys not yet in known_hosts (a changed key is never trusted)")
    nodes.add_argument("--json", action="store_true", help="print JSON")
    nodes_sub = nodes.add_subparsers(dest="nodes_verb", metavar="add|remove")
    add = nodes_sub.add_parser("add", parents=[common], help="add a node to cluster.toml (comments are kept)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--host", required=True, metavar="H")
    add.add_argument("--port", type=number(int, 1, "a port number"), metavar="P")
    add.add_argument("--user", metavar="U")
    add.add_argument("--identity-file", metavar="PATH")
    add.add_argument("--python", metavar="CMD", help="the node's python (default python3)")
    add.add_argument("--workdir", metavar="DIR", help="default ~/ugro")
    add.add_argument("--labels", metavar="A,B")
    add.add_argument("--socket-ifname", metavar="IF", help="the interface NCCL and gloo use")
    add.add_argument("--check", action="store_true", help="connect first; add it only if that works")
    remove = nodes_sub.add_parser("remove", parents=[common], help="remove a node from cluster.toml")
    remove.add_argument("name", metavar="NAME")

    status = sub.add_parser("status", parents=[common], help="GPU status of every node")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--watch", action="store_true", help="refresh in place every poll interval")
    status.add_argument("--count", type=positive_int, metavar="N", help="with --watch: stop after N refreshes")
    status.add_argument("--by-user", action="store_true",
                        help="GPUs and GPU memory per user across the cluster, and ugro jobs per user")

    submit = sub.add_parser("submit", parents=[common], help="queue a job; prints its id once it is stored",
                            usage="ugro submit [options] -- SCRIPT_OR_CMD [ARGS...]")
    submit.add_argument("--file", metavar="JOB.toml", help="read the job from a TOML file (flags override it)")
    submit.add_argument("--template", metavar="NAME", help="start from a saved template (`ugro templates` lists them)")
    submit.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                        help="change one template/file setting, e.g. nnodes=2 or env.LR=3e-4")
    submit.add_argument("--sweep", action="append", metavar="KEY=SPACE", default=[],
                        help="a search axis: KEY=V1,V2 (grid), KEY=uniform:LO:HI, KEY=loguniform:LO:HI, "
                             "KEY=int:LO:HI, KEY=choice:A,B; {KEY} in the args and $UGRO_SWEEP_KEY get each value")
    submit.add_argument("--trials", type=positive_int, metavar="N",
                        help="draw N trials (needed for ranges; a grid is then drawn without repeats)")
    submit.add_argument("--seed", type=number(int, 0, "a whole number"), metavar="S", help="the draw's seed")
    submit.add_argument("--max-concurrent", type=count, metavar="K", help="run at most K trials of the sweep at once")
    submit.add_argument("--metric", metavar="NAME", help="the metric trials are ranked by (default loss)")
    submit.add_argument("--goal", choices=("min", "max"), help="lower or higher is better (default min)")
    submit.add_argument("--metric-regex", metavar="RE",
                        help="two groups, (step) and (value); default: `step N NAME X` lines")
    submit.add_argument("--early-stop", choices=("median", "asha"), help="stop clearly worse trials early")
    submit.add_argument("--warmup-steps", type=count, metavar="W", help="median: not before step W (default 0)")
    submit.add_argument("--min-trials", type=positive_int, metavar="M",
                        help="median: other trials needed at the step (default 5)")
    submit.add_argument("--grace", type=positive_int, metavar="G", help="asha: the first rung's step (default 1)")
    submit.add_argument("--reduction-factor", type=number(int, 2, "a whole number"), metavar="R",
                        help="asha: one in R trials goes on at each rung (default 3)")
    submit.add_argument("--max-t", type=count, metavar="T", help="asha: no rung past step T")
    submit.add_argument("--name")
    submit.add_argument("--kind", choices=("torchrun", "command", "service"),
                        help="service: runs until cancelled, with a port, a health probe and restarts")
    submit.add_argument("--nnodes", type=node_count, metavar="K|MIN:MAX",
                        help="nodes; MIN:MAX starts on at least MIN, up to MAX, and goes on while MIN remain (elastic)")
    submit.add_argument("--elastic-restarts", type=count, metavar="N",
                        help="elastic: torchrun's --max-restarts, a node lost or joining (default 3)")
    submit.add_argument("--nproc-per-node", type=positive_int, metavar="P")
    submit.add_argument("--gpus-per-node", type=count, metavar="G", help="default: the procs per node")
    submit.add_argument("--min-gpu-mem", type=gigabytes, metavar="GB", help="free memory each GPU needs")
    submit.add_argument("--gpu-mem", type=share_gb, metavar="GB",
                        help="GPU memory each rank needs: the job may share cards with other such jobs")
    submit.add_argument("--preemptible", action="store_true",
                        help="a job of higher priority may stop it (TERM, preempt_grace to save) and requeue it")
    submit.add_argument("--gpu-mem-enforce", action="store_true",
                        help="stop the job when a rank uses over 10%% more than --gpu-mem (else a warning)")
    submit.add_argument("--nodes", metavar="A,B", help="allowed node names or labels")
    submit.add_argument("--priority", type=int, metavar="X", help="higher runs first (default 0)")
    submit.add_argument("--after", type=positive_int, action="append", metavar="ID",
                        help="start after job ID succeeds")
    submit.add_argument("--hold", action="store_true", help="store it held; `ugro release` queues it")
    submit.add_argument("--env", action="append", metavar="NAME=VALUE")
    submit.add_argument("--workdir", metavar="DIR")
    submit.add_argument("--max-retries", type=count, metavar="N")
    submit.add_argument("--checkpoint-dir", metavar="DIR",
                        help="the job's checkpoints (relative: to the node's workdir); $UGRO_CHECKPOINT_DIR")
    submit.add_argument("--keep-last", type=count, metavar="N", help="keep the newest N complete checkpoints")
    submit.add_argument("--keep-best", type=count, metavar="K", help="and the best K by the metric")
    submit.add_argument("--sync", nargs="?", const=".", metavar="DIR",
                        help="copy DIR (default: here) to the job's nodes first and run there (.ugroignore)")
    submit.add_argument("--sync-git", action="store_true", help="with --sync: send .git/ too")
    submit.add_argument("--data", action="append", metavar="PATH",
                        help="a dataset every placed node must have (checked before launch)")
    svc = submit.add_argument_group("services (--kind service)")
    svc.add_argument("--port", type=port, metavar="P", help="the head's port (default: a free one from service_ports)")
    svc.add_argument("--health", metavar="PATH", help="GET this path; 2xx is healthy (default: a TCP connect)")
    svc.add_argument("--health-initial-delay", type=seconds, metavar="S", help="time to get healthy (default 600)")
    svc.add_argument("--health-period", type=seconds, metavar="S", help="between probes (default 10)")
    svc.add_argument("--health-timeout", type=seconds, metavar="S", help="per probe (default 5)")
    svc.add_argument("--health-failures", type=positive_int, metavar="N",
                     help="failed probes in a row that make it unhealthy (default 3)")
    svc.add_argument("--restart", choices=("never", "on-failure", "always"), help="default on-failure")
    svc.add_argument("--max-restarts", type=count, metavar="N", help="then it fails (default 5)")
    svc.add_argument("--worker-command", metavar="CMD",
                     help="what the other nodes run, started before the head (e.g. rpc-server --port {port})")
    submit.add_argument("command", nargs=argparse.REMAINDER, metavar="-- SCRIPT_OR_CMD [ARGS...]")

    tmpl = sub.add_parser("templates", parents=[common], help="list job templates, or show one")
    tmpl.add_argument("name", nargs="?", metavar="NAME", help="print this template")

    queue = sub.add_parser("queue", parents=[common], help="list jobs")
    queue.add_argument("--json", action="store_true", help='print {"jobs": [...]}')
    queue.add_argument("--state", metavar="S[,S]", help="only jobs in these states")
    queue.add_argument("--ack-recovery", action="store_true",
                       help="stop saying that the job store was recovered from its previous generation")
    show = sub.add_parser("show", parents=[common], help="one job in full")
    show.add_argument("job", metavar="JOB")
    show.add_argument("--json", action="store_true")
    for verb, what in (("cancel", "cancel jobs (running ones are stopped on every node)"),
                       ("hold", "hold queued jobs"), ("release", "queue held jobs again"),
                       ("retry", "queue finished jobs again")):
        p_verb = sub.add_parser(verb, parents=[common], help=what)
        p_verb.add_argument("jobs", nargs="+" if verb != "retry" else 1, metavar="JOB")
        if verb == "retry":
            p_verb.add_argument("--from", dest="from_step", metavar="STEP|latest",
                                help="resume from this complete checkpoint (`ugro checkpoints JOB` lists them)")
    ckpt = sub.add_parser("checkpoints", parents=[common], help="a job's checkpoints on its nodes; prune or pull")
    ckpt.add_argument("job", metavar="JOB")
    ckpt.add_argument("--json", action="store_true", help='print {"checkpoints": [...]}')
    ckpt.add_argument("--prune", action="store_true", help="delete what keep_last/keep_best let go")
    ckpt.add_argument("--dry-run", action="store_true", help="with --prune: say what would go, delete nothing")
    ckpt.add_argument("--pull", metavar="STEP|latest", help="copy a complete checkpoint (every node's part) here")
    ckpt.add_argument("--to", metavar="DIR", help="with --pull: where (default ./checkpoints/job-ID)")
    logs = sub.add_parser("logs", parents=[common], help="a job's output, per rank or per node")
    logs.add_argument("job", metavar="JOB")
    logs.add_argument("--rank", type=count, metavar="N", help="only global rank N (without its prefix)")
    logs.add_argument("--node", metavar="NAME", help="only what ran on this node")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    logs.add_argument("--attempt", metavar="N|all", type=attempt,
                      help="an earlier attempt of a retried job (default: the latest), or all of them in order")
    sweeps = sub.add_parser("sweeps", parents=[common], help="list sweeps with their best trial")
    sweeps.add_argument("--json", action="store_true", help='print {"sweeps": [...]}')
    sweep = sub.add_parser("sweep", parents=[common], help="one sweep: its leaderboard, or cancel it")
    sweep_sub = sweep.add_subparsers(dest="sweep_verb", metavar="show|cancel", required=True)
    sweep_show = sweep_sub.add_parser("show", parents=[common], help="the trials, best first")
    sweep_show.add_argument("id", metavar="ID")
    sweep_show.add_argument("--json", action="store_true")
    sweep_cancel = sweep_sub.add_parser("cancel", parents=[common], help="cancel every trial not finished")
    sweep_cancel.add_argument("id", metavar="ID")
    sync = sub.add_parser("sync", parents=[common], help="copy a folder to nodes as --sync would, without a job")
    sync.add_argument("dir", metavar="DIR")
    sync.add_argument("--nodes", metavar="A,B", help="node names or labels (default: every node)")
    sync.add_argument("--git", action="store_true", help="send .git/ too")
    events = sub.add_parser("events", parents=[common], help="job, node and GPU events (the last 1,000)")
    events.add_argument("--follow", "-f", action="store_true", help="keep printing new events until Ctrl-C")
    events.add_argument("--json", action="store_true", help='print {"events": [...]} (with --follow: a line each)')
    usage = sub.add_parser("usage", parents=[common], help="GPU-hours, energy and cost: per user, node, job, ...")
    usage.add_argument("--since", metavar="7d|DATE", help="from (default: 7 days ago)")
    usage.add_argument("--until", metavar="DATE", help="until (default: now)")
    usage.add_argument("--by", choices=("user", "node", "job", "sweep", "day"), default="user")
    usage.add_argument("--json", action="store_true")
    kill = sub.add_parser("kill", parents=[common], help="signal a GPU process on a node (TERM by default)")
    kill.add_argument("node", metavar="NODE")
    kill.add_argument("pid", metavar="PID")
    kill.add_argument("--signal", "-s", default="TERM", metavar="S", help="TERM (default), INT, KILL, HUP, ...")
    services = sub.add_parser("services", parents=[common], help="running services: health, endpoint, restarts")
    services.add_argument("--json", action="store_true", help='print {"services": [...]}')
    fwd = sub.add_parser("forward", parents=[common], help="reach a service from here through SSH until Ctrl-C")
    fwd.add_argument("job", metavar="JOB")
    fwd.add_argument("--local-port", type=number(int, 0, "a port number"), default=0, metavar="L",
                     help="the port here (default: a free one)")
    session_parser(sub, common)
    yield_parsers(sub, common)
    sched = sub.add_parser("scheduler", parents=[common], help="run the dispatcher headless")
    sched.add_argument("--until-idle", action="store_true", help="exit when nothing is queued, starting or running")

    daemon = sub.add_parser("daemon", parents=[common], help="the background daemon that owns connections and dispatch")
    daemon_sub = daemon.add_subparsers(dest="daemon_verb", required=True, metavar="start|stop|status|restart|run")
    for verb, what in (("start", "start it in the background"), ("stop", "stop it (jobs go on)"),
                       ("restart", "stop and start it (jobs go on)"), ("run", "run it in the foreground")):
        daemon_sub.add_parser(verb, parents=[common], help=what)
    daemon_sub.add_parser("status", parents=[common], help="pid, clients, connections, tasks").add_argument(
        "--json", action="store_true", help="print JSON")

    doctor = sub.add_parser("doctor", parents=[common], help="preflight checks of every node and of the cluster")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.add_argument("--smoke", action="store_true", help="also run a tiny all-reduce across all nodes as a job")

    webp = sub.add_parser("web", parents=[common], help="the app in a browser and a JSON API, behind a token")
    webp.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    webp.add_argument("--port", type=number(int, 1, "a port number"), default=8420, metavar="P")
    webp.add_argument("--no-dispatch", action="store_true", help="never run the dispatcher here")
    webp.add_argument("--tls-cert", metavar="FILE")
    webp.add_argument("--tls-key", metavar="FILE")
    webp.add_argument("--rotate-token", action="store_true", help="replace the token (old links stop working)")
    demo = sub.add_parser("demo", help="run a simulated 3-node lab over loopback SSH (no GPU, no root)")
    demo.add_argument("--duration", type=float, metavar="SECONDS", help="stop by itself after this long")
    demo.add_argument("--plain", action="store_true", help="print the live status as text instead of the app")
    return p


def _load(args: argparse.Namespace):
    import dataclasses

    from ugro_tui.config import load_cluster, resolve_config_path

    cluster = load_cluster(resolve_config_path(getattr(args, "config", None)))
    if getattr(args, "read_only", False):
        cluster = dataclasses.replace(cluster, read_only=True)
    change = _change_asked(args)
    if change and cluster.read_only:
        from ugro_tui.errors import ReadOnlyError

        raise ReadOnlyError(change)
    return cluster


def _change_asked(args: argparse.Namespace) -> str | None:
    """What the command would change, in the user's words; None for one that only looks."""
    verb = args.verb
    if verb in ("submit", "cancel", "hold", "release", "retry", "kill", "sync", "yield", "unyield"):
        return f"ugro {verb}"
    if verb == "session" and getattr(args, "session_verb", None) not in ("attach", "list"):
        return f"ugro session {args.session_verb or ''}".strip()
    if verb == "nodes" and getattr(args, "nodes_verb", None):
        return f"ugro nodes {args.nodes_verb}"
    if verb == "sweep" and args.sweep_verb == "cancel":
        return "ugro sweep cancel"
    if verb == "checkpoints" and args.prune and not args.dry_run:
        return "ugro checkpoints --prune"
    if verb == "doctor" and args.smoke:
        return "ugro doctor --smoke (it submits a job)"
    return None


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.verb == "nodes":
        from ugro_tui.commands import nodes

        if getattr(args, "nodes_verb", None):
            from ugro_tui.config import resolve_config_path

            path = resolve_config_path(getattr(args, "config", None))
            return nodes.edit(args, path, _load(args))
        return nodes.run(args, _load(args))
    if args.verb == "status":
        from ugro_tui.commands import status

        return status.run(args, _load(args))
    if args.verb == "checkpoints" or (args.verb == "retry" and getattr(args, "from_step", None)):
        from ugro_tui.commands import checkpoints

        return (checkpoints.run if args.verb == "checkpoints" else checkpoints.retry_from)(args, _load(args))
    if args.verb == "queue":
        from ugro_tui.commands import queue

        return queue.run(args, lambda: _load(args))
    if args.verb == "submit":
        from ugro_tui.commands import submit

        done = submit.through_daemon(args)
        if done is not None:
            return done
    if args.verb in ("submit", "show", "cancel", "hold", "release", "retry"):
        from ugro_tui.commands import jobs

        handler = {"submit": jobs.submit, "show": jobs.show}.get(args.verb, jobs.change_state)
        return handler(args, _load(args))
    if args.verb in ("sweeps", "sweep"):
        from ugro_tui.commands import sweeps

        verb = "list" if args.verb == "sweeps" else args.sweep_verb
        return {"list": sweeps.list_sweeps, "show": sweeps.show, "cancel": sweeps.cancel}[verb](args, _load(args))
    if args.verb == "templates":
        from ugro_tui.commands import jobs

        return jobs.list_templates(args)
    if args.verb == "logs":
        from ugro_tui.commands import logs

        return logs.run(args, _load(args))
    if args.verb == "sync":
        from ugro_tui.commands import sync

        return sync.run(args, _load(args))
    if args.verb == "events":
        from ugro_tui.commands import events

        return events.run(args)
    if args.verb == "usage":
        from ugro_tui.commands import usage

        return usage.run(args, _load(args))
    if args.verb == "kill":
        from ugro_tui.commands import kill

        return kill.run(args, _load(args))
    if args.verb in ("services", "forward"):
        from ugro_tui.commands import services

        return (services.list_services if args.verb == "services" else services.forward)(args, _load(args))
    if args.verb == "session":
        from ugro_tui.commands import session

        handler = {None: session.start, "attach": session.attach, "end": session.end, "extend": session.extend,
                   "list": session.list_sessions}[args.session_verb]
        return handler(args, _load(args))
    if args.verb in ("yield", "unyield"):
        from ugro_tui.commands import yields

        return (yields.yield_node if args.verb == "yield" else yields.unyield_node)(args, _load(args))
    if args.verb == "scheduler":
        from ugro_tui.commands import scheduler

        return scheduler.run(args, _load(args))
    if args.verb == "daemon":
        from ugro_tui.commands import daemon

        return daemon.run(args, _load(args))
    if args.verb == "doctor":
        from ugro_tui.commands import doctor

        return doctor.run(args, _load(args))
    if args.verb == "web":
        from ugro_tui.commands import web

        return web.run(args, _load(args))
    if args.verb == "demo":
        from ugro_tui.commands import demo

        return demo.run(args)
    from ugro_tui.ui.app import make_app

    make_app(_load(args)).run()
    return 0


def _verb(argv: list[str]) -> str | None:
    """The verb of a command line (after global options), or None."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: list[str] | None = None) -> int:
    verb = _verb(sys.argv[1:] if argv is None else argv)
    parser = _parser(only=verb if verb in ("submit", "queue") else None)  # what scripts call in loops
    args = parser.parse_args(argv)
    try:
        return _dispatch(args, parser)
    except UgroError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `ugro logs 3 | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # one readable line; UGRO_DEBUG=1 shows the traceback
        if os.environ.get("UGRO_DEBUG"):
            raise
        print(f"ugro: unexpected error: {type(exc).__name__}: {exc} (set UGRO_DEBUG=1 for details)",
              file=sys.stderr)
        return 1
