"""Checkpoint rules as pure functions: steps from names, listings, retention, what a retry resumes from."""

from __future__ import annotations

import pytest

from ugro_tui.core.jobs.checkpoints import (
    Checkpoint,
    list_script,
    newest_complete,
    newest_everywhere,
    parse_listing,
    remove_script,
    step_of,
    to_prune,
    with_metric,
)


def ck(step: int | None, node: str = "a", complete: bool = True, metric: float | None = None,
       name: str | None = None) -> Checkpoint:
    name = name or (f"step-{step:06d}" if step is not None else "final")
    return Checkpoint(node, f"/ck/{name}", step, 100, 1000.0 + (step or 0), complete, metric)


def test_the_step_is_the_last_number_in_the_name() -> None:
    assert [step_of(n) for n in ("step-000120", "epoch_3", "ckpt-120.pt", "model.pt", "run2-step-40")] == \
        [120, 3, 120, None, 40]


def test_a_listing_parses_into_checkpoints_sorted_by_step() -> None:
    text = "/home/ob/ckpt\n1\t4096\t1700000000\tstep-000020\n0\t10\t1700000001\tstep-000030\n" \
           "1\t5\t1700000002\tfinal.pt\nbad line\n1\t7\t1700000003\tckpt-10.pt\n"
    found = parse_listing("gpu1", text)
    assert [(c.name, c.step, c.complete, c.bytes) for c in found] == [
        ("ckpt-10.pt", 10, True, 7), ("step-000020", 20, True, 4096), ("step-000030", 30, False, 10),
        ("final.pt", None, True, 5)]
    assert found[1].path == "/home/ob/ckpt/step-000020" and found[1].node == "gpu1"
    assert parse_listing("gpu1", "") == []
    assert "cd " in list_script("~/ckpt") and '"$HOME"/' in list_script("~/ckpt")


def test_metric_at_each_checkpoint_step() -> None:
    history = ((0, 5.0, 0.0), (10, 3.0, 1.0), (20, 2.0, 2.0))
    assert [c.metric for c in with_metric([ck(10), ck(15), ck(None)], history)] == [3.0, 3.0, None]


def test_retention_keeps_the_last_n_and_the_best_k_and_never_the_unsafe_ones() -> None:
    found = [ck(0, metric=5.0), ck(10, metric=1.0), ck(20, metric=2.0), ck(30, metric=3.0), ck(40, metric=4.0),
             ck(50, complete=False), ck(None, name="final.pt")]
    gone = to_prune(found, keep_last=2, keep_best=1, goal="min")
    assert sorted(c.step for c in gone) == [0, 20]  # 30, 40 the last two; 10 the best; 50 incomplete; final no step
    assert sorted(c.step for c in to_prune(found, keep_last=2, keep_best=0, goal="min")) == [0, 10, 20]
    assert sorted(c.step for c in to_prune(found, keep_last=1, keep_best=1, goal="max")) == [10, 20, 30]
    # keep_last 0: the newest complete one stays all the same; one a running attempt resumed from stays too.
    assert sorted(c.step for c in to_prune(found, keep_last=0, keep_best=1, goal="min",
                                           protected=["step-000000"])) == [20, 30]
    assert to_prune(found, keep_last=0, keep_best=0, goal="min") == []


def test_retention_is_per_node() -> None:
    found = [ck(s, node=n) for n in ("a", "b") for s in (10, 20, 30)]
    gone = to_prune(found, keep_last=1, keep_best=0, goal="min")
    assert sorted((c.node, c.step) for c in gone) == [("a", 10), ("a", 20), ("b", 10), ("b", 20)]


def test_retention_counts_only_whole_checkpoints_so_a_node_that_ran_ahead_keeps_what_a_retry_needs() -> None:
    # Node a wrote 10..40 before the job noticed b's rank had failed at 25; b has 10 and 20. keep_last 2 per
    # folder would leave a with 30, 40 and b with 10, 20: nothing whole to resume from.
    found = [ck(s, "a") for s in (10, 20, 30, 40)] + [ck(s, "b") for s in (10, 20)]
    assert to_prune(found, keep_last=2, keep_best=0, goal="min", nodes=["a", "b"]) == []
    assert newest_everywhere(found, ["a", "b"]).step == 20
    found += [ck(s, "b") for s in (30, 40)]  # b caught up: 10 and 20 go everywhere
    gone = to_prune(found, keep_last=2, keep_best=0, goal="min", nodes=["a", "b"])
    assert sorted((c.node, c.step) for c in gone) == [("a", 10), ("a", 20), ("b", 10), ("b", 20)]
    # Another node's stale copies (an earlier attempt's) are held to the same rule; nothing whole: nothing goes.
    stale = found + [ck(s, "c") for s in (20, 30)]
    assert sorted((c.node, c.step) for c in to_prune(stale, keep_last=2, keep_best=0, goal="min",
                                                      nodes=["a", "b"]) if c.node == "c") == [("c", 20)]
    assert to_prune([ck(10, "a"), ck(20, "a")], keep_last=1, keep_best=0, goal="min", nodes=["a", "b"]) == []


