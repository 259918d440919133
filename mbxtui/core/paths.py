"""Where mbxtui keeps its files. Every path can be overridden by a flag or an environment variable:
``MBXTUI_DATA_DIR`` (the data directory), ``MBXTUI_DB`` (the database file)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir() -> Path:
    override = os.environ.get("MBXTUI_DATA_DIR")
    return Path(override).expanduser() if override else Path(platformdirs.user_data_dir("mbxtui", appauthor=False))


def default_database() -> Path:
    override = os.environ.get("MBXTUI_DB")
    return Path(override).expanduser() if override else data_dir() / "mbxtui.db"


def ensure_private_dir(path: Path) -> Path:
    """Create a directory readable by its owner only (existing directories are left as they are)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
