"""The parsers of the verbs with sub-verbs of their own: `ugro session ...`, `ugro yield` and `ugro unyield`."""

from __future__ import annotations

import argparse

from ugro_tui.cli_types import gigabytes, gpu_list, hours, number, positive_int, span


def session_parser(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("session", parents=[common], help="reserve GPUs for a shell (a job of kind session) and open it",
                       description="Reserve GPUs for a shell, a notebook or an editor; given back when idle.")
    s.add_argument("--gpus", type=positive_int, default=1, metavar="N", help="GPUs on one node (default 1)")
    s.add_argument("--node", metavar="NAME[:GPU]", help="this node, or this GPU of it (node0:1)")
    s.add_argument("--min-gpu-mem", type=gigabytes, default=0.0, metavar="GB", help="cards with at least this")
    s.add_argument("--hours", type=hours, default=12.0, metavar="H", help="given back after H hours (12)")
    s.add_argument("--idle-stop", default="60", metavar="MIN", help="given back after MIN idle minutes (60; or 30s)")
    s.add_argument("--name", metavar="N", help="its name in the queue")
    s.add_argument("--priority", type=int, default=0, metavar="P", help="as for any job (higher first)")
    s.add_argument("--workdir", metavar="DIR", help="where the shell starts (default: the node's workdir)")
    s.add_argument("--no-attach", action="store_true", help="print the ssh command instead of opening the shell")
    s.add_argument("--no-wait", action="store_true", help="refuse at once when no GPU is free, naming why")
    s.add_argument("--ssh-config", action="store_true", help="add a `Host ugro-session-ID` entry (VS Code)")
    s.add_argument("--jupyter", action="store_true", help="run JupyterLab in it, forwarded here until Ctrl-C")
    s.add_argument("--local-port", type=number(int, 0, "a port number"), default=0, metavar="L",
                   help="--jupyter: the port here (default: a free one)")
    verbs = s.add_subparsers(dest="session_verb", metavar="attach|end|extend|list")
    a = verbs.add_parser("attach", parents=[common], help="another shell in a running session")
    a.add_argument("id", metavar="ID")
    a.add_argument("--no-attach", action="store_true", help="print the ssh command instead")
    verbs.add_parser("end", parents=[common], help="give its GPUs back now").add_argument("id", metavar="ID")
    e = verbs.add_parser("extend", parents=[common], help="keep it longer")
    e.add_argument("id", metavar="ID")
    e.add_argument("--hours", type=hours, required=True, metavar="H", help="hours more than its end now")
    verbs.add_parser("list", parents=[common], help="sessions: shells attached, idle, time left")


def yield_parsers(sub, common: argparse.ArgumentParser) -> None:
    y = sub.add_parser("yield", parents=[common], help="hand a node's GPUs to the person at it (preempts jobs there)",
                       description="Yield a desktop's GPUs to its owner: nothing new is placed there, and its "
                                   "preemptible jobs are preempted (requeued, keeping their work).")
    y.add_argument("node", metavar="NODE")
    y.add_argument("--gpus", type=gpu_list, default=(), metavar="0,1", help="these GPUs (default: every one)")
    y.add_argument("--for", dest="span", type=span, metavar="TIME", help="until then (30m, 2h, 1d; default: unyield)")
    y.add_argument("--to", metavar="USER", help="whom the node card names (default: the node's user, else yours)")
    y.add_argument("--force", action="store_true",
                   help="also a node that is not a desktop, and stop jobs that are not preemptible (they fail)")
    u = sub.add_parser("unyield", parents=[common], help="give yielded GPUs back to the queue")
    u.add_argument("node", metavar="NODE")
    u.add_argument("--gpus", type=gpu_list, default=(), metavar="0,1", help="these GPUs (default: every one)")
