"""`ugro web`: the app in a browser and the JSON API, behind a token, as one long-running service on the master."""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys
import time
from argparse import Namespace
from contextlib import suppress
from pathlib import Path

from ugro_tui.config import Cluster
from ugro_tui.core.daemon.client import Client, NoDaemon
from ugro_tui.errors import UgroError, UsageError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run(args: Namespace, cluster: Cluster) -> int:
    from ugro_tui.web.token import load_or_create, token_path

    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("ugro web: give --tls-cert and --tls-key together")
    for flag in ("tls_cert", "tls_key"):
        value = getattr(args, flag)
        if value and not Path(value).is_file():
            raise UsageError(f"ugro web: --{flag.replace('_', '-')} {value}: no such file")
    load_or_create(rotate=args.rotate_token)  # made (or replaced) here, private; the daemon reads the same file
    if args.rotate_token:
        print(f"ugro web: a new token is in {token_path()}; links with the old one stop working", file=sys.stderr)
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    if not is_loopback(args.host) and tls is None:
        print(f"ugro web: WARNING: {args.host} is not loopback and there is no TLS: the token travels in clear. "
              f"Prefer the default 127.0.0.1 and `ssh -L {args.port}:127.0.0.1:{args.port} MASTER` from your "
              "laptop, or give --tls-cert and --tls-key", file=sys.stderr, flush=True)
    client = Client()
    try:
        running = client.status()
    except NoDaemon:
        running = None
    if running is not None:  # the daemon that runs serves the view: never a second runtime
        return _through(client, running, args.host, args.port, tls)
    config = Path(cluster.source).resolve()

    async def listen(daemon) -> None:
        try:
            url = await daemon.start_web(args.host, args.port, tls)
        except OSError as exc:  # the address is not this machine's, or the port is taken
            raise UgroError(f"ugro web: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
        print(url, flush=True)  # the first line, once it accepts: the link to open

    from ugro_tui.core.daemon.service import run_foreground

    return run_foreground(cluster, config, level=logging.WARNING, dispatch=not args.no_dispatch, on_ready=listen)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _through(client: Client, running: dict, host: str, port: int, tls: tuple[str, str] | None) -> int:
    """Ask the running daemon to serve the web view; print its link; stop the view on Ctrl-C or SIGTERM."""
    try:
        doc = client.call("POST", "daemon/web", {"host": host, "port": port, "tls": list(tls) if tls else None})
    except UgroError as exc:
        raise UgroError(f"ugro web: {exc}") from None
    print(doc["url"], flush=True)
    print(f"ugro web: served by the ugro daemon pid {running['pid']}; Ctrl-C stops the web view, not the daemon",
          file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while client.alive():
            time.sleep(1.0)
    except KeyboardInterrupt:
        with suppress(UgroError):
            client.call("POST", "daemon/web/stop")
        return 0
    print("ugro web: the daemon went away, and the web view with it", file=sys.stderr)
    return 1
