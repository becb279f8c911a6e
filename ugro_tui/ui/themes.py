"""Themes are data files (themes/*.toml); the user's choice is saved to $XDG_CONFIG_HOME/ugro/settings.toml."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from textual.theme import Theme

from ugro_tui import data, paths
from ugro_tui.atomic import write_atomic

DEFAULT_THEME = "ugro-dark"
THEME_FIELDS = {"name", "dark", "primary", "secondary", "accent", "foreground", "background", "surface", "panel",
                "boost", "success", "warning", "error", "variables"}


def theme_dirs() -> list[Path]:
    dirs = [data.folder("themes"), paths.config_home() / "themes"]
    extra = os.environ.get("UGRO_THEMES")
    return ([Path(extra)] if extra else []) + dirs


def load_themes() -> list[Theme]:
    """Every readable theme file; a broken one is skipped (the app still starts with the rest)."""
    themes: dict[str, Theme] = {}
    for folder in theme_dirs():
        for file in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            try:
                data = tomllib.loads(file.read_text())
                theme = Theme(**{k: v for k, v in data.items() if k in THEME_FIELDS})
            except (OSError, ValueError, TypeError):
                continue
            themes.setdefault(theme.name, theme)
    return list(themes.values())


def settings_path() -> Path:
    return paths.config_home() / "settings.toml"


def load_settings() -> dict[str, Any]:
    try:
        return tomllib.loads(settings_path().read_text())
    except (OSError, ValueError):
        return {}


def save_setting(key: str, value: Any) -> None:
    settings = load_settings()
    settings[key] = value
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, tomli_w.dumps(settings))
