"""Rank logs, exact: copy each node's log files to the state dir from where each copy ends, and split them by rank.

torchrun writes every local rank's stdout and stderr to files of their own under `--log-dir`
(`torchrun/<run id>_<random>/attempt_0/<local rank>/stdout.log`, `stderr.log`). Those files hold every byte the rank
wrote, in order, however it split its writes; the console (`console.log`) does not, since `--tee` copies partial
lines as it reads them. So rank streams come from the per-rank files, and the console gives torchrun's own lines plus
the map from local to global rank: the tee prefix `[rank${rank}.${local_rank}]:` names both.

Every local copy's size *is* the offset into its remote file, so a follower that restarts (a new app, a new
`ugro logs -f`) carries on exactly where the copy ends: no byte is duplicated or lost. One lock per node's copies
lets several followers share them; all files of a node come in one SSH round trip.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ugro_tui import paths
from ugro_tui.atomic import write_atomic
from ugro_tui.config import Cluster
from ugro_tui.core.jobs.model import Job
from ugro_tui.core.transport import Transport, path_word

TEE_PREFIX = "[rank${rank}.${local_rank}]:"  # torchrun expands both: the global rank and the node-local one
TEE_RE = re.compile(rb"\[rank(\d+)\.(\d+)\]:")
TEE_LINE_RE = re.compile(rb"^\[rank\d+\.\d+\]:")
LEGACY_RANK_RE = re.compile(rb"^\[rank(\d+)\]:")  # consoles written before per-rank files were followed
LOSS_RE = re.compile(r"\bstep[\s:=]+(\d+)\b.*?\bloss[\s:=]+([-+0-9.eE]+|nan|inf)", re.IGNORECASE)
FILE_CHUNK = 2 << 20  # bytes fetched per file per sync at most, so a huge backlog never stalls a follower
STREAMS = ("stdout", "stderr")
_FRAME_RE = re.compile(rb"(console|\d+\.(?:stdout|stderr)) (\d+)\n", re.ASCII)


def read_via(cluster: Cluster, job: Job, node: str) -> str:
    """Which of [[nodes]] reads this job's files on `node`: the node itself where it is one (the SSH backend,
    or Slurm with follow = "node"), else the Slurm login node."""
    if job.slurm is None or cluster.slurm is None:
        return node
    if cluster.slurm.follow == "node" and any(n.name == node for n in cluster.nodes):
        return node
    return cluster.slurm.login


def local_dir(job: Job) -> Path:
    return paths.state_dir() / "logs" / f"job-{job.id}-a{job.attempt}"


def local_copy(job: Job, node: str) -> Path:
    """The copy of a node's console: torchrun's own lines (and, for `command` jobs, everything)."""
    return local_dir(job) / f"{node}.log"


def set_aside(job: Job, node: str) -> None:
    """An elastic job back on a node it left in this attempt: the copies of its earlier part there are kept
    under another name, so the new part's logs (counted from 0 again) are copied from their start."""
    stamp = int(time.time())
    for path in (local_copy(job, node), local_dir(job) / node):
        if path.exists():
            path.rename(path.with_name(f"{path.name}.before-{stamp}"))


def rank_copy(job: Job, node: str, local_rank: int, stream: str) -> Path:
    return local_dir(job) / node / f"{local_rank}.{stream}"


def _rank_map_path(job: Job, node: str) -> Path:
    return local_dir(job) / node / "ranks.json"


def rank_map(job: Job, node: str) -> dict[int, int]:
    """Local rank -> global rank on this node, as far as the console has told so far."""
    return _read_rank_map(job, node)[1]


