"""The node editor on the real loopback cluster: test the connection (GPUs, an unknown key to trust), save to a
commented cluster.toml, and the running app follows the new node list without a restart."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from textual.widgets import Input, Static

from ugro_tui.config import load_cluster
from ugro_tui.config_edit import remove_node
from ugro_tui.sim.loopback import LoopbackCluster
from ugro_tui.ui.app import make_app
from ugro_tui.ui.screens.node_edit import NodeEditScreen
from ugro_tui.ui.screens.nodes import NodesScreen

from ..ui_states import wait_for

HEADER = "# the lab under my desk: keep this comment\n"


def config(lab: LoopbackCluster, tmp_path: Path) -> Path:
    """node0 and node1 configured; node2's host key is not in this known_hosts yet."""
    known = tmp_path / "known_hosts"
    node2 = lab.nodes[2]
    known.write_text("".join(line for line in lab.known_hosts_path.read_text().splitlines(True)
                             if f"{node2.host}]:{node2.port}" not in line))
    text = lab.cluster_toml(sim=[(["RTX 5070 Ti"], "nvml"), (["RTX 4070"], "nvml"), (["RTX 3070 Ti"], "nvml")])
    path = tmp_path / "cluster.toml"
    path.write_text(HEADER + text.replace(str(lab.known_hosts_path), str(known)))
    remove_node(path, "node2")
    return path


async def wait_tested(pilot, screen: NodeEditScreen) -> str:
    await pilot.pause()
    for _ in range(200):
        if not screen.testing:
            break
        await asyncio.sleep(0.05)
    await pilot.pause()
    return str(screen.query_one("#test", Static).render())


async def test_edit_shows_gpus_then_add_trust_and_save(lab: LoopbackCluster, tmp_path: Path) -> None:
    path = config(lab, tmp_path)
    app = make_app(load_cluster(path), monitor=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("E")  # the selected node: node0 has no GPU sample here, so the first card
        editor = app.screen
        assert isinstance(editor, NodeEditScreen) and editor.original.name == "node0"
        await pilot.press("ctrl+t")
        shown = await wait_tested(pilot, editor)
        assert "connected" in shown and "matches known_hosts" in shown and "RTX 5070 Ti" in shown
        await pilot.press("escape")  # nothing edited: no question
        assert isinstance(app.screen, NodesScreen)

        node2 = lab.nodes[2]
        await pilot.press("N")
        editor = app.screen
        for key, value in (("name", "node2"), ("host", node2.host), ("port", str(node2.port)),
                           ("identity_file", str(lab.client_key_path)), ("python", sys.executable)):
            editor.query_one(f"#n-{key}", Input).value = value
        await pilot.pause()
        await pilot.press("ctrl+t")
        shown = await wait_tested(pilot, editor)
        assert "not in known_hosts" in shown and editor.pending_fingerprint in shown
        assert editor.pending_fingerprint.startswith("SHA256:")
        await pilot.press("ctrl+y")
        shown = await wait_tested(pilot, editor)
        assert "connected" in shown and "trusted now" in shown
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: len(app.cluster.nodes) == 3, what="the saved node list")
        assert [n.name for n in app.cluster.nodes] == ["node0", "node1", "node2"]
        assert isinstance(app.screen, NodesScreen) and list(app.screen.cards) == ["node0", "node1", "node2"]
    text = path.read_text()
    assert text.startswith(HEADER) and f'host = "{node2.host}"' in text
    assert load_cluster(path).node("node2").port == node2.port


async def test_bad_fields_are_shown_inline_and_nothing_is_saved(lab: LoopbackCluster, tmp_path: Path) -> None:
    path = config(lab, tmp_path)
    before = path.read_text()
    app = make_app(load_cluster(path), monitor=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("N", *"node1")
        editor = app.screen
        assert "exists already" in str(editor.query_one("#err-name", Static).render())
        editor.query_one("#n-name", Input).value = "node9"
        editor.query_one("#n-host", Input).value = "a;b"
        await pilot.pause()
        assert "shell characters" in str(editor.query_one("#err-host", Static).render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is editor
    assert path.read_text() == before
