"""The transport over real OpenSSH sshd on loopback, and the same operations locally."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from ugro_tui.config import Cluster
from ugro_tui.core.transport import LocalTransport, SshTransport, Transport, make_transport

from ..conftest import cluster_from, host


@pytest.fixture(params=["ssh", "local"])
async def transport(request: pytest.FixtureRequest, lab_config: tuple[Cluster, Path]) -> Transport:
    cluster, _ = lab_config
    node = cluster.nodes[0]
    if request.param == "local":
        node = cluster_from('[[nodes]]\nname = "here"\nhost = "localhost"\n').nodes[0]
    t = make_transport(node, cluster)
    assert isinstance(t, SshTransport if request.param == "ssh" else LocalTransport)
    await t.connect()
    yield t
    await t.close()


async def test_run_returns_exit_code_and_output(transport: Transport) -> None:
    done = await transport.run("echo out; echo err >&2; exit 3")
    assert (done.exit_code, done.stdout, done.stderr) == (3, "out\n", "err\n")


async def test_argv_reaches_the_node_exactly(transport: Transport) -> None:
    nasty = ["printf", "%s|", "a b", "$(touch /tmp/ugro-pwned)", "';exit 9;'", "`id`", "\\n", "*"]
    done = await transport.run(nasty)
    assert done.stdout == "a b|$(touch /tmp/ugro-pwned)|';exit 9;'|`id`|\\n|*|"
    assert not Path("/tmp/ugro-pwned").exists()


async def test_stream_yields_lines_as_they_come(transport: Transport) -> None:
    stream = await transport.stream("for i in 1 2 3; do echo line$i; sleep 0.05; done")
    async with stream:
        lines = [line async for line in stream]
    assert lines == ["line1\n", "line2\n", "line3\n"]


async def test_closing_a_stream_ends_the_remote_command(transport: Transport, tmp_path: Path) -> None:
    marker = tmp_path / "reader.pid"
    # Like the agent: read stdin until it closes, then exit.
    stream = await transport.stream(f"echo $$ > {marker}; echo ready; cat >/dev/null; echo gone")
    iterator = stream.__aiter__()
    assert await iterator.__anext__() == "ready\n"
    pid = int(marker.read_text())
    await stream.close()
    await _until(lambda: not _alive(pid), 5)


async def test_detached_start_survives_closing_the_connection(transport: Transport, tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    pid = await transport.spawn_detached("echo started; sleep 30", workdir=str(tmp_path / "wd"), log=str(log))
    await transport.close()
    await asyncio.sleep(0.3)
    assert _alive(pid)
    assert os.getpgid(pid) == pid and os.getsid(pid) == pid  # its own session and process group
    await _until(lambda: log.exists() and log.read_text() == "started\n", 5)
    await transport.connect()
    assert await transport.alive(pid)
    assert await transport.signal_group(pid, signal.SIGKILL)
    await _until(lambda: not _alive(pid), 5)


async def test_signal_group_kills_every_process_in_it(transport: Transport, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pgid = await transport.spawn_detached(f"sleep 60 & echo $! > {pids}; sleep 60", log="/dev/null")
    await _until(lambda: pids.exists() and pids.read_text().strip(), 5)
    child = int(pids.read_text())
    assert os.getpgid(child) == pgid
    assert await transport.signal_group(pgid, signal.SIGTERM)
    await _until(lambda: not _alive(child) and not _alive(pgid), 5)


async def test_copy_file_is_atomic_and_expands_home(transport: Transport, tmp_path: Path) -> None:
    data = bytes(range(256)) * 100
    dest = tmp_path / "sub dir" / "it's here.bin"
    await transport.copy_file(data, str(dest), mode=0o600)
    assert dest.read_bytes() == data and (dest.stat().st_mode & 0o777) == 0o600
    await transport.copy_file(b"home", "~/.cache/ugro/test-copy")
    # ~ is the node's home: the lab node's own over SSH (its sshd sets HOME), this process's when local.
    done = await transport.run("printf %s \"$HOME\"")
    home = Path.home() if transport.node.is_local else Path(done.stdout)
    assert transport.node.is_local or home.name == "home" and home != Path.home()
    copied = home / ".cache/ugro/test-copy"
    assert copied.read_bytes() == b"home"
    copied.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def _until(predicate, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_fallback_ssh_server_serves_the_same_operations(tmp_path: Path) -> None:
    """Where OpenSSH's sshd is missing, the asyncssh stand-in server answers on the same loopback addresses."""
    from ugro_tui.sim.loopback import LoopbackCluster

    lab = LoopbackCluster(tmp_path / "fallback", hosts=[host(6)], use_openssh=False).start()
    try:
        cluster = cluster_from(lab.cluster_toml())
        t = make_transport(cluster.nodes[0], cluster)
        for i in range(20):  # fast commands: their output must be drained before the exit status is sent
            done = await t.run(["printf", "%s", f"a b {i}"])
            assert (done.exit_code, done.stdout) == (0, f"a b {i}")
        for _ in range(5):
            stream = await t.stream("echo one; echo two")
            async with stream:
                assert [line async for line in stream] == ["one\n", "two\n"]
        await t.close()
    finally:
        lab.stop()


async def test_more_streams_and_commands_than_sshd_allows_wait_their_turn_and_none_fails(
        lab_config: tuple[Cluster, Path], tmp_path: Path) -> None:
    """12 streams and 8 commands at once on one connection: at most 9 sessions are open at any moment (sshd's
    MaxSessions is 10 by default), the rest wait their turn, and every one completes."""
    cluster, _ = lab_config
    t = make_transport(cluster.nodes[0], cluster)
    spans = tmp_path / "spans"
    spans.mkdir()

    def timed(what: str) -> str:  # the session's start and end on the node's clock, one file per session
        return f"s=$(date +%s.%N); sleep 0.3; echo $s $(date +%s.%N) > {spans}/{what}; echo {what}"

    try:
        async def one_stream(i: int) -> list[str]:
            stream = await t.stream(timed(f"stream{i}"))
            try:
                return [line async for line in stream]
            finally:
                await stream.close()

        results = await asyncio.wait_for(asyncio.gather(
            *(one_stream(i) for i in range(12)), *(t.run(timed(f"run{i}")) for i in range(8))), 60)
        assert [r for r in results[:12]] == [[f"stream{i}\n"] for i in range(12)]
        assert [r.stdout for r in results[12:]] == [f"run{i}\n" for i in range(8)]
    finally:
        await t.close()
    edges = sorted((float(x), d) for f in spans.iterdir() for x, d in zip(f.read_text().split(), (1, -1), strict=True))
    most = running = 0
    for _, d in edges:
        running += d
        most = max(most, running)
    assert 1 < most <= 9, most