def test_resume_from_the_newest_complete_on_every_node_of_the_last_attempt() -> None:
    found = [ck(10, "a"), ck(10, "b"), ck(20, "a"), ck(20, "b", complete=False), ck(30, "a")]
    assert newest_everywhere(found, ["a", "b"]).step == 10  # 20 and 30 are not whole on b
    assert newest_everywhere(found, ["a"]).step == 30
    assert newest_everywhere(found, ["a", "b"], step=20) is None
    assert newest_everywhere(found, []).step == 30 == newest_complete(found).step
    assert newest_complete(found, 20).node == "a"


def test_remove_script_quotes_and_drops_the_marker_first() -> None:
    script = remove_script(["/ck/step-000010", "/ck/it's"])
    assert script.index("/ck/step-000010/.complete") < script.index("rm -rf -- /ck/step-000010")
    assert "'/ck/it'\"'\"'s'" in script


@pytest.mark.parametrize(("args", "words"), [
    (["--checkpoint-dir", "ck", "--keep-last", "0", "--keep-best", "0"], "would delete every checkpoint"),
    (["--keep-last", "2"], "give the job a checkpoint_dir"),
    (["--checkpoint-dir", "../elsewhere", "--keep-last", "2"], "no `..`"),
    (["--checkpoint-dir", "ck", "--keep-last", "-1"], "expected 0 or more"),
])
def test_bad_retention_is_one_line_exit_2(tmp_path, args: list[str], words: str) -> None:
    from ..conftest import run_ugro

    config = tmp_path / "cluster.toml"
    config.write_text('[[nodes]]\nname = "a"\nhost = "127.0.0.2"\n')
    done = run_ugro("submit", "--config", str(config), *args, "--", "train.py")
    assert done.returncode == 2 and words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_checkpoints_of_a_job_without_a_dir_and_bad_from(tmp_path) -> None:
    from ..conftest import run_ugro

    config = tmp_path / "cluster.toml"
    config.write_text('[[nodes]]\nname = "a"\nhost = "127.0.0.2"\n')
    assert run_ugro("submit", "--config", str(config), "--hold", "--", "train.py").returncode == 0
    done = run_ugro("checkpoints", "--config", str(config), "1")
    assert done.returncode == 2 and "has no checkpoint dir" in done.stderr
    assert run_ugro("submit", "--config", str(config), "--hold", "--checkpoint-dir", "ck", "--", "t.py").returncode == 0
    for args, words in ((["retry", "2", "--from", "x"], "a step number or `latest`"),
                        (["retry", "2", "--from", "3"], "only a finished job can be retried"),
                        (["checkpoints", "2", "--dry-run"], "--dry-run goes with --prune"),
                        (["checkpoints", "2", "--prune"], "keeps every checkpoint")):
        bad = run_ugro(args[0], "--config", str(config), *args[1:])
        assert bad.returncode == 2 and words in bad.stderr and "Traceback" not in bad.stderr, (args, bad.stderr)


def test_nodes_that_read_one_folder_id_see_one_folder(tmp_path) -> None:
    """Each node proposes an id; the first written wins (O_EXCL) and every node reads that one back."""
    import subprocess

    from ugro_tui.core.jobs.checkpoints import FOLDER_ID, merge_shared

    shared, own = tmp_path / "shared", tmp_path / "own"
    for folder in (shared, own):
        (folder / "step-000010").mkdir(parents=True)
        (folder / "step-000010" / ".complete").touch()

    def listing(node: str, folder, proposed: str):
        text = subprocess.run(["sh", "-c", list_script(str(folder), proposed)], capture_output=True, text=True,
                              check=True).stdout
        return parse_listing(node, text)

    found = [*listing("a", shared, "1" * 16), *listing("b", shared, "2" * 16), *listing("c", own, "3" * 16)]
    assert (shared / FOLDER_ID).read_text().strip() == "1" * 16 and [c.folder for c in found] == [
        "1" * 16, "1" * 16, "3" * 16]
    merged = merge_shared(found)
    assert [(c.node, c.seen_by) for c in merged] == [("a", ("b",)), ("c", ())]
    assert [c.name for c in merged] == ["step-000010", "step-000010"]  # the id file itself is never listed
    with pytest.raises(ValueError):
        list_script("ckpt", "x; rm -rf ~")
