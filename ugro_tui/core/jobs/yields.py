"""Yielded GPUs: a desktop's cards handed back to the person at it, by the watch (a process ugro did not start took
one) or by hand (`ugro yield`). A yielded card takes no new job; the preemptible jobs on it are preempted, and with
--force the others stop too (failed, their retry policy applying).

The yields live in one small JSON file beside the job store, replaced atomically under a lock, so the CLI, the app
and the daemon change them alike and a daemon killed at any line finds them as they were."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ugro_tui.atomic import write_atomic

STOP_PREFIX = "yielded: "  # a stop asked by a forced yield: the job fails with its retry policy applying


@dataclass(frozen=True)
class Yield:
    node: str
    gpus: tuple[int, ...]          # () = every GPU of the node
    to: str                        # who has the cards: the owner's user name
    since: float
    until: float | None = None     # a yield by hand with --for ends then; None: at `ugro unyield`
    auto: bool = False             # taken by the watch for a process ugro did not start
    force: bool = False            # jobs that are not preemptible stop too
    why: str = ""                  # "ollie's game took 2.0 GB on gpu2:0", "by hand"
    gone_at: float | None = None   # auto: when that process left; the cards come back yield_idle_minutes later

    def covers(self, node: str, gpu: int) -> bool:
        return node == self.node and (not self.gpus or gpu in self.gpus)

    def ends_at(self, idle_s: float) -> float | None:
        if self.auto:
            return self.gone_at + idle_s if self.gone_at is not None else None
        return self.until

    def cards(self) -> str:
        return f"{self.node}:{','.join(map(str, self.gpus))}" if self.gpus else f"{self.node} (every GPU)"

    def describe(self, idle_s: float) -> str:
        """"yielded to ollie until 22:40": what the node card, the header and a job's reason say."""
        end = self.ends_at(idle_s)
        if end is not None:
            return f"yielded to {self.to} until {time.strftime('%H:%M', time.localtime(end))}"
        return f"yielded to {self.to}" + (" while its process runs" if self.auto else "")

    def to_json(self, idle_s: float) -> dict[str, Any]:
        return {"node": self.node, "gpus": list(self.gpus), "to": self.to, "since": self.since,
                "until": self.ends_at(idle_s), "auto": self.auto, "force": self.force, "why": self.why}


def _from(doc: Any) -> Yield | None:
    """One stored yield, or None for an entry that is not one (a hand-edited file): it is dropped, not fatal."""
    try:
        gpus = tuple(int(g) for g in doc.get("gpus", ()))
        until, gone = doc.get("until"), doc.get("gone_at")
        return Yield(str(doc["node"]), gpus, str(doc["to"]), float(doc["since"]),
                     float(until) if until is not None else None, bool(doc.get("auto")), bool(doc.get("force")),
                     str(doc.get("why") or ""), float(gone) if gone is not None else None)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


class YieldBook:
    """The yields file of one job store (`yields.json` beside `active.json`)."""

    def __init__(self, root: Path) -> None:
        self.path = root / "yields.json"
        self.lock_path = root / "yields.lock"
        self.problem = ""  # an unreadable file met by the last read, in one line

    def read(self) -> list[Yield]:
        """The yields in effect as stored; an unreadable file is set aside (named in `problem`) and read as none."""
        self.problem = ""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            docs = json.loads(raw)
            if not isinstance(docs, list):
                raise ValueError("not a list of yields")
        except ValueError as exc:
            aside = self.path.with_name(f"yields.json.bad-{int(time.time())}")
            with contextlib.suppress(OSError):
                self.path.replace(aside)
            self.problem = f"{self.path} was unreadable ({exc}); set aside as {aside.name}, no GPU is yielded now"
            return []
        return [y for y in map(_from, docs) if y is not None]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def change(self, fn: Callable[[list[Yield]], list[Yield]]) -> tuple[list[Yield], list[Yield]]:
        """Read, change and write back under the lock; returns (before, after)."""
        with self._locked():
            before = self.read()
            after = fn(list(before))
            if after != before:
                write_atomic(self.path, json.dumps([dataclasses.asdict(y) for y in after], indent=1).encode(),
                             mode=0o600)
            return before, after


def yielded(yields: Sequence[Yield], node: str, gpu: int) -> Yield | None:
    return next((y for y in yields if y.covers(node, gpu)), None)


def expired(yields: list[Yield], now: float, idle_s: float) -> list[Yield]:
    """The yields whose end has come: a --for that ran out, an auto yield whose process left long enough ago."""
    return [y for y in yields if (end := y.ends_at(idle_s)) is not None and end <= now]


def hits(job_placement: tuple[tuple[str, tuple[int, ...]], ...], yields: list[Yield]) -> Yield | None:
    """The first yield covering a card the job holds."""
    for node, gpus in job_placement:
        for gpu in gpus:
            found = yielded(yields, node, gpu)
            if found is not None:
                return found
    return None


def take(yields: list[Yield], new: Yield) -> list[Yield]:
    """`new` in effect: on its cards it replaces what was there (a hand-made yield wins over the watch's)."""
    keep = [y for y in yields if y.node != new.node or (y.gpus and new.gpus and not set(y.gpus) & set(new.gpus))]
    return [*keep, new]


def give_back(yields: list[Yield], node: str, gpus: tuple[int, ...] = ()) -> list[Yield]:
    """`ugro unyield NODE [--gpus]`: the node's yields (on those GPUs) end now."""
    out = []
    for y in yields:
        if y.node != node:
            out.append(y)
        elif gpus and y.gpus and set(y.gpus) - set(gpus):
            out.append(dataclasses.replace(y, gpus=tuple(g for g in y.gpus if g not in gpus)))
    return out
