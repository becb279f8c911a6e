"""The core never imports Textual, and `ugro --help` loads neither Textual nor asyncssh."""

from __future__ import annotations

import subprocess
import sys

CORE_MODULES = [
    "ugro_tui.config", "ugro_tui.core.transport", "ugro_tui.core.hostkeys", "ugro_tui.core.check",
    "ugro_tui.core.telemetry.agent", "ugro_tui.core.telemetry.model", "ugro_tui.core.telemetry.monitor",
    "ugro_tui.core.sim.loopback", "ugro_tui.core.sim.stage", "ugro_tui.commands.status",
    "ugro_tui.core.jobs.model", "ugro_tui.core.jobs.store", "ugro_tui.core.jobs.placement",
    "ugro_tui.core.jobs.dispatcher", "ugro_tui.core.jobs.launcher", "ugro_tui.core.jobs.planner",
    "ugro_tui.core.jobs.logs", "ugro_tui.core.jobs.diagnose", "ugro_tui.core.jobs.actions",
    "ugro_tui.commands.jobs", "ugro_tui.commands.logs", "ugro_tui.commands.scheduler",
]


def loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return set(out.split())


def test_core_imports_no_textual() -> None:
    modules = loaded_after("\n".join(f"import {m}" for m in CORE_MODULES))
    assert not {m for m in modules if m == "textual" or m.startswith("textual.")}


def test_help_and_version_stay_light() -> None:
    modules = loaded_after("import contextlib, io\nfrom ugro_tui.cli import main\n"
                           "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
                           "    main(['--help'])")
    assert "textual" not in modules and "asyncssh" not in modules and "tinydb" not in modules
