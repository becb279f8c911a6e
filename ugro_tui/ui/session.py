"""What the views share while the app runs, typed: screens read and write this, not loose attributes on the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ugro_tui.core.doctor.checks import Report
from ugro_tui.core.jobs.model import Job


@dataclass
class Session:
    dispatch_note: str = ""  # who dispatches: "dispatch: here" or the lock holder
    logs_job: int | None = None  # the job the Logs view shows (`l` in the Jobs view picks it)
    doctor_report: Report | None = None  # the last doctor run
    store_recovered: bool = False  # the job store was recovered from its previous generation, not yet acknowledged
    jobs_snapshot: list[Job] | None = None  # the store as last read in the background, so the Jobs view opens at once
    forwards: dict[int, Any] = field(default_factory=dict)  # service job id -> its local port (`f`), until exit
