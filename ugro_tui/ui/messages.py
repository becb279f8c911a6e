"""Typed messages from the core's workers to the widgets."""

from __future__ import annotations

from textual.message import Message

from ugro_tui.core.doctor.checks import Check, Report
from ugro_tui.core.telemetry.model import NodeStatus


class NodeUpdated(Message):
    """A node has a new sample or a new state. A burst for one node collapses into the latest."""

    def __init__(self, status: NodeStatus) -> None:
        super().__init__()
        self.status = status

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, NodeUpdated) and message.status.name == self.status.name


class DoctorCheckDone(Message):
    """One doctor check has a result (they arrive while the doctor runs)."""

    def __init__(self, check: Check) -> None:
        super().__init__()
        self.check = check


class DoctorFinished(Message):
    def __init__(self, report: Report | None, error: str | None = None) -> None:
        super().__init__()
        self.report = report
        self.error = error
