"""Rank logs: copy each node's console log to the state dir from where the copy ends, and split it by rank.

The local copy's size *is* the offset into the node's log, so a follower that restarts (a new app, a new
`ugro logs -f`) carries on exactly where the copy ends: no line is duplicated or lost. A lock on the copy lets
several followers share it. torchrun prefixes every worker line with `[rankN]:` (its global rank, through
TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE); lines without the prefix are torchrun's own and go to the node stream.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ugro_tui import paths
from ugro_tui.core.jobs.model import Job
from ugro_tui.core.transport import Transport, path_word

RANK_RE = re.compile(r"^\[rank(\d+)\]:(.*)$")
LOSS_RE = re.compile(r"\bstep[\s:=]+(\d+)\b.*?\bloss[\s:=]+([-+0-9.eE]+|nan|inf)", re.IGNORECASE)
CHUNK = 4 << 20  # bytes fetched per sync at most, so a huge backlog never stalls a follower


def local_dir(job: Job) -> Path:
    return paths.state_dir() / "logs" / f"job-{job.id}-a{job.attempt}"


def local_copy(job: Job, node: str) -> Path:
    return local_dir(job) / f"{node}.log"


_in_process: dict[Path, asyncio.Lock] = {}


async def sync_node(transport: Transport, job: Job, node: str, run_dir: str) -> bytes:
    """Fetch what the node's console log has beyond our copy; append it to the copy; return the new bytes.

    Followers in one process (the dispatcher and the Logs view) take turns on an asyncio lock; other processes
    on a non-blocking flock, polled, so the event loop never waits on a lock another await holds."""
    path = local_copy(job, node)
    path.parent.mkdir(parents=True, exist_ok=True)
    async with _in_process.setdefault(path, asyncio.Lock()), _file_lock(path) as copy:
        offset = copy.seek(0, 2)
        remote = path_word(f"{run_dir}/console.log")
        done = await transport.run(f"tail -c +{offset + 1} {remote} 2>/dev/null | head -c {CHUNK}")
        data = done.raw  # bytes as sent: decoding first would shift the offset on any invalid UTF-8
        if data:
            copy.write(data)
            copy.flush()
        return data


class CopyReader:
    """Reads a job's local log copies from where this reader left off.

    Several followers fill one copy (the dispatcher, the Logs view, `ugro logs -f`), and each sync returns only
    the bytes *it* fetched, so a reader takes what the copy has, never what its own sync happened to get."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._offsets: dict[str, int] = {}
        self._decoders: dict[str, codecs.IncrementalDecoder] = {}

    def read_new(self, node: str) -> str:
        offset = self._offsets.get(node, 0)
        try:
            with open(local_copy(self.job, node), "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return ""
        self._offsets[node] = offset + len(data)
        decoder = self._decoders.setdefault(node, codecs.getincrementaldecoder("utf-8")("replace"))
        return decoder.decode(data)  # a character split across two reads stays whole


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[BinaryIO]:
    with open(path, "ab") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.02)
        try:
            yield f
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class Stream:
    """One pane's worth of lines, bounded."""

    name: str
    lines: deque[str]


@dataclass
class RankDemux:
    """Splits node output into per-rank streams and per-node streams; memory stays bounded."""

    max_lines: int = 5000
    ranks: dict[int, Stream] = field(default_factory=dict)
    nodes: dict[str, Stream] = field(default_factory=dict)
    rank_losses: dict[int, deque[tuple[int, float]]] = field(default_factory=dict)
    _carry: dict[str, str] = field(default_factory=dict)

    def feed(self, node: str, data: str) -> list[tuple[str, str]]:
        """Add text from a node; returns (stream key, line) for each complete new line."""
        text = self._carry.pop(node, "") + data
        *complete, rest = text.split("\n")
        if rest:
            self._carry[node] = rest
        out = []
        for line in complete:
            key, body = self.route(node, line.rstrip("\r"))
            out.append((key, body))
        return out

    @property
    def losses(self) -> deque[tuple[int, float]]:
        """(step, loss) of the lowest rank that reports a loss: the training-health curve."""
        return self.rank_losses[min(self.rank_losses)] if self.rank_losses else deque()

    def flush(self, node: str) -> str:
        """A newline if a last line without one is pending (the log ended mid-line), so it is not lost."""
        return "\n" if self._carry.get(node) else ""

    def route(self, node: str, line: str) -> tuple[str, str]:
        m = RANK_RE.match(line)
        if m:
            rank = int(m.group(1))
            body = m.group(2)
            stream = self.ranks.get(rank)
            if stream is None:
                stream = self.ranks[rank] = Stream(f"rank {rank}", deque(maxlen=self.max_lines))
            stream.lines.append(body)
            loss = LOSS_RE.search(body)
            if loss:
                with contextlib.suppress(ValueError):
                    self.rank_losses.setdefault(rank, deque(maxlen=2000)).append(
                        (int(loss.group(1)), float(loss.group(2))))
            return f"rank{rank}", body
        stream = self.nodes.get(node)
        if stream is None:
            stream = self.nodes[node] = Stream(node, deque(maxlen=self.max_lines))
        stream.lines.append(line)
        return f"node:{node}", line
