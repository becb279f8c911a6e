"""The core never imports Textual nor the simulator, config imports no core, and `ugro --help` stays light.

The modules are found by walking the package, so a new module is covered the day it is added."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

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


def _imports(path: Path, module: str, package: bool, known: set[str]) -> set[str]:
    """The ugro modules `module` imports anywhere (in functions too: a lazy import is still a dependency), except
    under `if TYPE_CHECKING:`, which never runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test) for stmt in block.body for n in ast.walk(stmt)}
    here = module if package else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            names = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def test_no_import_cycles() -> None:
    """A cycle is a missing seam: move the shared part down a layer instead of importing it lazily."""
    root = Path(ugro_tui.__file__).parent
    files = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if not name.startswith(NOT_MODULES):
            files[name] = path
    graph = {m: _imports(p, m, p.name == "__init__.py", set(files)) for m, p in files.items()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append(" → ".join([*path[path.index(dep):], dep]))
            elif dep not in state:
                walk(dep, [*path, dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


RUNTIME = ("ugro_tui.core.pool", "ugro_tui.core.telemetry.monitor", "ugro_tui.core.runtime",
           "ugro_tui.core.jobs.dispatcher", "ugro_tui.core.transport", "ugro_tui.core.doctor.run",
           "ugro_tui.core.doctor.smoke", "ugro_tui.core.jobs.keeper", "ugro_tui.core.services.forward")


def test_screens_and_the_web_build_no_runtime_of_their_own() -> None:
    """The daemon owns connections, telemetry and dispatch: the app, its screens and the web view only render what
    it pushes and ask it for the rest. Not imported anywhere in them (lazily neither), nor loaded with them."""
    root = Path(ugro_tui.__file__).parent
    known = set(modules()) | {"ugro_tui"}
    direct = {}
    for name in modules("ugro_tui.ui") + modules("ugro_tui.web"):
        path = root.parent / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        direct[name] = sorted(_imports(path, name, path.name == "__init__.py", known) & set(RUNTIME))
    assert not {m: d for m, d in direct.items() if d}
    loaded = loaded_after(modules("ugro_tui.ui") + modules("ugro_tui.web"))
    assert not loaded & {"ugro_tui.core.pool", "ugro_tui.core.telemetry.monitor", "ugro_tui.core.runtime",
                         "ugro_tui.core.jobs.dispatcher", "asyncssh"}


# The daemon's own hosts: `ugro daemon run`, `ugro scheduler`, `ugro web` and `ugro demo` (its lab's daemon).
DAEMON_HOSTS = ("ugro_tui.commands.daemon", "ugro_tui.commands.scheduler", "ugro_tui.commands.web",
                "ugro_tui.commands.demo")


def test_no_command_builds_a_runtime_of_its_own() -> None:
    """A verb that needs connections, telemetry or dispatch asks the daemon (started when none answers, else one
    line that says `ugro daemon start`); none of them imports the runtime, lazily neither."""
    root = Path(ugro_tui.__file__).parent
    known = set(modules()) | {"ugro_tui"}
    direct = {}
    for name in modules("ugro_tui.commands"):
        if name in DAEMON_HOSTS:
            continue
        path = root.parent / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        direct[name] = sorted(_imports(path, name, path.name == "__init__.py", known) & set(RUNTIME))
    assert len(direct) > 10 and not {m: d for m, d in direct.items() if d}
