"""What the job store says after it recovered a damaged active.json from its previous generation (store.py
does the recovery): one line until the user acknowledges it, and which jobs' last change may be missing."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path


class RecoveryNotes:
    root: Path

    @property
    def recovery_path(self) -> Path:
        return self.root / "recovery.json"

    def recovery_notice(self) -> str | None:
        """One line while a recovery has not been acknowledged, else None."""
        try:
            note = json.loads(self.recovery_path.read_text())
        except (OSError, ValueError):
            return None
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(note.get("at", 0)))
        return (f"the job store was damaged ({note.get('why')}) and recovered at {when} from its previous "
                f"generation (the damaged file is {note.get('aside')}); the last change before it may be missing. "
                "`ugro queue --ack-recovery` hides this")

    def recovered_ids(self) -> set[int]:
        """Jobs of the generation a recovery went on from: their last change may be lost (a start, say)."""
        try:
            return {int(i) for i in json.loads(self.recovery_path.read_text()).get("jobs", [])}
        except (OSError, ValueError, TypeError, AttributeError):
            return set()

    def acknowledge_recovery(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.recovery_path.unlink()
