"""Where mbxtui keeps its files. Every path can be overridden by a flag or an environment variable:
``MBXTUI_DATA_DIR`` (the data directory), ``MBXTUI_CONFIG_DIR`` (the user's settings, such as the
console's ``keymap.toml``), ``MBXTUI_DB`` (the database file, or a
``postgresql://USER@HOST:PORT/DBNAME`` URL)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir() -> Path:
    override = os.environ.get("MBXTUI_DATA_DIR")
    return Path(override).expanduser() if override else Path(platformdirs.user_data_dir("mbxtui", appauthor=False))


def config_dir() -> Path:
    override = os.environ.get("MBXTUI_CONFIG_DIR")
    return Path(override).expanduser() if override else Path(platformdirs.user_config_dir("mbxtui", appauthor=False))


SERVER_SCHEMES = ("postgresql", "postgres")


def is_server_url(location: object) -> bool:
    """True when ``location`` names a database server (postgresql://...) rather than a SQLite file."""
    return isinstance(location, str) and "://" in location and location.split(":", 1)[0].lower() in SERVER_SCHEMES


SQLITE_SCHEME = "sqlite://"


def database_location(location: str | Path) -> Path | str:
    """A SQLite file path (also given as ``sqlite:///absolute/path`` or ``sqlite://relative/path``),
    or a server URL kept as the text it is."""
    if is_server_url(location):
        return str(location)
    if isinstance(location, str) and location.lower().startswith(SQLITE_SCHEME):
        location = location[len(SQLITE_SCHEME):]
    return Path(location).expanduser()


def default_database() -> Path | str:
    override = os.environ.get("MBXTUI_DB")
    return database_location(override) if override else data_dir() / "mbxtui.db"


def ensure_private_dir(path: Path) -> Path:
    """Create a directory readable by its owner only (existing directories are left as they are)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