def _read_rank_map(job: Job, node: str) -> tuple[int, dict[int, int]]:
    """(console bytes already scanned for tee prefixes, local -> global)."""
    try:
        data = json.loads(_rank_map_path(job, node).read_text())
        return int(data["scanned"]), {int(k): int(v) for k, v in data["ranks"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0, {}


def _local_ranks(job: Job, node: str) -> list[int]:
    folder = local_dir(job) / node
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return []
    return sorted({int(n.split(".")[0]) for n in names if n.split(".")[0].isdecimal() and n.isascii()})


def fetch_script(run_dir: str, offsets: dict[str, int]) -> str:
    """One shell script that prints every followed file's new bytes, each framed as `NAME COUNT\\n` + bytes.

    A rank's stream is its files of every torchrun restart in order (`attempt_0`, `attempt_1`, ...: an elastic job
    re-forms its group), read as one: earlier restarts' files never change again, so an offset stays valid (but
    for the rewrite that `r` below handles)."""
    def cases(stream_index: int) -> str:
        ranks = sorted({int(k.split(".")[0]) for k in offsets if k != "console"})
        arms = " ".join(f"{r}) o={offsets.get(f'{r}.{STREAMS[stream_index]}', 0)};;" for r in ranks)
        return f"case $l in {arms} *) o=0;; esac"

    return "\n".join([
        f"cd {path_word(run_dir)} 2>/dev/null || exit 0",
        "f() { n=0; if [ -f \"$2\" ]; then n=$(( $(wc -c < \"$2\") - $3 )); "
        f"[ \"$n\" -gt {FILE_CHUNK} ] && n={FILE_CHUNK}; [ \"$n\" -lt 0 ] && n=0; fi; "
        "printf '%s %s\\n' \"$1\" \"$n\"; [ \"$n\" -eq 0 ] || tail -c +$(($3 + 1)) \"$2\" | head -c \"$n\"; }",
        # r NAME LOCAL_RANK FILE OFFSET: the rank's FILE of every restart as one stream from OFFSET. torchrun names a
        # restart's folder by its failures, so a restart for a node that joined rewrites the newest file: a stream
        # shorter than the copy is such a rewrite, and what was read before it is kept in a skip file (B bytes).
        # Shell builtins where they do (read, a glob in `for`): this runs each round for every stream of a rank.
        # d is the one folder attempt_$i matches, or not a folder when none or two do (`set --` would do it in
        # fewer words, but would overwrite r's own arguments).
        "r() { b=0; [ -f \"torchrun/.ugro-$1\" ] && { read -r b < \"torchrun/.ugro-$1\" || :; }; b=${b:-0}; "
        "t=0; e=0; i=0; fs=''; "
        "while d=; for x in torchrun/*/attempt_$i; do [ -z \"$d\" ] && d=$x || d=' '; done; [ -d \"$d\" ]; "
        "do p=\"$d/$2/$3\"; "
        "if [ -f \"$p\" ]; then fs=\"$fs $p\"; e=$t; t=$((t + $(wc -c < \"$p\"))); fi; i=$((i + 1)); done; "
        "if [ $((b + t)) -lt \"$4\" ]; then b=$(($4 - e)); echo \"$b\" > \"torchrun/.ugro-$1\"; fi; "
        f"n=$((b + t - $4)); [ \"$n\" -gt {FILE_CHUNK} ] && n={FILE_CHUNK}; [ \"$n\" -lt 0 ] && n=0; "
        "printf '%s %s\\n' \"$1\" \"$n\"; [ \"$n\" -eq 0 ] && return; k=$(($4 - b)); "
        "for p in $fs; do s=$(wc -c < \"$p\"); if [ \"$k\" -ge \"$s\" ]; then k=$((k - s)); "
        "else tail -c +$((k + 1)) \"$p\"; k=0; fi; done | head -c \"$n\"; }",
        f"f console console.log {int(offsets.get('console', 0))}",
        "for l in $(for d in torchrun/*/attempt_*/[0-9]*; do [ -d \"$d\" ] && echo \"${d##*/}\"; done | sort -un); do",
        f"  {cases(0)}; r \"$l.stdout\" \"$l\" stdout.log $o",
        f"  {cases(1)}; r \"$l.stderr\" \"$l\" stderr.log $o",
        "done",
        "exit 0",
    ])


def parse_frames(raw: bytes) -> list[tuple[str, bytes]]:
    """The frames of a fetch; a cut-off or malformed tail is dropped (the next sync asks again from the copy)."""
    out = []
    pos = 0
    while pos < len(raw):
        m = _FRAME_RE.match(raw, pos)
        if m is None:
            break
        n = int(m.group(2))
        data = raw[m.end():m.end() + n]
        if len(data) != n:
            break
        out.append((m.group(1).decode(), data))
        pos = m.end() + n
    return out


_in_process: dict[Path, asyncio.Lock] = {}


async def sync_node(transport: Transport, job: Job, node: str, run_dir: str, *, timeout: float = 20.0) -> bytes:
    """Bring every copy of this node's files up to date in one round trip; return the new console bytes.

    Followers in one process (the dispatcher and the Logs view) take turns on an asyncio lock; other processes
    on a non-blocking flock, polled, so the event loop never waits on a lock another await holds."""
    path = local_copy(job, node)
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    async with _in_process.setdefault(path, asyncio.Lock()), _file_lock(path) as copy:
        offsets = await asyncio.to_thread(_offsets, job, node, copy)
        done = await transport.run(fetch_script(run_dir, offsets), timeout=timeout)
        frames = parse_frames(done.raw)  # bytes as sent: decoding first would shift offsets on invalid UTF-8
        return await asyncio.to_thread(_store, job, node, copy, frames)


def _offsets(job: Job, node: str, console: BinaryIO) -> dict[str, int]:
    offsets = {"console": console.seek(0, 2)}
    for r in _local_ranks(job, node):
        for stream in STREAMS:
            with contextlib.suppress(OSError):
                offsets[f"{r}.{stream}"] = rank_copy(job, node, r, stream).stat().st_size
    return offsets


def _store(job: Job, node: str, console: BinaryIO, frames: list[tuple[str, bytes]]) -> bytes:
    new_console = b""
    for name, data in frames:
        if name == "console":
            if data:
                console.write(data)
                console.flush()
                new_console = data
            continue
        local, stream = name.split(".")
        target = rank_copy(job, node, int(local), stream)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "ab") as f:  # an empty file too: it says this local rank exists
            f.write(data)
    _update_rank_map(job, node, console)
    return new_console


def _update_rank_map(job: Job, node: str, console: BinaryIO) -> None:
    """Learn local -> global ranks from the console's tee prefixes while some local rank is still unnamed."""
    scanned, known = _read_rank_map(job, node)
    end = console.seek(0, 2)
    if end <= scanned or all(r in known for r in _local_ranks(job, node)):
        return
    start = max(0, scanned - 32)  # a prefix cut by the last scan's end is read whole this time
    console.seek(start)
    found = dict(known)
    for m in TEE_RE.finditer(console.read(end - start)):
        found.setdefault(int(m.group(2)), int(m.group(1)))
    console.seek(0, 2)
    target = _rank_map_path(job, node)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, json.dumps({"scanned": end, "ranks": {str(k): v for k, v in sorted(found.items())}}),
                 durable=False)  # found again by a rescan if lost


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[BinaryIO]:
    with open(path, "a+b") as f:
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


