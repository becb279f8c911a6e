"""A plain (non-editable) install has the themes, the shipped templates and the demo's script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = """
import json
from ugro_tui import data
from ugro_tui.core.jobs import templates
from ugro_tui.ui import themes
print(json.dumps({"module": data.__file__, "themes": sorted(t.name for t in themes.load_themes()),
                  "templates": templates.names(), "script": data.train_tiny().is_file()}))
"""


def test_a_built_wheel_carries_every_data_file(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=180,
                           cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    [wheel] = wheels.glob("ugro-*.whl")
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    # Run from elsewhere with the installed copy first on the path: the source tree is out of reach.
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["module"].startswith(str(target))
    assert got["themes"] == ["ugro-dark", "ugro-high-contrast", "ugro-light"]
    assert "train-tiny" in got["templates"] and got["script"]
