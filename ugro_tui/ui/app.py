"""The app factory: one UgroApp for `ugro`, `ugro demo` and the tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from ugro_tui.config import Cluster
from ugro_tui.core.daemon.client import Client
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.core.telemetry.model import ClusterState, NodeStatus
from ugro_tui.ui import themes
from ugro_tui.ui.messages import NodeUpdated
from ugro_tui.ui.read_only import ReadOnlyAware
from ugro_tui.ui.screens.doctor import DoctorScreen
from ugro_tui.ui.screens.help import HelpScreen
from ugro_tui.ui.screens.jobs import JobsScreen
from ugro_tui.ui.screens.launch import LaunchScreen
from ugro_tui.ui.screens.logs import LogsScreen
from ugro_tui.ui.screens.nodes import NodesScreen
from ugro_tui.ui.screens.usage import UsageScreen
from ugro_tui.ui.session import Session

THEME_VARIABLE_DEFAULTS = {"gpu-idle": "#5FB760", "gpu-busy": "#4EA8DE", "gpu-hot": "#E5534B",
                           "bar-empty": "#3A3F45"}


class UgroApp(ReadOnlyAware, App[None]):
    CSS_PATH = "ugro.tcss"
    TITLE = "ugro"
    MODES = {"nodes": NodesScreen, "jobs": JobsScreen, "logs": LogsScreen, "doctor": DoctorScreen,
             "usage": UsageScreen}
    DEFAULT_MODE = "nodes"
    BINDINGS = [
        Binding("1", "switch_mode('nodes')", "Nodes", id="view.nodes"),
        Binding("2", "switch_mode('jobs')", "Jobs", id="view.jobs"),
        Binding("3", "switch_mode('logs')", "Logs", id="view.logs"),
        Binding("4", "switch_mode('doctor')", "Doctor", id="view.doctor"),
        Binding("5", "switch_mode('usage')", "Usage", id="view.usage"),
        Binding("n", "new_job", "New job", id="app.new_job"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("t", "next_theme", "Theme", id="app.theme", show=False),
        Binding("colon", "command_palette", "Palette", id="app.palette", show=False),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(self, cluster: Cluster, *, monitor: bool = True, clock: Callable[[], float] = time.time,
                 state: ClusterState | None = None, keymap: dict[str, str] | None = None,
                 store: JobStore | None = None, daemon: Client | None = None) -> None:
        super().__init__()
        self.store = store or JobStore()
        self.session = Session()
        self.cluster = cluster
        self.clock = clock
        self.use_monitor = monitor  # False: a still app (snapshots, tests) that follows no daemon
        self.monitor_state = state or ClusterState([(n.name, n.address) for n in cluster.nodes], cluster.history)
        self._keymap = keymap or {}
        self.failures: list[str] = []  # every worker failure, in order (the notifications fade; tests read these)
        self._theme_names: list[str] = []
        self._events_offset: int | None = None
        # The daemon owns telemetry, dispatch and every connection; this app renders what it pushes and asks it
        # for the rest. It may not answer yet (auto-start off): the app waits for one.
        self.daemon = daemon if daemon is not None or not monitor else Client()
        if daemon is not None:
            from ugro_tui.ui.daemon_link import prefetch

            self.session.dispatch_note = prefetch(daemon, self.monitor_state)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return THEME_VARIABLE_DEFAULTS

    def on_mount(self) -> None:
        for theme in themes.load_themes():
            self.register_theme(theme)
            self._theme_names.append(theme.name)
        wanted = themes.load_settings().get("theme", themes.DEFAULT_THEME)
        self.theme = wanted if wanted in self.available_themes else (
            themes.DEFAULT_THEME if themes.DEFAULT_THEME in self.available_themes else "textual-dark")
        if self._keymap:
            self.set_keymap(self._keymap)
        if self.use_monitor:
            self.follow_daemon()
        self.preload_jobs()
        if self.use_monitor:
            self.watch_events()
            self.set_interval(1.0, self.watch_events)

    def watch_theme(self, theme: str) -> None:
        if self.is_mounted:
            themes.save_setting("theme", theme)

    @work(group="telemetry", name="daemon", description="telemetry and news from the ugro daemon", exit_on_error=False)
    async def follow_daemon(self) -> None:
        from ugro_tui.ui.daemon_link import follow

        await follow(self)

    def daemon_config_changed(self) -> None:
        """The daemon read a changed cluster.toml: this app reads it too, then the daemon's hello fills it."""
        from ugro_tui.config import load_cluster
        from ugro_tui.errors import ConfigError

        try:
            cluster = load_cluster(self.cluster.source)
        except (ConfigError, OSError) as exc:
            self.notify(f"{exc}", severity="error", timeout=8)
            return
        self.use_cluster(cluster)

    def jobs_changed(self) -> None:
        screen = self.screen if self.screen_stack else None
        if isinstance(screen, JobsScreen):
            screen.reload()

    def kick_daemon(self) -> None:
        """After a submit or an action: the daemon runs a round now rather than at the next interval."""
        if self.daemon is not None:
            from ugro_tui.core.daemon.client import kick

            self.run_worker(kick, thread=True, group="kick", description="ask the daemon for a round",
                            exit_on_error=False)

    async def signal_through_daemon(self, node: str, pid: int, signal: str) -> tuple[bool, str]:
        """(sent, what to say): the daemon checks the process as its telemetry sees it and sends the signal."""
        import asyncio

        from ugro_tui.errors import UgroError

        client = self.daemon
        if client is None:
            return False, "this view follows no ugro daemon: nothing was sent"
        try:
            answer = await asyncio.to_thread(client.call, "POST", "daemon/signal",
                                             {"node": node, "pid": pid, "signal": signal}, 120)
        except UgroError as exc:
            return False, str(exc)
        return bool(answer["ok"]), str(answer["message"])

    def retry_node(self, name: str) -> None:
        """Skip a node's reconnect backoff (the user pressed retry), wherever telemetry runs."""
        if self.daemon is not None:
            client = self.daemon
            self.run_worker(lambda: client.call("POST", f"daemon/retry/{name}"), thread=True, group="retry",
                            description=f"retry {name}", exit_on_error=False)

    @work(group="jobs", name="preload", description="read the job store once at start", exit_on_error=False)
    async def preload_jobs(self) -> None:
        import asyncio

        from ugro_tui.ui.screens.jobs import PAGE

        # The newest page first (no older history chunk is parsed for it), then every job for filter and sort.
        self.session.jobs_snapshot = await asyncio.to_thread(self.store.recent, PAGE)
        self.session.jobs_snapshot = await asyncio.to_thread(self.store.all)
        self.session.store_recovered = self.store.recovery_notice() is not None

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The app's own workers; screens route theirs to `worker_failed` (ReportsWorkerFailures)."""
        if event.state is WorkerState.ERROR:
            self.worker_failed(event.worker)

    def worker_failed(self, worker: Worker) -> None:
        """Every worker's failure lands here, once: the user sees one line, the app keeps running."""
        self.failures.append(f"{worker.description or worker.name}: {worker.error}")
        self.notify(self.failures[-1], severity="error", timeout=10)

    def node_changed(self, status: NodeStatus) -> None:
        self.post_message(NodeUpdated(status))

    def on_node_updated(self, message: NodeUpdated) -> None:
        if not self.screen_stack:  # closing: a sample that arrives as the last screen goes has nowhere to go
            return
        screen = self.screen
        if isinstance(screen, NodesScreen):
            screen.node_updated(message.status)
        elif isinstance(screen, LaunchScreen):  # its free GPU counts
            screen.node_updated()

    async def on_unmount(self) -> None:
        for listener in self.session.forwards.values():
            listener.close()

    def action_help(self) -> None:
        rows = []
        seen = set()
        for binding in [*self.screen.BINDINGS, *self.BINDINGS]:
            if isinstance(binding, Binding) and binding.id not in seen:
                seen.add(binding.id)
                keys = self._keymap.get(binding.id or "", binding.key)
                rows.append((keys.replace("question_mark", "?").replace("slash", "/").replace("colon", ":"),
                             binding.description, binding.id or ""))
        self.push_screen(HelpScreen(rows))

    def use_cluster(self, cluster: Cluster) -> None:
        """Follow a changed cluster.toml (the daemon read it): its nodes' cards, filled by the daemon's hello."""
        old = self.monitor_state.nodes
        self.cluster = cluster
        self.monitor_state = ClusterState([(n.name, n.address) for n in cluster.nodes], cluster.history)
        for name, status in old.items():  # unchanged nodes keep their history while they reconnect
            if name in self.monitor_state.nodes and status.address == self.monitor_state.nodes[name].address:
                self.monitor_state.nodes[name] = status
        if self.use_monitor:
            self.workers.cancel_group(self, "telemetry")
            self.follow_daemon()
        if isinstance(self.screen, NodesScreen):
            self.call_later(self.screen.rebuild)

    def get_system_commands(self, screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Sweep view", "The latest sweep: its leaderboard and the trials' curves",
                            self.action_latest_sweep)
        yield SystemCommand("Usage view", "Energy and cost per day by user or node, and the top jobs (ugro usage)",
                            lambda: self.switch_mode("usage"))
        yield SystemCommand("Events", "Jobs started and ended, nodes offline, GPUs hot or idle (ugro events)",
                            self.action_events)

    def action_events(self) -> None:
        from ugro_tui.ui.screens.events import EventsScreen

        self.push_screen(EventsScreen())

    @work(group="alerts", exclusive=True, exit_on_error=False, description="read new events")
    async def watch_events(self) -> None:
        """Toast (and ring for) failures and alerts as the dispatcher writes them, wherever it runs."""
        import asyncio

        from ugro_tui.core.alerts.journal import journal_path, read_events
        from ugro_tui.core.alerts.rules import TOASTS

        first = self._events_offset is None
        new, self._events_offset = await asyncio.to_thread(read_events, journal_path(), self._events_offset or 0)
        if first:
            return  # what happened before the app started is in the Events list, not a toast
        for event in new:
            if event.bad:
                self.notify(event.message, title=event.kind, severity="error" if event.kind == "job-failed"
                            else "warning", timeout=10)
                if self.cluster.alerts.bell:
                    self.bell()
            elif event.kind in TOASTS:
                self.notify(event.message, title=event.kind, timeout=6)

    @work(group="sweep-open", exclusive=True, exit_on_error=False, description="find the latest sweep")
    async def action_latest_sweep(self) -> None:
        import asyncio

        from ugro_tui.core.jobs.leaderboard import sweeps
        from ugro_tui.ui.screens.sweep import SweepScreen

        found = sweeps(await asyncio.to_thread(self.store.all))
        if not found:
            self.notify("no sweeps yet: `ugro submit --sweep lr=loguniform:1e-5:1e-2 --trials 8 -- train.py`",
                        timeout=4)
            return
        self.push_screen(SweepScreen(found[0].id))

    def action_new_job(self, values=None, title: str = "new job") -> None:
        if not isinstance(self.screen, LaunchScreen):
            self.push_screen(LaunchScreen(values, title))

    def action_next_theme(self) -> None:
        names = self._theme_names or [self.theme]
        at = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(at + 1) % len(names)]
        self.notify(f"theme: {self.theme}", timeout=2)


def make_app(cluster: Cluster, **options) -> UgroApp:
    """The one factory for the CLI, the demo and the tests. A live app follows the daemon, started in the
    background when none answers (with auto-start off, the app waits for one and says so)."""
    if options.get("monitor", True) and "daemon" not in options:
        from ugro_tui.ui.daemon_link import find_daemon

        options["daemon"] = find_daemon(cluster)
    return UgroApp(cluster, keymap=dict(cluster.keys), **options)