@dataclass(frozen=True)
class Source:
    """Where bytes came from: a node's console, or one stream of one global rank."""

    node: str
    rank: int | None = None
    stream: str = "console"

    @property
    def pane(self) -> str:
        return f"rank{self.rank}" if self.rank is not None else f"node:{self.node}"


class CopyReader:
    """Reads a job's local copies from where this reader left off (blocking file reads: call it in a thread).

    Several followers fill one set of copies (the dispatcher, the Logs view, `ugro logs -f`), and each sync
    returns only the bytes *it* fetched, so a reader takes what the copies have, never what its own sync got."""

    def __init__(self, job: Job, limit: int | None = None) -> None:
        self.job = job
        self.limit = limit  # bytes at most per file and call (None: all there is); call again for the rest
        self._offsets: dict[Path, int] = {}

    def read_new(self, node: str) -> list[tuple[Source, bytes]]:
        out = []
        data = self._read(local_copy(self.job, node))
        if data:
            out.append((Source(node), data))
        ranks = rank_map(self.job, node)
        for local in _local_ranks(self.job, node):
            if local not in ranks:
                continue  # its global rank is not known yet: read it once it is, from the start
            for stream in STREAMS:
                data = self._read(rank_copy(self.job, node, local, stream))
                if data:
                    out.append((Source(node, ranks[local], stream), data))
        return out

    def _read(self, path: Path) -> bytes:
        offset = self._offsets.get(path, 0)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read() if self.limit is None else f.read(self.limit)
        except FileNotFoundError:
            return b""
        self._offsets[path] = offset + len(data)
        return data


