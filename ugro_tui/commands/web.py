"""`ugro web`: the app in a browser and the JSON API, behind a token, as one long-running service on the master."""

from __future__ import annotations

import ipaddress
import sys
from argparse import Namespace
from pathlib import Path

from ugro_tui.config import Cluster
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
    token = load_or_create(rotate=args.rotate_token)
    if args.rotate_token:
        print(f"ugro web: a new token is in {token_path()}; links with the old one stop working", file=sys.stderr)
    from ugro_tui.web.server import UgroWeb

    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    server = UgroWeb(cluster, Path(cluster.source).resolve(), host=args.host, port=args.port, token=token, tls=tls,
                     dispatch=not args.no_dispatch)
    print(server.start_url, flush=True)  # the first line: the link to open
    if not is_loopback(args.host) and tls is None:
        print(f"ugro web: WARNING: {args.host} is not loopback and there is no TLS: the token travels in clear. "
              f"Prefer the default 127.0.0.1 and `ssh -L {args.port}:127.0.0.1:{args.port} MASTER` from your "
              "laptop, or give --tls-cert and --tls-key", file=sys.stderr, flush=True)
    try:
        server.serve()
    except OSError as exc:  # the address is not this machine's, or the port is taken
        raise UgroError(f"ugro web: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0
