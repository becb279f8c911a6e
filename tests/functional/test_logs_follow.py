"""Rank panes opened on a running job with a long backlog start at its bottom and follow what the ranks write."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from ugro_tui.core.jobs.logs import local_copy, rank_copy
from ugro_tui.core.jobs.model import JobSpec, JobState, NodeRun
from ugro_tui.core.jobs.store import JobStore
from ugro_tui.ui.app import make_app
from ugro_tui.ui.screens.logs import LogsScreen, Pane

from ..ui_states import LAB, online

BACKLOG = 2000
PLACEMENT = (("gpu-master", (0, 1)), ("gpu1", (0, 1)))


def running_job(root: Path) -> tuple[JobStore, dict[int, Path]]:
    """A running 2-node, 4-rank job whose copies hold BACKLOG lines per rank; returns each rank's stdout copy."""
    store = JobStore(root)
    [job] = store.submit([JobSpec("tiny", ("train.py",), nnodes=2, nproc_per_node=2, gpus_per_node=2)])
    store.move(job.id, JobState.STARTING, placement=PLACEMENT, started_at=time.time())
    runs = tuple((n, NodeRun(pid=100 + i, run_dir=f"/nonexistent/{n}")) for i, (n, _) in enumerate(PLACEMENT))
    job = store.update(job.id, lambda j: dataclasses.replace(j, runs=runs))
    job = store.move(job.id, JobState.RUNNING)
    files = {}
    for i, (node, _) in enumerate(PLACEMENT):
        for local in range(2):
            rank = i * 2 + local
            out = rank_copy(job, node, local, "stdout")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("".join(line(rank, n) for n in range(BACKLOG)))
            rank_copy(job, node, local, "stderr").write_text("")
            files[rank] = out
        console = local_copy(job, node)
        console.write_text("INFO:torch.distributed.run:Using nproc_per_node=2.\n")
        (console.parent / node / "ranks.json").write_text(json.dumps(
            {"scanned": console.stat().st_size, "ranks": {"0": i * 2, "1": i * 2 + 1}}))
    return store, files


def line(rank: int, n: int) -> str:
    """What rank `rank` writes as its line n: a loss too, so the loss plot opens and the panes shrink meanwhile."""
    return f"step {n} loss {1 + 1 / (n + 1):.5f} rank {rank}\n"


def last_visible(pane: Pane) -> str:
    log = pane.output
    if not log.lines:
        return ""
    row = int(log.scroll_y) + log.scrollable_content_region.height - 1
    return log.lines[min(row, len(log.lines) - 1)]


async def test_rank_panes_start_at_the_bottom_of_a_backlog_and_follow_new_lines_200x50(tmp_path: Path) -> None:
    store, files = running_job(tmp_path / "jobs")
    app = make_app(LAB, monitor=False, state=online(), store=store)
    async with app.run_test(headless=True, size=(200, 50)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        await pilot.press("l")
        written: dict[int, list[tuple[float, int]]] = {rank: [(time.monotonic(), BACKLOG - 1)] for rank in files}
        checks = 0
        began = time.monotonic()
        stalls: list[tuple[float, float]] = []  # (when, seconds): this process got no CPU (a hog beside it)
        while time.monotonic() - began < 10:
            now = time.monotonic()
            for rank, path in files.items():  # each rank writes a line every ~50 ms
                n = written[rank][-1][1] + 1
                with path.open("a") as f:
                    f.write(line(rank, n))
                written[rank].append((now, n))
            cpu = time.process_time()
            await pilot.pause(0.05)
            # Time the pause overran while this process got no CPU (a hog beside it): the view could not draw
            # then. Time it spent busy is the view's own and is not excused.
            starved = (time.monotonic() - now - 0.05) - (time.process_time() - cpu)
            if starved > 0.25:
                stalls.append((now, starved))
            screen = app.screen
            if not isinstance(screen, LogsScreen) or now - began < 1.0:
                continue  # the view has a second to open, as it has for each new line
            panes = {p.key: p for p in screen.query(Pane) if p.key.startswith("rank")}
            assert sorted(panes) == [f"rank{r}" for r in sorted(files)], sorted(panes)
            for rank in files:
                # Written over a second ago, counting only the time this process could run (one the machine
                # froze for seconds could not have drawn anything meanwhile).
                clock = time.monotonic()
                due = max((n for t, n in written[rank] if t <= clock - 1.0 - sum(s for at, s in stalls if at >= t)),
                          default=None)
                if due is None:  # stalls took the whole second since the view opened: nothing is due yet
                    continue
                shown = last_visible(panes[f"rank{rank}"])
                assert shown.startswith("step ") and shown.endswith(f" rank {rank}"), shown
                at = int(shown.split()[1])
                log = panes[f"rank{rank}"].output
                assert at >= due, f"rank {rank} shows line {at}, but line {due} was written over 1 s ago ({stalls})"
                assert log.scroll_y >= log.max_scroll_y, f"rank {rank}'s pane is not at its bottom"
            checks += 1
        assert checks >= 20
