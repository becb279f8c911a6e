"""One rule for handlers that draw: before a widget is mounted its children are not there (its on_mount draws
everything), and after it is removed there is nothing to draw on. Telemetry, job changes and log lines arrive at
any time, so a handler that draws is a no-op then instead of a crash."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from textual.dom import DOMNode

F = TypeVar("F", bound=Callable[..., Any])


def shown(node: DOMNode) -> bool:
    """Still in the app's DOM, and mounted, or in its own on_mount (Textual counts a widget mounted only after
    that returns; its children are all mounted by then)."""
    if not node.is_attached:
        return False
    return node.is_mounted or (bool(node.children) and all(child.is_mounted for child in node.children))


def when_shown(method: F) -> F:
    """Run `method` only while its widget is shown (see `shown`); otherwise it does nothing and returns None."""

    @functools.wraps(method)
    def guarded(self: DOMNode, *args: Any, **kwargs: Any) -> Any:
        if not shown(self):
            return None
        return method(self, *args, **kwargs)

    return guarded  # type: ignore[return-value]
