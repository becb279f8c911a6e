"""Local copies of node logs: resume from their own size, share safely, keep bytes exactly."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ugro_tui.core.jobs.logs import local_copy, sync_node
from ugro_tui.core.jobs.model import Job, JobSpec
from ugro_tui.core.transport import LocalTransport

from ..conftest import cluster_from


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
