"""Checkpoints: find them on a job's nodes, say which are complete, choose what to keep and what to resume from.

The convention: a checkpoint is an entry of the job's checkpoint dir whose name holds its step (`step-000120`,
`epoch_3`, `ckpt-120.pt`: the last number in the name). A directory is complete once it holds a `.complete` marker;
a file once it was renamed into place (a name ending `.tmp` is never complete). Names without a number are listed
and never pruned."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace

from ugro_tui.core.folders import FOLDER_ID, claim_line, parse_id
from ugro_tui.core.jobs.early_stop import value_at
from ugro_tui.core.jobs.model import Job
from ugro_tui.core.transport import path_word

_STEP_RE = re.compile(r"(\d+)(?!.*\d)")
MARKER = ".complete"


@dataclass(frozen=True)
class Checkpoint:
    node: str
    path: str                 # absolute, on the node
    step: int | None
    bytes: int
    mtime: float
    complete: bool
    metric: float | None = None
    folder: str = ""              # the checkpoint dir's own id (FOLDER_ID): the same on nodes that share it
    seen_by: tuple[str, ...] = ()  # the other nodes that see this very entry (a folder they share)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every node that has this checkpoint in its checkpoint dir."""
        return (self.node, *self.seen_by)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def size_text(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def step_of(name: str) -> int | None:
    found = _STEP_RE.search(name)
    return int(found.group(1)) if found else None


def list_script(directory: str, folder_id: str = "") -> str:
    """Prints the dir's absolute path and its folder id, then `complete<TAB>bytes<TAB>mtime<TAB>name` per entry
    (nothing if absent). `folder_id`: linked into place as the dir's id unless it has one (so of several nodes that
    share the folder and list it at once, exactly one writes it and all read the same)."""
    return "\n".join([
        f"cd {path_word(directory)} 2>/dev/null || exit 0",
        "pwd",
        claim_line(folder_id) if folder_id else f"printf 'folder\\t%s\\n' \"$(head -c 64 {FOLDER_ID} 2>/dev/null)\"",
        "for e in * .[!.]*; do",
        "  [ -e \"$e\" ] || continue",
        f"  case $e in {MARKER}|{FOLDER_ID}|{FOLDER_ID}.*) continue;; esac",
        "  if [ -d \"$e\" ]; then c=0; [ -f \"$e/" + MARKER + "\" ] && c=1",
        # printf %.0f: mawk prints sums past 2^31 as 2.1e+09, which hid every checkpoint over 2 GB
        "    b=$(find \"$e\" -type f -printf '%s\\n' | awk '{s+=$1} END {printf \"%.0f\\n\", s}')",
        "  else c=1; case $e in *.tmp) c=0;; esac; b=$(stat -c %s \"$e\"); fi",
        "  printf '%s\\t%s\\t%s\\t%s\\n' \"$c\" \"$b\" \"$(stat -c %Y \"$e\")\" \"$e\"",
        "done",
    ])


def parse_listing(node: str, text: str) -> list[Checkpoint]:
    lines = text.splitlines()
    if not lines:
        return []
    root = lines[0].rstrip("/")
    folder = ""
    out = []
    for line in lines[1:]:
        found = parse_id(line)
        if found is not None:
            folder = found
            continue
        parts = line.split("\t", 3)
        if len(parts) != 4 or not parts[1].isdecimal():
            continue
        complete, size, mtime, name = parts
        try:
            when = float(mtime)
        except ValueError:
            when = 0.0
        out.append(Checkpoint(node, f"{root}/{name}", step_of(name), int(size), when, complete == "1"))
    return sorted((replace(c, folder=folder) for c in out), key=lambda c: (c.step is None, c.step or 0, c.name))


def merge_shared(checkpoints: Iterable[Checkpoint]) -> list[Checkpoint]:
    """One entry per checkpoint: nodes whose dir has the same folder id see one folder (NFS, a shared home), so
    the entry listed by the first of them names the others in `seen_by`."""
    out: list[Checkpoint] = []
    first: dict[tuple[str, str], int] = {}
    for c in checkpoints:
        key = (c.folder, c.name)
        if not c.folder or key not in first:
            if c.folder:
                first[key] = len(out)
            out.append(c)
            continue
        kept = out[first[key]]
        if c.node not in kept.nodes:
            out[first[key]] = replace(kept, seen_by=(*kept.seen_by, c.node))
    return out


def with_metric(checkpoints: Iterable[Checkpoint], history: Sequence[tuple[int, float, float]]) -> list[Checkpoint]:
    """Each checkpoint with the job's metric at its step (the value reported at that step, or the last before)."""
    out = []
    for c in checkpoints:
        value = value_at(history, c.step) if c.step is not None and history else None
        out.append(replace(c, metric=value))
    return out


def newest_complete(checkpoints: Iterable[Checkpoint], step: int | None = None) -> Checkpoint | None:
    """The newest complete checkpoint with a step (or the one at `step`)."""
    found = [c for c in checkpoints if c.complete and c.step is not None and (step is None or c.step == step)]
    return max(found, key=lambda c: (c.step, c.mtime)) if found else None


def whole(checkpoints: Iterable[Checkpoint], nodes: Iterable[str]) -> list[Checkpoint]:
    """One checkpoint per step that is complete on every one of `nodes` (each wrote its own part of it), newest
    first; with no nodes, every complete one."""
    found = list(checkpoints)
    wanted = set(nodes)
    complete_on: dict[str, set[str]] = {}
    for c in found:
        if c.complete and c.step is not None:
            complete_on.setdefault(c.name, set()).update(c.nodes)
    out: dict[str, Checkpoint] = {}
    for c in sorted(found, key=lambda c: (c.node != min(wanted, default=c.node), -c.mtime)):
        if c.complete and c.step is not None and wanted <= complete_on[c.name]:
            out.setdefault(c.name, c)  # the first node of the attempt's copy when it has one
    return sorted(out.values(), key=lambda c: (c.step or 0, c.mtime), reverse=True)


def newest_everywhere(checkpoints: Iterable[Checkpoint], nodes: Iterable[str], step: int | None = None
                      ) -> Checkpoint | None:
    """The newest checkpoint complete on every one of `nodes`, or the one at `step` if it is."""
    return next((c for c in whole(checkpoints, nodes) if step is None or c.step == step), None)


def to_prune(checkpoints: Sequence[Checkpoint], *, keep_last: int, keep_best: int, goal: str,
             protected: Iterable[str] = (), nodes: Iterable[str] = ()) -> list[Checkpoint]:
    """What retention deletes, per folder (a node's own, or one that nodes share, listed once): complete
    checkpoints with a step beyond the newest `keep_last` and the best `keep_best` (by the metric at their step).
    Never the newest complete one, one a running attempt resumed from (`protected` names), an incomplete one (it
    may be being written) or one whose name has no step.

    With the attempt's `nodes`, only whole checkpoints (complete on every one of them) count and are kept, and
    none newer than the newest kept whole one is deleted: a node that ran ahead keeps what the others still
    need, so a retry can always resume."""
    if keep_last <= 0 and keep_best <= 0:
        return []
    keep_names = set(protected)
    wanted = list(nodes)
    if wanted:
        everywhere = whole(checkpoints, wanted)
        keep_names |= {c.name for c in everywhere[:max(1, keep_last)]}
        keep_names |= {c.name for c in _best(everywhere, keep_best, goal)}
        newest = everywhere[0].step or 0 if everywhere else -1
        keep_names |= {c.name for c in checkpoints if c.step is not None and c.step > newest}
    out: list[Checkpoint] = []
    for folder in sorted({c.folder or c.node for c in checkpoints}):
        mine = [c for c in checkpoints if (c.folder or c.node) == folder and c.complete and c.step is not None]
        by_step = sorted(mine, key=lambda c: c.step or 0, reverse=True)
        keep = set() if wanted else {c.path for c in by_step[:max(1, keep_last)]} | {
            c.path for c in _best(mine, keep_best, goal)}
        out += [c for c in by_step if c.path not in keep and c.name not in keep_names and c.path not in keep_names]
    return out


def _best(checkpoints: Iterable[Checkpoint], count: int, goal: str) -> list[Checkpoint]:
    """The `count` best by their metric (lowest for goal min); those without one never count."""
    scored = [c for c in checkpoints if c.metric is not None and c.metric == c.metric]
    return sorted(scored, key=lambda c: c.metric if goal == "min" else -(c.metric or 0.0))[:count]


def remove_script(paths: Iterable[str]) -> str:
    """Deletes exactly these entries (absolute paths from a listing); the marker first, so a half-deleted
    checkpoint is never taken as complete."""
    lines = []
    for path in paths:
        quoted = shlex.quote(path)
        lines.append(f"rm -f {shlex.quote(path + '/' + MARKER)} 2>/dev/null; rm -rf -- {quoted}")
    return "\n".join(lines) + "\ntrue"


def resumable(job: Job, found: list[Checkpoint]) -> list[Checkpoint]:
    """What a new attempt can resume from, newest first: checkpoints complete on every node of the last
    attempt that answered (each node wrote its own part; one complete on only some cannot be resumed)."""
    answered = {c.node for c in found}
    return whole(found, [n for n in job.ran_on if n in answered])


def resume_choice(job: Job, found: list[Checkpoint], step: int | None) -> Checkpoint | None:
    """The checkpoint a retry resumes from: the newest whole one, or the one at `step`."""
    return next((c for c in resumable(job, found) if step is None or c.step == step), None)
