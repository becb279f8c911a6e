"""`ugro yield NODE` and `ugro unyield NODE`: a desktop's GPUs to the person at it, and back to the queue."""

from __future__ import annotations

from argparse import Namespace

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.jobs.yield_actions import unyield_cards, yield_cards


def yield_node(args: Namespace, cluster: Cluster) -> int:
    print(yield_cards(cluster, JobStore(), args.node, args.gpus, span_s=args.span, force=args.force, to=args.to))
    return 0


def unyield_node(args: Namespace, cluster: Cluster) -> int:
    print(unyield_cards(cluster, JobStore(), args.node, args.gpus))
    return 0
