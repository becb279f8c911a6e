"""`ugro`: the TUI and the headless verbs. Imports stay lazy so `ugro --help` never loads Textual or asyncssh."""

from __future__ import annotations

import argparse
import os
import sys

from ugro_tui import __version__
from ugro_tui.errors import UgroError

EPILOG = """\
config: --config PATH > $UGRO_CONFIG > ./cluster.toml > $XDG_CONFIG_HOME/ugro/cluster.toml
state:  $XDG_STATE_HOME/ugro (jobs, logs)
"""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="cluster.toml to use")
    p = argparse.ArgumentParser(
        prog="ugro", parents=[common], epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Unified GPU Resource Orchestrator: watch and run a small cluster of NVIDIA machines over SSH.")
    p.add_argument("--version", action="version", version=f"ugro {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND")

    nodes = sub.add_parser("nodes", parents=[common], help="list the configured nodes; --check connects to each")
    nodes.add_argument("--check", action="store_true", help="connect to every node in parallel and report")
    nodes.add_argument("--accept-new", action="store_true",
                       help="with --check: trust host keys not yet in known_hosts (a changed key is never trusted)")
    nodes.add_argument("--json", action="store_true", help="print JSON")

    status = sub.add_parser("status", parents=[common], help="GPU status of every node")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--watch", action="store_true", help="refresh in place every poll interval")
    status.add_argument("--count", type=_positive_int, metavar="N", help="with --watch: stop after N refreshes")

    demo = sub.add_parser("demo", help="run a simulated 3-node lab over loopback SSH (no GPU, no root)")
    demo.add_argument("--duration", type=float, metavar="SECONDS", help="stop by itself after this long")
    demo.add_argument("--plain", action="store_true", help="print the live status as text instead of the app")
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _load(args: argparse.Namespace):
    from ugro_tui.config import load_cluster, resolve_config_path

    return load_cluster(resolve_config_path(getattr(args, "config", None)))


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.verb == "nodes":
        from ugro_tui.commands import nodes

        return nodes.run(args, _load(args))
    if args.verb == "status":
        from ugro_tui.commands import status

        return status.run(args, _load(args))
    if args.verb == "demo":
        from ugro_tui.commands import demo

        return demo.run(args)
    from ugro_tui.ui.app import make_app

    make_app(_load(args)).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args, parser)
    except UgroError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one readable line; UGRO_DEBUG=1 shows the traceback
        if os.environ.get("UGRO_DEBUG"):
            raise
        print(f"ugro: unexpected error: {type(exc).__name__}: {exc} (set UGRO_DEBUG=1 for details)",
              file=sys.stderr)
        return 1