class LineCarry:
    """Complete lines (b"\\n" kept) from chunks of bytes, per source; a line split across chunks stays whole."""

    def __init__(self) -> None:
        self._carry: dict[Source, bytes] = {}

    def feed(self, source: Source, data: bytes) -> list[bytes]:
        data = self._carry.pop(source, b"") + data
        cut = data.rfind(b"\n") + 1
        if cut < len(data):
            self._carry[source] = data[cut:]
        return [line + b"\n" for line in data[:cut - 1].split(b"\n")] if cut else []  # \r ends no line

    def pending(self, source: Source) -> bytes:
        return self._carry.get(source, b"")

    def drain(self) -> list[tuple[Source, bytes]]:
        """What is left without a newline (a log that ended mid-line), so it is not lost."""
        out = [(s, b) for s, b in self._carry.items() if b]
        self._carry.clear()
        return out


def classify_console_line(line: bytes) -> tuple[str, int | None, bytes]:
    """("tee", rank, line): a copy of a rank's output, exact in its own file; ("rank", rank, body): a console from
    before per-rank files were followed; ("node", None, line): torchrun's own."""
    m = TEE_LINE_RE.match(line)
    if m:
        return "tee", None, line
    m = LEGACY_RANK_RE.match(line)
    if m:
        return "rank", int(m.group(1)), line[m.end():]
    return "node", None, line


def shown(line: str) -> str:
    """A line as a pane shows it: a carriage-return progress bar is its last state, not every refresh."""
    line = line.rstrip("\r\n")
    if "\r" in line:
        parts = [p for p in line.split("\r") if p]
        return parts[-1] if parts else ""
    return line


@dataclass
class Stream:
    """One pane's worth of lines, bounded."""

    name: str
    lines: deque[str]


@dataclass
class RankDemux:
    """Turns copies' bytes into per-rank and per-node panes of lines; memory stays bounded."""

    max_lines: int = 5000
    ranks: dict[int, Stream] = field(default_factory=dict)
    nodes: dict[str, Stream] = field(default_factory=dict)
    rank_losses: dict[int, deque[tuple[int, float]]] = field(default_factory=dict)
    live: dict[str, str] = field(default_factory=dict)  # pane -> the line being written now (a progress bar)
    _lines: LineCarry = field(default_factory=LineCarry)
    _decoders: dict[Source, codecs.IncrementalDecoder] = field(default_factory=dict)

    def feed(self, source: Source, data: bytes) -> list[tuple[str, str]]:
        """Add bytes from a source; returns (pane, line) for each complete new line."""
        out = []
        for raw in self._lines.feed(source, data):
            pane, rank = source.pane, source.rank
            if source.rank is None:
                kind, legacy_rank, raw = classify_console_line(raw)
                if kind == "tee":
                    continue
                if kind == "rank":
                    pane, rank = f"rank{legacy_rank}", legacy_rank
            line = shown(self._decode(source, raw))
            self._add(pane, rank, source.node, line)
            out.append((pane, line))
        if source.rank is not None:
            pending = self._lines.pending(source)
            live = shown(pending.decode("utf-8", "replace")) if pending else ""
            if live:
                self.live[source.pane] = live
            else:
                self.live.pop(source.pane, None)
        return out

    def flush(self) -> list[tuple[str, str]]:
        """The last lines of logs that ended without a newline."""
        out = []
        for source, raw in self._lines.drain():
            out += self.feed(source, raw + b"\n")
        return out

    def _decode(self, source: Source, raw: bytes) -> str:
        decoder = self._decoders.setdefault(source, codecs.getincrementaldecoder("utf-8")("replace"))
        return decoder.decode(raw)  # whole lines: a character is never split

    @property
    def losses(self) -> deque[tuple[int, float]]:
        """(step, loss) of the lowest rank that reports a loss: the training-health curve."""
        return self.rank_losses[min(self.rank_losses)] if self.rank_losses else deque()

    def _add(self, pane: str, rank: int | None, node: str, line: str) -> None:
        if rank is not None:
            stream = self.ranks.get(rank)
            if stream is None:
                stream = self.ranks[rank] = Stream(f"rank {rank}", deque(maxlen=self.max_lines))
            stream.lines.append(line)
            loss = LOSS_RE.search(line)
            if loss:
                with contextlib.suppress(ValueError):
                    self.rank_losses.setdefault(rank, deque(maxlen=2000)).append(
                        (int(loss.group(1)), float(loss.group(2))))
            return
        stream = self.nodes.get(node)
        if stream is None:
            stream = self.nodes[node] = Stream(node, deque(maxlen=self.max_lines))
        stream.lines.append(line)
