"""A job's GPU history: 5 s points, bounded, thinned by halving for a long job, and a round trip through JSON."""

from __future__ import annotations

from ugro_tui.core.ledger.history import MAX_POINTS, STEP, GpuHistory


def test_points_every_step_then_thinned_by_halving() -> None:
    history = GpuHistory()
    for i in range(0, 2 * 3600):  # two hours of 1 s samples
        history.add(1000.0 + i, 90.0, 8000, 200.0)
    assert len(history.points) <= MAX_POINTS and history.step == 2 * STEP
    gaps = {round(b[0] - a[0]) for a, b in zip(history.points, history.points[1:], strict=False)}
    assert gaps <= {10, 15}  # evenly spread, the coarser grain after the halving
    assert history.points[0][0] == 1000.0 and history.points[-1][0] >= 1000.0 + 2 * 3600 - 20  # the whole shape
    again = GpuHistory.from_json(history.to_json())
    assert again == history
    assert GpuHistory.from_json({"points": [[1, 2], "x", [3.0, None, None, None]]}).points == [
        (3.0, None, None, None, None)]
