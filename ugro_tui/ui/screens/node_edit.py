"""The node editor ("add machines"): add or change a node, test the connection first, save to cluster.toml.

Saving edits cluster.toml in place (comments kept, see config_edit.py); the app then follows the new node list
at once, without a restart."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, Static

from ugro_tui.config import Node, parse_node
from ugro_tui.errors import ConfigError, UgroError
from ugro_tui.ui.read_only import ReadOnlyAware
from ugro_tui.ui.widgets.dialogs import Field, leave_asking
from ugro_tui.ui.workers import ReportsWorkerFailures

FIELDS = (  # (key, label, placeholder)
    ("name", "name", "gpu3"),
    ("host", "host", "a host name, address or ~/.ssh/config alias"),
    ("port", "port", "22"),
    ("user", "user", "default: yours (or ~/.ssh/config)"),
    ("identity_file", "identity file", "default: your agent and keys"),
    ("python", "python", "python3, or ~/miniconda3/envs/torch/bin/python"),
    ("workdir", "workdir", "~/ugro"),
    ("labels", "labels", "worker,big (comma-separated)"),
    ("socket_ifname", "socket ifname", "enp5s0 (NCCL_SOCKET_IFNAME)"),
)


class NodeEditScreen(ReadOnlyAware, ReportsWorkerFailures, Screen[None]):
    AUTO_FOCUS = "#n-name"
    DEFAULT_CSS = """
    NodeEditScreen #title { height: 1; padding: 0 1; background: $panel; }
    NodeEditScreen #fields { height: auto; max-height: 1fr; padding: 0 1; }
    NodeEditScreen .error { color: $error; padding: 0 0 0 16; height: auto; }
    NodeEditScreen #test { height: 1fr; border-top: solid $primary 50%; padding: 0 1; }
    """
    BINDINGS = [
        Binding("ctrl+t", "test", "Test connection", id="node.test"),
        Binding("ctrl+y", "trust", "Trust key", id="node.trust"),
        Binding("ctrl+s", "save", "Save", id="node.save", priority=True),
        Binding("escape", "leave", "Cancel", id="node.cancel"),
    ]

    def __init__(self, node: Node | None = None) -> None:
        super().__init__()
        self.original = node
        self.initial = self._values_of(node)
        self.node: Node | None = None
        self.pending_fingerprint: str | None = None
        self.testing = False

    @staticmethod
    def _values_of(node: Node | None) -> dict[str, str]:
        if node is None:
            return {key: "" for key, _, _ in FIELDS}
        return {"name": node.name, "host": node.host, "port": str(node.port or ""), "user": node.user or "",
                "identity_file": node.identity_file or "", "python": "" if node.python == "python3" else node.python,
                "workdir": "" if node.workdir == "~/ugro" else node.workdir, "labels": ",".join(node.labels),
                "socket_ifname": node.socket_ifname or ""}

    def compose(self) -> ComposeResult:
        yield Static("", id="title")
        with VerticalScroll(id="fields"):
            for key, label, placeholder in FIELDS:
                with Field():
                    yield Label(label)
                    yield Input(self.initial[key], placeholder=placeholder, id=f"n-{key}", compact=True)
                yield Static("", id=f"err-{key}", classes="error")
        yield Static("", id="test")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#test").border_title = "connection"
        self.validate()
        self._show_test(Text("ctrl+t connects to the node and reads its GPUs before you save", style="italic"))

    # --- values ---------------------------------------------------------------------------------------------

    def values(self) -> dict[str, str]:
        return {key: self.query_one(f"#n-{key}", Input).value.strip() for key, _, _ in FIELDS}

    def table(self) -> dict:
        """The [[nodes]] table as it will be saved; empty fields are left out (the defaults apply)."""
        v = self.values()
        out: dict = {k: v[k] for k in ("name", "host", "user", "identity_file", "python", "workdir",
                                         "socket_ifname") if v[k]}
        if v["port"]:
            out["port"] = int(v["port"]) if v["port"].isdigit() else v["port"]
        if v["labels"]:
            out["labels"] = [x.strip() for x in v["labels"].split(",") if x.strip()]
        return out

    @on(Input.Changed)
    def validate(self) -> None:
        for key, _, _ in FIELDS:
            self.query_one(f"#err-{key}", Static).display = False
        self.node = None
        problem = None
        cluster = self.app.cluster
        index = len(cluster.nodes) if self.original is None else [n.name for n in cluster.nodes].index(
            self.original.name)
        taken = {n.name for n in cluster.nodes} - ({self.original.name} if self.original else set())
        try:
            node = parse_node(cluster.source, index, self.table())
        except ConfigError as exc:
            key = (exc.field or "").rsplit(".", 1)[-1]
            problem = (key if key in self.initial else "name", exc.problem)
        else:
            if node.name in taken:
                problem = ("name", f"a node named {node.name} exists already")
            elif self.original is not None:  # what the editor does not show (env, sim, transport) stays as it is
                self.node = replace(node, env=self.original.env, sim=self.original.sim,
                                    transport=self.original.transport)
            else:
                self.node = node
        if self.values()["name"] in taken:  # said first: it is the mistake to fix first
            problem = ("name", f"a node named {self.values()['name']} exists already")
        if problem:
            error = self.query_one(f"#err-{problem[0]}", Static)
            error.update(problem[1])
            error.display = True
        verb = f"edit node {self.original.name}" if self.original else "add a node"
        title = Text.assemble((verb, "bold"), "  ", (f"to {cluster.source}", "italic"))
        if self.node is not None:
            title.append(f"  {self.node.address}", style=self.app.theme_variables.get("success", ""))
        self.query_one("#title", Static).update(title)

    @property
    def edited(self) -> bool:
        return self.values() != self.initial

    # --- test connection ------------------------------------------------------------------------------------

    def action_test(self, accept_new: bool = False) -> None:
        if self.node is None:
            self.notify("fix the fields first", severity="warning", timeout=3)
            return
        if self.testing:
            return
        self.testing = True
        self._show_test(Text(f"connecting to {self.node.address}…"))
        self.run_test_connection(self.node, accept_new)

    def action_trust(self) -> None:
        if self.pending_fingerprint is None:
            self.notify("no unknown host key to trust: test the connection first (ctrl+t)", timeout=3)
            return
        self.action_test(accept_new=True)

    @work(group="node-test", exclusive=True, exit_on_error=False, description="test connection")
    async def run_test_connection(self, node: Node, accept_new: bool) -> None:
        from ugro_tui.core.check import probe_connection

        try:
            found = await probe_connection(node, self.app.cluster, accept_new=accept_new)
        finally:
            self.testing = False
        theme = self.app.theme_variables
        ok_style, bad_style = theme.get("success", ""), theme.get("error", "")
        check = found.check
        self.pending_fingerprint = None
        text = Text()
        if check.ok:
            text.append(f"✓ connected in {check.seconds:.2f}s", style=ok_style)
            text.append("  (no SSH: this machine)\n" if node.is_local else "\n")
            if found.fingerprint:
                text.append(f"host key {found.fingerprint} — "
                            f"{'trusted now, saved to known_hosts' if accept_new else 'matches known_hosts'}\n")
            if found.gpus:
                text.append(f"GPUs: {', '.join(found.gpus)}  (driver {found.driver or '?'})\n")
            else:
                text.append(f"no GPUs found: {found.gpu_error or 'none reported'}\n", style=bad_style)
            text.append("ctrl+s saves it", style="italic")
        elif check.result == "unknown-host-key":
            self.pending_fingerprint = found.fingerprint
            text.append("? this host key is not in known_hosts yet\n", style=bad_style)
            text.append(f"fingerprint {found.fingerprint}\n", style="bold")
            text.append("compare it with the node's (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the node); "
                        "if it matches, ctrl+y trusts it and tests again")
        else:
            text.append(f"✗ {check.result}: {check.detail}\n", style=bad_style)
            if check.result == "host-key-mismatch":
                text.append("the node presents a different key than known_hosts has: ugro never trusts a changed "
                            "key by itself")
        self._show_test(text)

    def _show_test(self, text: Text) -> None:
        self.query_one("#test", Static).update(text)

    # --- save / leave ---------------------------------------------------------------------------------------

    def action_save(self) -> None:
        self.validate()
        if self.node is None:
            self.notify("fix the fields first", severity="error", timeout=4)
            return
        from ugro_tui import config_edit

        path = Path(self.app.cluster.source)
        try:
            if self.original is None:
                cluster = config_edit.add_node(path, self.table())
            else:
                cleared = {key: None for key in ("port", "user", "identity_file", "python", "workdir", "labels",
                                                 "socket_ifname")}
                cluster = config_edit.update_node(path, self.original.name, cleared | self.table())
        except UgroError as exc:
            self.notify(f"not saved: {exc}", severity="error", timeout=8)
            return
        self.notify(f"saved {self.node.name} to {path}", timeout=4)
        self.dismiss()
        self.app.use_cluster(cluster)

    def action_leave(self) -> None:
        leave_asking(self, self.edited, "Discard the changes to this node?")
