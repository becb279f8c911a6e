"""One failure path for every worker: `Worker.StateChanged` does not bubble, so each screen routes it on purpose."""

from __future__ import annotations

from textual.worker import Worker, WorkerState


class ReportsWorkerFailures:
    """Mixed into every screen: a failed worker on it reaches the app's one handler (`UgroApp.worker_failed`)."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            handler = getattr(self.app, "worker_failed", None)  # type: ignore[attr-defined]
            if handler is not None:
                handler(event.worker)
