"""The app as a client of the daemon: telemetry, who dispatches and the daemon's own troubles arrive pushed, so
the app opens no SSH connection for them and dispatches nothing itself. A daemon that goes away is replaced (or
waited for) and the app says so in one line."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from ugro_tui.config import Cluster
from ugro_tui.core.daemon.client import Client, NoDaemon, connect, subscribe, version_note
from ugro_tui.core.telemetry.model import ClusterState
from ugro_tui.core.telemetry.wire import apply_hello, apply_wire, node_of
from ugro_tui.errors import UgroError


class Follower(Protocol):
    """What the link needs of the app (a protocol: the app imports this module, never the other way)."""

    cluster: Cluster
    monitor_state: ClusterState
    session: Any

    def notify(self, message: str, **options: Any) -> None: ...

    def node_changed(self, status: Any) -> None: ...

    def daemon_config_changed(self) -> None: ...

    def jobs_changed(self) -> None: ...

RECONNECT = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds between tries while no daemon answers


def find_daemon(cluster: Cluster) -> Client | None:
    """The daemon to follow (started in the background when none answers and auto-start is on), or None."""
    try:
        return connect(cluster)
    except UgroError:
        return None


def prefetch(client: Client, state: ClusterState) -> str:
    """Before the first frame: the daemon's live state (so gauges show at once); returns who dispatches."""
    try:
        hello = client.call("GET", "daemon/nodes", timeout=2.0)
    except UgroError:
        return ""
    apply_hello(state, hello)
    return _note(hello)


def _note(hello: dict[str, Any]) -> str:
    return f"dispatch: daemon pid {hello.get('pid')}"


async def follow(app: Follower) -> None:
    """Until the app ends: apply what the daemon pushes; reconnect (starting a new daemon) when it goes."""
    tries = 0
    said_gone = False
    ever = False
    while True:
        try:
            async for message in subscribe():
                if message.get("kind") == "hello":
                    if said_gone and ever:
                        app.notify(f"reconnected to the ugro daemon (pid {message.get('pid')})", timeout=4)
                    tries, said_gone, ever = 0, False, True
                    note = version_note(message)
                    if note:
                        app.notify(note, severity="warning", timeout=15)
                    app.session.dispatch_note = _note(message)
                    for status in apply_hello(app.monitor_state, message):
                        app.node_changed(status)
                else:
                    take(app, message)
        except NoDaemon:
            pass  # killed, stopped or restarting: said below, once
        except (OSError, UgroError) as exc:
            app.notify(f"ugro daemon: {exc}", severity="error", timeout=8)
        if not said_gone and ever:
            app.notify("the ugro daemon went away; reconnecting…", severity="warning", timeout=6)
        elif not said_gone:
            app.notify("no ugro daemon answers and auto-start is off: `ugro daemon start` brings telemetry and "
                       "dispatch; this view follows it once it answers", severity="warning", timeout=12)
        said_gone = True
        app.session.dispatch_note = ("dispatch: reconnecting to the daemon" if ever else
                                     "no daemon: `ugro daemon start`")
        await asyncio.sleep(RECONNECT[min(tries, len(RECONNECT) - 1)])
        tries += 1
        await asyncio.to_thread(find_daemon, app.cluster)  # a killed one is replaced, as at start


def take(app: Follower, message: dict[str, Any]) -> None:
    kind = message.get("kind")
    if kind == "node":
        doc = message.get("node")
        status = node_of(app.monitor_state, doc)
        if status is not None:
            apply_wire(status, doc)  # type: ignore[arg-type]
            app.node_changed(status)
    elif kind in ("daemon-error", "config-error"):
        app.notify(str(message.get("message")), title=kind, severity="error", timeout=10)
    elif kind == "config":
        app.daemon_config_changed()
    elif kind == "jobs":  # the store changed: the Jobs view reads it now, not at its next poll
        app.jobs_changed()


def alive(client: Client | None) -> bool:
    if client is None:
        return False
    try:
        client.status()
    except NoDaemon:
        return False
    return True
