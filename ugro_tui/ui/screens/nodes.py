"""The Nodes view: a card per node, a row per GPU, the selected GPU's processes."""

from __future__ import annotations

import asyncio

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import Footer, Input

from ugro_tui.core.telemetry.model import GpuSample, NodeStatus
from ugro_tui.errors import UgroError
from ugro_tui.ui.read_only import ReadOnlyAware
from ugro_tui.ui.shown import when_shown
from ugro_tui.ui.widgets.health import HealthBar
from ugro_tui.ui.widgets.node_card import NodeCard
from ugro_tui.ui.widgets.process_table import ProcessTable
from ugro_tui.ui.workers import ReportsWorkerFailures


def card_columns(width: int) -> int:
    """Cards side by side: two from 160 columns, three from 240 (each card keeps its full line of bars)."""
    return 3 if width >= 240 else 2 if width >= 160 else 1


class NodesScreen(ReadOnlyAware, ReportsWorkerFailures, Screen[None]):
    BINDINGS = [
        Binding("j,down", "move(1)", "Next GPU", id="nodes.down", show=False),
        Binding("k,up", "move(-1)", "Prev GPU", id="nodes.up", show=False),
        Binding("slash", "filter", "Filter", id="nodes.filter"),
        Binding("enter", "drill", "Open", id="nodes.drill", show=False),
        Binding("escape", "back", "Back", id="nodes.back", show=False),
        Binding("r", "retry", "Retry", id="nodes.retry"),
        Binding("a", "trust", "Trust key", id="nodes.trust", show=False),
        Binding("K", "signal", "Signal", id="nodes.signal"),
        Binding("d", "session", "Session", id="nodes.session"),
        Binding("Y", "yield_gpu", "Yield", id="nodes.yield", show=False),
        Binding("u", "users", "Users", id="nodes.users", show=False),
        Binding("N", "add_node", "Add node", id="nodes.add"),
        Binding("E", "edit_node", "Edit node", id="nodes.edit", show=False),
        Binding("D", "remove_node", "Remove node", id="nodes.remove", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, NodeCard] = {}
        self.cursor: tuple[str, int] | None = None
        self.drilled: str | None = None
        self._health_dirty = False
        self._user_moved = False
        self._rebuilding = asyncio.Lock()

    def compose(self) -> ComposeResult:
        yield HealthBar(id="health")
        yield Input(placeholder="filter: node, label, GPU model or user:NAME (esc to clear)", id="filter")
        with VerticalScroll(id="cards"):
            for status in self.app.monitor_state.nodes.values():
                card = NodeCard(status, clock=self.app.clock)
                self.cards[status.name] = card
                yield card
        yield ProcessTable(id="processes")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one("#cards").focus()
        self.refresh_health()
        self.action_move(0)
        self.set_interval(min(1.0, self.app.cluster.poll_interval) / 2, self._refresh_health_if_dirty)
        self.set_interval(max(1.0, self.app.cluster.poll_interval), self.read_shares)
        self.read_shares()

    @work(group="shares", exclusive=True, exit_on_error=False, description="read which jobs share which GPUs")
    async def read_shares(self) -> None:
        """The lines under each shared or yielded card: its jobs' declared and used memory (the store's active
        jobs), whom it is yielded to (the yields file); and the yielded GPUs in the header."""
        from ugro_tui.core.jobs.sharing import card_lines
        from ugro_tui.ui.yielding import yield_lines

        jobs = await asyncio.to_thread(self.app.store.active)
        yielded, note = await asyncio.to_thread(yield_lines, self.app)
        if note != getattr(self.app, "yields_note", ""):
            self.app.yields_note = note
            self.refresh_health()
        for name, card in list(self.cards.items()):
            lines = card_lines(jobs, name, card.status.gpus)
            mine = yielded.get(name, {})
            if lines != card.shared or mine != card.yielded:
                card.shared, card.yielded = lines, mine
                card.refresh_status()

    def _refresh_health_if_dirty(self) -> None:
        if self._health_dirty:
            self._health_dirty = False
            self.refresh_health()

    async def rebuild(self) -> None:
        """The cluster's node list changed (the node editor saved): one card per node again."""
        async with self._rebuilding:  # the editor's save and this screen's resume may both ask
            if not self.stale_cards():
                return
            cards = self.query_one("#cards")
            await cards.remove_children()
            self.cards = {status.name: NodeCard(status, clock=self.app.clock)
                          for status in self.app.monitor_state.nodes.values()}
            await cards.mount_all(self.cards.values())
        self.cursor = None
        self.drilled = None
        self.call_after_refresh(self.action_move, 0)
        self.refresh_health()

    async def add_cards(self) -> None:
        """Cards for nodes that appeared (Slurm's), after the others; the cards already shown stay as they are."""
        async with self._rebuilding:
            new = {name: NodeCard(status, clock=self.app.clock)
                   for name, status in self.app.monitor_state.nodes.items() if name not in self.cards}
            if new:
                self.cards.update(new)
                await self.query_one("#cards").mount_all(new.values())
        self.refresh_health()

    def stale_cards(self) -> bool:
        nodes = self.app.monitor_state.nodes
        return list(self.cards) != list(nodes) or any(c.status is not nodes[n] for n, c in self.cards.items())

    def selected_node(self) -> str | None:
        if self.cursor is not None:
            return self.cursor[0]
        if self.drilled is not None:
            return self.drilled
        return next((name for name, card in self.cards.items() if card.display), None)

    def action_add_node(self) -> None:
        from ugro_tui.ui.screens.node_edit import NodeEditScreen

        self.app.push_screen(NodeEditScreen())

    def action_edit_node(self) -> None:
        from ugro_tui.ui.screens.node_edit import NodeEditScreen

        name = self.selected_node()
        if name is not None:
            self.app.push_screen(NodeEditScreen(self.app.cluster.node(name)))

    def action_remove_node(self) -> None:
        from pathlib import Path

        from ugro_tui import config_edit
        from ugro_tui.errors import UgroError
        from ugro_tui.ui.widgets.dialogs import ConfirmScreen

        name = self.selected_node()
        if name is None:
            return
        path = Path(self.app.cluster.source)

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                cluster = config_edit.remove_node(path, name)
            except UgroError as exc:
                self.notify(f"not removed: {exc}", severity="error", timeout=8)
                return
            self.notify(f"removed {name} from {path}", timeout=4)
            self.app.use_cluster(cluster)

        node = self.app.cluster.node(name)
        self.app.push_screen(ConfirmScreen(f"Remove node {name} ({node.address}) from {path}?\n"
                                           "Its running jobs keep running; ugro stops watching it."), answered)

    def on_screen_resume(self) -> None:
        if self.stale_cards():
            self.call_later(self.rebuild)
            return
        for card in self.cards.values():
            card.refresh_status()
        self.refresh_health()

    def on_resize(self, event: Resize) -> None:
        cards = self.query_one("#cards")
        cards.styles.grid_size_columns = card_columns(event.size.width)

    @when_shown
    def node_updated(self, status: NodeStatus) -> None:
        card = self.cards.get(status.name)
        if card is not None and card.is_attached:
            card.refresh_status()
        elif card is None and status.name in self.app.monitor_state.nodes:  # a node Slurm told of: a card for it
            self.call_later(self.add_cards)
            return
        if not self._user_moved:  # until the user moves, the first GPU in config order stays selected
            rows = self.visible_gpus()
            first = (rows[0][0], rows[0][1].index) if rows else None
            if first != self.cursor:
                self.cursor = None
                self.action_move(0)
                self._health_dirty = True
                return
        if self.cursor is not None and self.cursor[0] == status.name:
            self._show_processes()
        self._health_dirty = True  # redrawn by a timer: one repaint for a burst of node updates

    def refresh_health(self) -> None:
        self.query_one(HealthBar).show_app()

    def visible_gpus(self) -> list[tuple[str, GpuSample]]:
        return [(name, gpu) for name, card in self.cards.items() if card.display for gpu in card.status.gpus]

    @when_shown
    def action_move(self, step: int) -> None:
        rows = self.visible_gpus()
        old = self.cursor
        self._user_moved = self._user_moved or step != 0
        if not rows:
            self.cursor = None
        else:
            keys = [(name, gpu.index) for name, gpu in rows]
            at = keys.index(self.cursor) if self.cursor in keys else 0
            at = max(0, min(len(keys) - 1, at + step)) if self.cursor in keys else 0
            self.cursor = keys[at]
        if old != self.cursor or step == 0:
            for name, card in self.cards.items():
                want = self.cursor[1] if self.cursor and self.cursor[0] == name else None
                if card.selected_gpu != want:
                    card.selected_gpu = want
                    card.refresh_status()
            if self.cursor and step:
                self.cards[self.cursor[0]].scroll_visible()
        self._show_processes()

    @when_shown
    def _show_processes(self) -> None:
        gpu = None
        if self.cursor is not None:
            card = self.cards[self.cursor[0]]
            gpu = next((g for g in card.status.gpus if g.index == self.cursor[1]), None)
        for table in self.query(ProcessTable):  # none while the screen mounts or goes
            table.show(self.cursor[0] if self.cursor else None, gpu)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#cards").focus()

    def apply_filter(self, text: str) -> None:
        from ugro_tui.core.telemetry.users import matches_user

        words = [w for w in text.lower().split() if not w.startswith("user:")]
        users = [w[5:] for w in text.split() if w.lower().startswith("user:") and w[5:]]
        for name, card in self.cards.items():
            node = self.app.cluster.node(name)
            hay = " ".join([name, node.address, *node.labels, *(g.name or "" for g in card.status.gpus)]).lower()
            shown = all(w in hay for w in words) and (self.drilled is None or self.drilled == name)
            shown = shown and all(matches_user(card.status, u) for u in users)
            card.display = shown
        self.action_move(0)

    def action_drill(self) -> None:
        if self.cursor is None:
            return
        self.drilled = self.cursor[0]
        self.apply_filter(self.query_one("#filter", Input).value)

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_focus or box.value:
            box.value = ""
            box.display = False
            self.query_one("#cards").focus()
        elif self.drilled is not None:
            self.drilled = None
        self.apply_filter(box.value)

    def action_trust(self) -> None:
        """Trust an unknown host key after the user has seen its fingerprint; a changed key is never offered."""
        from ugro_tui.core.telemetry.model import NodeState
        from ugro_tui.ui.widgets.dialogs import ConfirmScreen

        # Such a node has no GPUs to select, so take the first shown one that waits for trust.
        name = next((n for n, c in self.cards.items()
                     if c.display and c.status.state is NodeState.UNKNOWN_HOST_KEY), None)
        if name is None:
            self.notify("no node has an unknown host key", timeout=3)
            return
        status = self.cards[name].status

        def answered(yes: bool | None) -> None:
            if yes:
                self.trust_key(name)

        self.app.push_screen(ConfirmScreen(f"Trust this host key for {name}?\n\n{status.error}"), answered)

    @work(group="trust", exit_on_error=False, description="trust a host key")
    async def trust_key(self, name: str) -> None:
        from ugro_tui.core.check import check_node

        result = await check_node(self.app.cluster.node(name), self.app.cluster, accept_new=True)
        if not result.ok:
            self.notify(f"{name}: {result.detail or result.result}", severity="error", timeout=8)
            return
        self.notify(f"{name}: host key trusted and saved to known_hosts", timeout=4)
        self.app.retry_node(name)

    def action_users(self) -> None:
        from ugro_tui.ui.screens.users import UsersScreen

        self.app.push_screen(UsersScreen())

    def action_session(self) -> None:
        """A session on the selected GPU, and its shell in this terminal (the app suspends until it exits)."""
        from ugro_tui.ui.session_shell import free_gpu_problem

        if self.cursor is None:
            self.notify("select a GPU first (j/k)", timeout=3)
            return
        problem = free_gpu_problem(self.app, *self.cursor)
        if problem:
            self.notify(f"no session there: {problem}", severity="warning", timeout=5)
            return
        self.open_session(*self.cursor)

    @work(group="session", exclusive=True, exit_on_error=False, description="start a session and open its shell")
    async def open_session(self, node: str, index: int) -> None:
        from ugro_tui.ui.session_shell import open_shell, start_session

        self.notify(f"starting a session on {node}:{index}", timeout=3)
        try:
            job = await start_session(self.app, node, index)
        except UgroError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self.notify(open_shell(self.app, job), timeout=10)

    def action_signal(self) -> None:
        """Pick GPU processes of the selected node and a signal, confirm, then send (as the node's SSH user)."""
        from ugro_tui.core.signals import gpu_processes
        from ugro_tui.ui.screens.signal import SignalScreen
        from ugro_tui.ui.widgets.dialogs import ConfirmScreen

        if self.cursor is None:
            self.notify("select a GPU first (j/k)", timeout=3)
            return
        name, index = self.cursor
        status = self.cards[name].status
        targets = gpu_processes(status)
        if not targets:
            self.notify(f"no GPU processes on {name}", timeout=3)
            return
        if all(t.ugro_job is not None for t in targets):
            self.notify(f"every GPU process on {name} is a rank of a ugro job: cancel the job instead (2, then "
                        "ctrl+d)", timeout=6)
            return
        on_gpu = tuple(t.pid for t in targets if index in t.gpus and t.ugro_job is None)[:1]

        def picked(answer) -> None:
            if not answer:
                return
            chosen, signal = answer
            lines = "\n".join(t.describe() for t in chosen)

            def confirmed(yes: bool | None) -> None:
                if yes:
                    self.send_signals(chosen, signal)

            self.app.push_screen(ConfirmScreen(f"Send {signal} to {len(chosen)} process(es)?\n\n{lines}"), confirmed)

        self.app.push_screen(SignalScreen(name, targets, on_gpu), picked)

    @work(group="signal", exit_on_error=False, description="signal GPU processes")
    async def send_signals(self, targets, signal: str) -> None:
        from ugro_tui.core.signals import owning_job

        for target in targets:
            job = owning_job(target)
            if job is not None:
                self.notify(f"pid {target.pid} on {target.node} is a rank of job {job}: cancel the job instead "
                            "(2, then ctrl+d)", severity="error", timeout=8)
                continue
            ok, message = await self.app.signal_through_daemon(target.node, target.pid, signal)  # its connection
            self.notify(message, severity="information" if ok else "error", timeout=6 if ok else 10)

    def action_yield_gpu(self) -> None:
        """The selected GPU to the person at the node, or back to the queue when it is yielded (confirmed where a
        job that is not preemptible would stop, or the node is no desktop)."""
        from ugro_tui.ui.yielding import ask_yield

        if self.cursor is None:
            self.notify("select a GPU first (j/k)", timeout=3)
            return
        ask_yield(self, *self.cursor)

    def action_retry(self) -> None:
        if self.cursor is not None:
            self.app.retry_node(self.cursor[0])
