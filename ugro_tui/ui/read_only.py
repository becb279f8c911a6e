"""Read-only mode in the app: every key that would change something is hidden from the footer and does nothing."""

from __future__ import annotations

# Action names (with their parameters where one action both looks and changes) that change jobs, nodes or files.
CHANGES = frozenset({
    "new_job", "cancel_job", "hold", "retry", "edit", "add_node", "edit_node", "remove_node", "trust",
    "cancel_sweep", "submit", "save_template", "save", "signal", "resume", ("run", (True,)), "session",
    "yield_gpu",
})


def refused(app: object, action: str, parameters: tuple[object, ...]) -> bool:
    if not getattr(getattr(app, "cluster", None), "read_only", False):
        return False
    return action in CHANGES or (action, tuple(parameters)) in CHANGES


class ReadOnlyAware:
    """Mixed into the app and every screen with a key that changes something."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        app = getattr(self, "app", self)
        return not refused(app, action, parameters)
