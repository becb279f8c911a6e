"""Copying a checkpoint to a retry's node: streamed in pieces (memory stays flat for a 512 MB file: a copy that
held the file would raise it by the file's size, eight times the bound), exact, and a marker that cannot be
written fails the copy, naming the node and the path."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ugro_tui.config import Cluster
from ugro_tui.core.jobs.keeper import MARKER, CheckpointError, CheckpointKeeper
from ugro_tui.core.jobs.model import Job, JobSpec
from ugro_tui.core.pool import Pool
from ugro_tui.core.transport import RunResult
from ugro_tui.sim.loopback import LoopbackCluster

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(300)]
SIZE = 512 << 20  # a copy that held the file would exceed the 64 MB bound below eight times over


def rss(field: str) -> int:
    """This process's resident memory in bytes: VmRSS now, or VmHWM, its peak since the last reset."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


@pytest.fixture
def ckpt(lab_config: tuple[Cluster, Path], request: pytest.FixtureRequest) -> Iterator[str]:
    """A checkpoint dir of the test's own in every node's workdir (the lab is shared), removed afterwards: the
    copied 512 MB are real bytes on this machine's disk."""
    cluster, _ = lab_config
    name = f"ckpt-{request.node.name.split('[')[0][-24:]}"
    yield name
    for node in cluster.nodes:
        shutil.rmtree(Path(node.workdir) / name, ignore_errors=True)


def checkpoint_on(cluster: Cluster, node: str, directory: str, name: str, size: int) -> Path:
    """A checkpoint folder on `node` (every loopback node's workdir is on this machine): a sparse file with data at
    both ends, so a piece out of order or missing shows, and the marker written last."""
    folder = Path(cluster.node(node).workdir) / directory / name
    folder.mkdir(parents=True)
    with open(folder / "model.pt", "wb") as f:
        f.truncate(size)
        f.write(os.urandom(1 << 20))
        f.seek(size - (1 << 20))
        f.write(os.urandom(1 << 20))
    (folder / "optim.pt").write_bytes(os.urandom(3 << 20))
    (folder / MARKER).touch()
    return folder


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


async def test_a_large_checkpoint_is_copied_with_flat_memory(lab: LoopbackCluster, lab_config: tuple[Cluster, Path],
                                                            ckpt: str) -> None:
    cluster, _ = lab_config
    source = checkpoint_on(cluster, "node0", ckpt, "step-000010", SIZE)
    job = Job(1, JobSpec("big", ("x.py",), checkpoint_dir=ckpt), ran_on=("node0",))
    async with Pool(cluster) as pool:
        keeper = CheckpointKeeper(cluster, pool)
        [found] = await keeper.index(job, ["node0"])
        assert found.complete
        await pool.get("node1").run("true")  # connections up before the baseline: only the copy is measured
        await pool.get("node0").run("true")
        Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from now
        before = rss("VmRSS")
        copied = await keeper.copy(job, found, "node1")
        grew = rss("VmHWM") - before
        print(f"copying {SIZE >> 20} MiB raised resident memory by {grew >> 20} MiB")
    target = Path(cluster.node("node1").workdir) / ckpt / "step-000010"
    assert copied == SIZE + (3 << 20)
    assert grew < 64 << 20, f"the copy raised resident memory by {grew >> 20} MiB"
    assert (target / MARKER).exists() and not list(target.glob("*.part"))
    for name in ("model.pt", "optim.pt"):
        assert digest(target / name) == digest(source / name)


async def test_a_marker_that_cannot_be_written_fails_the_copy(lab: LoopbackCluster, lab_config: tuple[Cluster, Path],
                                                             ckpt: str) -> None:
    cluster, _ = lab_config
    checkpoint_on(cluster, "node0", ckpt, "step-000020", 1 << 20)
    job = Job(1, JobSpec("small", ("x.py",), checkpoint_dir=ckpt), ran_on=("node0",))
    async with Pool(cluster) as pool:
        keeper = CheckpointKeeper(cluster, pool)
        [found] = await keeper.index(job, ["node0"])
        node1 = pool.get("node1")
        real = node1.run

        async def full_disk(cmd, **kw) -> RunResult:  # the node's disk filled up just as the copy ended
            if "touch" in str(cmd) and MARKER in str(cmd):
                return RunResult(1, "", "touch: cannot touch '.complete': No space left on device", b"")
            return await real(cmd, **kw)

        node1.run = full_disk  # type: ignore[method-assign]
        with pytest.raises(CheckpointError, match=rf"node1: could not write the marker {ckpt}/step-000020/\.complete"
                                                  r".*No space left on device"):
            await keeper.copy(job, found, "node1")
    target = Path(cluster.node("node1").workdir) / ckpt / "step-000020"
    assert not (target / MARKER).exists()  # so nothing takes it for complete
