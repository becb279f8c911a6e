"""The core never imports Textual nor the simulator, config imports no core, and `ugro --help` stays light.

The modules are found by walking the package, so a new module is covered the day it is added."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import ugro_tui

# Not importable as modules of the app: scripts that run on nodes, the demo's training script, the entry point.
NOT_MODULES = ("ugro_tui.sim.node", "ugro_tui.data.train_tiny", "ugro_tui.data.serve_tiny", "ugro_tui.__main__")


def modules(prefix: str = "ugro_tui") -> list[str]:
    found = [m.name for m in pkgutil.walk_packages(ugro_tui.__path__, "ugro_tui.")]
    return sorted(m for m in found if m.startswith(prefix) and not m.startswith(NOT_MODULES))


def loaded_after(imports: list[str] | str) -> set[str]:
    code = imports if isinstance(imports, str) else "\n".join(f"import {m}" for m in imports)
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return set(out.split())


def under(names: set[str], package: str) -> set[str]:
    return {m for m in names if m == package or m.startswith(package + ".")}


def test_the_walk_finds_the_core() -> None:
    core = modules("ugro_tui.core")
    assert {"ugro_tui.core.pool", "ugro_tui.core.runtime", "ugro_tui.core.jobs.logs"} <= set(core)
    assert len(core) >= 25


def test_nothing_outside_ui_imports_textual() -> None:
    outside = [m for m in modules() if not m.startswith("ugro_tui.ui")]
    assert not under(loaded_after(outside), "textual")


def test_core_does_not_depend_on_the_simulator() -> None:
    loaded = loaded_after(modules("ugro_tui.core"))
    assert not under(loaded, "ugro_tui.sim")


def test_config_imports_no_core() -> None:
    assert not under(loaded_after(["ugro_tui.config"]), "ugro_tui.core")


def test_help_and_version_stay_light() -> None:
    loaded = loaded_after("import contextlib, io\nfrom ugro_tui.cli import main\n"
                          "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
                          "    main(['--help'])")
    assert not (under(loaded, "textual") | under(loaded, "asyncssh") | under(loaded, "tinydb"))
