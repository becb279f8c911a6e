"""A working tree as a manifest: what is sent (ignore rules applied), each file's size, mode and content hash.

`.ugroignore` (gitignore syntax) when the tree has one, else `.gitignore` plus `.git/`; `.git/` is sent only when
asked. Symlinks inside the tree travel as links; one pointing outside it is refused, naming it. The tree's hash is
the hash of its manifest, so the same content is the same folder on every node.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pathspec

from ugro_tui.atomic import write_atomic
from ugro_tui.errors import UgroError


class SyncError(UgroError):
    """The tree cannot be sent as it is; the message names the file (and the node, for a copy)."""

    exit_code = 2


@dataclass(frozen=True)
class Entry:
    path: str            # relative, with "/"
    kind: str            # "f" file, "l" symlink
    size: int = 0
    mode: int = 0o644
    sha256: str = ""
    target: str = ""     # a symlink's target, as written

    @property
    def key(self) -> str:
        """The object a file is stored as on a node: its content, and whether it is executable (a hard link
        shares its mode, so the two kinds never share an object)."""
        return self.sha256 + ("x" if self.mode & 0o111 else "")

    def to_json(self) -> list[Any]:
        return [self.path, self.kind, self.size, self.mode, self.sha256, self.target]

    @classmethod
    def from_json(cls, row: list[Any]) -> Entry:
        return cls(str(row[0]), str(row[1]), int(row[2]), int(row[3]), str(row[4]), str(row[5]))


@dataclass
class Tree:
    root: Path
    entries: list[Entry]
    excluded: list[str] = field(default_factory=list)  # top-level names left out, with why ("data/ (.gitignore)")
    rules: str = ""

    @property
    def hash(self) -> str:
        doc = json.dumps([e.to_json() for e in self.entries], separators=(",", ":"))
        return hashlib.sha256(doc.encode()).hexdigest()[:20]

    @property
    def files(self) -> list[Entry]:
        return [e for e in self.entries if e.kind == "f"]

    @property
    def size(self) -> int:
        return sum(e.size for e in self.files)

    def largest(self, count: int = 5) -> list[Entry]:
        return sorted(self.files, key=lambda e: -e.size)[:count]

    def summary(self) -> str:
        """Files, bytes, the largest files and what was left out: shown before a copy, and when one is refused."""
        big = ", ".join(f"{e.path} ({human(e.size)})" for e in self.largest(3))
        out = f"{len(self.files)} files, {human(self.size)} from {self.root} ({self.rules})"
        if big:
            out += f"; largest: {big}"
        if self.excluded:
            shown = ", ".join(self.excluded[:6]) + (f" and {len(self.excluded) - 6} more" if len(self.excluded) > 6
                                                    else "")
            out += f"; left out: {shown}"
        return out

    def manifest(self, name: str = "") -> dict[str, Any]:
        return {"hash": self.hash, "name": name, "entries": [e.to_json() for e in self.entries]}


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _rules(root: Path, include_git: bool) -> tuple[pathspec.GitIgnoreSpec, str]:
    for name in (".ugroignore", ".gitignore"):
        path = root / name
        if not path.is_file():
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SyncError(f"{path}: cannot read it: {exc}") from None
        for number, line in enumerate(lines, 1):
            try:
                pathspec.GitIgnoreSpec.from_lines([line])
            except Exception as exc:  # pathspec raises its own error types for a bad pattern
                raise SyncError(f"{path}: line {number}: invalid pattern {line!r} ({exc})") from None
        if name == ".gitignore" and not include_git:
            lines = [*lines, ".git/"]
        return pathspec.GitIgnoreSpec.from_lines(lines), name + (
            "" if name == ".ugroignore" or include_git else " and .git/")
    if include_git:
        return pathspec.GitIgnoreSpec.from_lines([]), "no ignore file"
    return pathspec.GitIgnoreSpec.from_lines([".git/"]), "no ignore file; .git/ left out"


class HashCache:
    """Content hashes by (path, size, mtime, inode): a second scan of an unchanged tree reads no file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.known: dict[str, list[Any]] = {}
        self.changed = False
        if path is not None:
            try:
                self.known = json.loads(path.read_text())
            except (OSError, ValueError):
                self.known = {}

    def get(self, full: Path, st: os.stat_result, seen: Callable[[str, bytes], None] | None = None) -> str:
        """The file's sha256; on a miss the file is read once, and `seen(digest, content)` gets what was read
        (so keeping the tree costs no second read)."""
        key = str(full)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        hit = self.known.get(key)
        if hit is not None and hit[:3] == stamp:
            return str(hit[3])
        try:
            with open(full, "rb") as f:
                content = f.read()
        except OSError as exc:
            raise SyncError(f"{full}: cannot read it: {exc.strerror or exc}") from None
        digest = hashlib.sha256(content).hexdigest()
        if len(content) != st.st_size:
            raise SyncError(f"{full}: changed while it was being read; try again")
        self.known[key] = [*stamp, digest]
        self.changed = True
        if seen is not None:
            seen(digest + ("x" if st.st_mode & 0o111 else ""), content)
        return digest

    def save(self) -> None:
        if self.path is None or not self.changed:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(self.known), durable=False)  # a cache: losing it costs one rescan


def scan(root: str | os.PathLike[str], *, include_git: bool = False, cache: HashCache | None = None,
         seen: Callable[[str, bytes], None] | None = None) -> Tree:
    """The tree under `root` as it would be sent; `seen(key, content)` gets each file the scan had to read."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise SyncError(f"{root}: no such directory" if not base.exists() else f"{root}: not a directory")
    base = base.resolve()
    spec, rules = _rules(base, include_git)
    cache = cache or HashCache(None)
    entries: list[Entry] = []
    excluded: list[str] = []
    for folder, dirs, files in os.walk(base):
        rel_dir = os.path.relpath(folder, base)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        for d in sorted(dirs):
            full = Path(folder) / d
            rel = rel_dir + d
            if spec.match_file(rel + "/"):
                dirs.remove(d)
                excluded.append(rel + "/")
            elif full.is_symlink():  # os.walk does not descend into it: it travels as a link
                dirs.remove(d)
                entries.append(_link(base, full, rel))
        dirs.sort()
        for name in sorted(files):
            full = Path(folder) / name
            rel = rel_dir + name
            if spec.match_file(rel):
                excluded.append(rel)
                continue
            try:
                st = os.lstat(full)
            except OSError as exc:
                raise SyncError(f"{full}: cannot read it: {exc.strerror or exc}") from None
            if stat.S_ISLNK(st.st_mode):
                entries.append(_link(base, full, rel))
            elif stat.S_ISREG(st.st_mode):
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                entries.append(Entry(rel, "f", st.st_size, mode, cache.get(full, st, seen)))
            # sockets, fifos and devices are not code: left out
    cache.save()
    entries.sort(key=lambda e: e.path)
    return Tree(base, entries, excluded, rules)


def _link(base: Path, full: Path, rel: str) -> Entry:
    target = os.readlink(full)
    resolved = (full.parent / target).resolve()
    if resolved != base and base not in resolved.parents:
        raise SyncError(f"{full}: a symlink pointing outside the tree ({target}); copy what it points to into the "
                        "tree, or leave it out with an ignore rule")
    return Entry(rel, "l", target=target)
