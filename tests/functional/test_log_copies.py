"""Local copies of node logs: resume from their own size, share safely, keep bytes exactly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ugro_tui.core.jobs.logs import local_copy, sync_node
from ugro_tui.core.jobs.model import Job, JobSpec
from ugro_tui.core.transport import LocalTransport

from ..conftest import cluster_from


async def until(condition, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def setup(tmp_path: Path) -> tuple[LocalTransport, Job, Path]:
    node = cluster_from('[[nodes]]\nname = "here"\nhost = "localhost"\n').nodes[0]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return LocalTransport(node), Job(7, JobSpec("j", ("x",)), attempt=1), run_dir


async def test_followers_in_one_process_never_deadlock_and_never_duplicate(tmp_path: Path) -> None:
    t, job, run_dir = setup(tmp_path)
    console = run_dir / "console.log"
    console.write_bytes(b"".join(b"[rank0]:step %d loss 1\n" % i for i in range(2000)))
    got = await asyncio.wait_for(asyncio.gather(*(sync_node(t, job, "here", str(run_dir)) for _ in range(6))), 10)
    assert b"".join(got) == console.read_bytes()  # each byte fetched by exactly one of the followers
    assert local_copy(job, "here").read_bytes() == console.read_bytes()


async def test_resume_from_the_copy_and_keep_bytes_exactly(tmp_path: Path) -> None:
    t, job, run_dir = setup(tmp_path)
    console = run_dir / "console.log"
    console.write_bytes(b"caf\xc3\xa9 \xff\xfe not utf-8\n[rank1]:half")
    await sync_node(t, job, "here", str(run_dir))
    with console.open("ab") as f:
        f.write(b" a line\n")
    assert await sync_node(t, job, "here", str(run_dir)) == b" a line\n"
    assert local_copy(job, "here").read_bytes() == console.read_bytes()


@pytest.mark.parametrize("grep", ["GNU", "without -z"])
async def test_the_kill_sweep_finds_workers_in_their_own_sessions(tmp_path: Path, grep: str) -> None:
    """torchrun starts workers with new sessions: a process-group kill misses them, the env sweep does not; with
    one grep over every environment, or a loop where the node's grep has no -z."""
    import os
    import shutil
    import signal

    from ugro_tui.core.jobs.leftovers import sweep_command

    t, _, _ = setup(tmp_path)
    path = ""
    if grep != "GNU":
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "grep").write_text(
            '#!/bin/sh\nfor a in "$@"; do case $a in --) break;; -*z*) echo "grep: invalid option -- z" >&2; exit 2;;'
            f' esac; done\nexec {shutil.which("grep")} "$@"\n')
        (tmp_path / "bin" / "grep").chmod(0o755)
        path = f"PATH={tmp_path / 'bin'}:$PATH; "
    mine = await t.spawn_detached("exec env UGRO_JOB_ID=913 UGRO_NODE=here UGRO_STORE=aaaa sleep 60")
    from_before_stores = await t.spawn_detached("exec env UGRO_JOB_ID=913 UGRO_NODE=here sleep 60")
    other_node = await t.spawn_detached("exec env UGRO_JOB_ID=913 UGRO_NODE=there UGRO_STORE=aaaa sleep 60")
    other_job = await t.spawn_detached("exec env UGRO_JOB_ID=9131 UGRO_NODE=here UGRO_STORE=aaaa sleep 60")
    other_store = await t.spawn_detached("exec env UGRO_JOB_ID=913 UGRO_NODE=here UGRO_STORE=bbbb sleep 60")

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def started(pid: int) -> bool:  # exec'd into sleep: its environment is the job's now
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep")
        except OSError:
            return False

    await until(lambda: all(started(p) for p in (mine, from_before_stores, other_node, other_job, other_store)), 5)
    assert (await t.run(path + sweep_command(913, "here", "aaaa"))).ok
    assert not alive(mine) and not alive(from_before_stores)  # gone once the sweep returns, not just signalled

    assert alive(other_node) and alive(other_job) and alive(other_store)  # another installation's job 913 too
    for pid in (other_node, other_job, other_store):
        os.killpg(pid, signal.SIGKILL)


async def test_a_reader_sees_every_byte_whoever_fetched_it(tmp_path: Path) -> None:
    """The Logs view and the dispatcher follow one copy: lines the dispatcher fetched still reach the view."""
    from ugro_tui.core.jobs.logs import CopyReader

    t, job, run_dir = setup(tmp_path)
    console = run_dir / "console.log"
    reader = CopyReader(job)
    seen = b""
    for i in range(6):
        with console.open("ab") as f:
            f.write(f"[rank0]:step {i} loss 1 caf\u00e9\n".encode())
        await sync_node(t, job, "here", str(run_dir))  # the other follower got these bytes
        if i % 2:
            seen += b"".join(data for _, data in reader.read_new("here"))
    seen += b"".join(data for _, data in reader.read_new("here"))
    assert seen == console.read_bytes()


def torchrun_dirs(run_dir: Path, nproc: int) -> list[Path]:
    """The layout torchrun's --log-dir makes: torchrun/<run id>_<random>/attempt_0/<local rank>/."""
    dirs = [run_dir / "torchrun" / "ugro-7-1_k2j4" / "attempt_0" / str(r) for r in range(nproc)]
    for d in dirs:
        d.mkdir(parents=True)
        (d / "stdout.log").touch()
        (d / "stderr.log").touch()
    return dirs


async def test_rank_files_are_followed_exactly_and_named_by_the_console(tmp_path: Path) -> None:
    """Pieces of lines, \\r progress and bytes that are not UTF-8 reach each rank's copy exactly, in one stream."""
    import random

    from ugro_tui.core.jobs.logs import CopyReader, RankDemux, rank_copy, rank_map

    t, job, run_dir = setup(tmp_path)
    dirs = torchrun_dirs(run_dir, 2)
    console = run_dir / "console.log"
    console.write_bytes(b"torchrun: starting\n")
    rng = random.Random(5)
    want = {0: b"", 1: b""}
    reader, demux = CopyReader(job), RankDemux()
    for step in range(40):
        for local in (0, 1):
            text = f"step {step} loss {local}.{step}\n".encode() + (b"\rbar %d" % step) + b"\xff\n"
            cut = rng.randrange(1, len(text))
            for piece in (text[:cut], text[cut:]):  # a sync may land between the pieces
                with (dirs[local] / "stdout.log").open("ab") as f:
                    f.write(piece)
                if rng.random() < 0.5:
                    await sync_node(t, job, "here", str(run_dir))
            want[local] += text
        if step == 3:  # the tee copy names the ranks a little later than the files appear
            with console.open("ab") as f:
                f.write(b"[rank4.0]:step 0 lo[rank5.1]:step 0\n")
        for source, data in reader.read_new("here"):
            demux.feed(source, data)
    await sync_node(t, job, "here", str(run_dir))
    for source, data in reader.read_new("here"):
        demux.feed(source, data)
    assert rank_map(job, "here") == {0: 4, 1: 5}
    for local in (0, 1):
        assert rank_copy(job, "here", local, "stdout").read_bytes() == want[local]
        lines = [x for x in demux.ranks[4 + local].lines if x.startswith("step")]
        assert lines == [f"step {s} loss {local}.{s}" for s in range(40)]
        assert "bar 39\ufffd" in demux.ranks[4 + local].lines  # the \\r progress shows its last state
    assert list(demux.nodes["here"].lines) == ["torchrun: starting"]  # tee copies are not shown twice
