"""Edit cluster.toml in place: add, change or remove a node, keeping every comment and the user's layout.

tomli-w writes TOML from plain data, so a round trip through it drops comments, blank lines and key order.
tomlkit keeps the parsed document (comments and whitespace included) and changes only what is asked."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table, Whitespace

from ugro_tui.atomic import write_atomic
from ugro_tui.config import NODE_KEYS, Cluster, parse_cluster
from ugro_tui.errors import ConfigError, UsageError

EDITABLE = ("name", "host", "port", "user", "identity_file", "python", "workdir", "labels", "socket_ifname")


def _read(path: Path) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), None, "file not found") from None
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(str(path), None, f"invalid TOML: {exc}") from None


def _nodes(doc: tomlkit.TOMLDocument) -> AoT:
    nodes = doc.get("nodes")
    if nodes is None:
        doc.append("nodes", tomlkit.aot())
        nodes = doc["nodes"]
    if not isinstance(nodes, AoT):
        raise UsageError("cluster.toml: nodes is not a list of [[nodes]] tables; edit it by hand")
    return nodes


def _index(nodes: AoT, name: str, source: str) -> int:
    for i, table in enumerate(nodes):
        if table.get("name") == name:
            return i
    known = ", ".join(str(t.get("name")) for t in nodes)
    raise UsageError(f"{source}: no node {name!r} (nodes: {known})")


def _set(table: Table, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if key not in NODE_KEYS:
            raise UsageError(f"unknown node setting {key!r}; known: {', '.join(NODE_KEYS)}")
        if value is None or value == "" or value == []:
            if key in table:
                del table[key]
        else:
            table[key] = value


def _save(path: Path, doc: tomlkit.TOMLDocument) -> Cluster:
    """Validate the edited text as ugro would load it; only then replace the file (atomically)."""
    text = tomlkit.dumps(doc)
    cluster = parse_cluster(tomllib.loads(text), str(path))
    write_atomic(path, text)
    return cluster


def add_node(path: str | os.PathLike[str], values: dict[str, Any]) -> Cluster:
    path = Path(path)
    doc = _read(path)
    nodes = _nodes(doc)
    name = values.get("name")
    if any(t.get("name") == name for t in nodes):
        raise UsageError(f"{path}: a node named {name!r} exists already (edit or remove it)")
    table = tomlkit.table()
    table.trivia.indent = "\n"  # a blank line before the new [[nodes]], like the ones a person writes
    ordered = sorted(values.items(), key=lambda kv: NODE_KEYS.index(kv[0]) if kv[0] in NODE_KEYS else len(NODE_KEYS))
    _set(table, {k: v for k, v in ordered if v not in (None, "", [])})
    nodes.append(table)
    return _save(path, doc)


def update_node(path: str | os.PathLike[str], name: str, values: dict[str, Any]) -> Cluster:
    path = Path(path)
    doc = _read(path)
    nodes = _nodes(doc)
    table = nodes[_index(nodes, name, str(path))]
    new_name = values.get("name", name)
    if new_name != name and any(t.get("name") == new_name for t in nodes):
        raise UsageError(f"{path}: a node named {new_name!r} exists already")
    _set(table, values)
    return _save(path, doc)


def remove_node(path: str | os.PathLike[str], name: str) -> Cluster:
    path = Path(path)
    doc = _read(path)
    nodes = _nodes(doc)
    i = _index(nodes, name, str(path))
    if len(nodes) == 1:
        raise UsageError(f"{path}: {name!r} is the only node; a cluster needs at least one")
    del nodes[i]
    if i == len(nodes) and i > 0:
        _drop_trailing_blank_line(nodes[i - 1])  # the one add_node put before the table just removed
    return _save(path, doc)


def _drop_trailing_blank_line(table: Table) -> None:
    body = table.value.body
    if body and body[-1][0] is None and isinstance(body[-1][1], Whitespace) and not body[-1][1].s.strip("\n"):
        body.pop()
