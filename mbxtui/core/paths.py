"""Where mbxtui keeps its files. Every path can be overridden by a flag or an environment variable:
``MBXTUI_DATA_DIR`` (the data directory), ``MBXTUI_CONFIG_DIR`` (the user's settings, such as the
console's ``keymap.toml``), ``MBXTUI_DB`` (the database file, or a
``postgresql://USER@HOST:PORT/DBNAME`` URL).

Every directory mbxtui makes is made by ``ensure_private_dir``: 0700, missing parents too, whatever
the umask. A file or directory owned by another user is refused where mbxtui would write beside it
(its data directory here, the SQLite file in ``db.py``)."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import platformdirs

from mbxtui.core.errors import MbxError


class ForeignOwner(MbxError):
    """A directory mbxtui would write in belongs to another user."""


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
    """``path`` as a directory, made with each missing parent 0700 whatever the umask (existing
    directories are left as they are). Raises OSError (FileExistsError: a file is in the way)."""
    path = Path(path)
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by another process, which sets its mode itself
        # mkdir's mode is masked by the umask (0o277 would leave it unwritable): set it whole.
        os.chmod(directory, 0o700)
    if not path.is_dir():
        path.mkdir(mode=0o700, exist_ok=True)  # a file in the way: FileExistsError
    return path


def open_owner_only(path: Path, flags: int = 0) -> int:
    """A write descriptor on ``path`` (with extra open ``flags``, such as O_EXCL or O_APPEND); a file
    this call creates is 0600 whatever the umask (under umask 0277 the mode given to open alone
    would leave it 0400, which its owner could not open for writing again)."""
    existed = os.path.lexists(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | flags, 0o600)
    if not existed:
        os.fchmod(fd, 0o600)
    return fd


def user_name(uid: int) -> str:
    """The login of ``uid``, or ``uid N`` when no account has it."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def foreign_owner(path: Path) -> str | None:
    """The owner of ``path`` when it exists and is not the effective user, else None."""
    try:
        uid = os.stat(path).st_uid
    except OSError:
        return None
    return user_name(uid) if uid != os.geteuid() else None


def private_data_dir() -> Path:
    """The data directory, made 0700 when missing; ForeignOwner when it belongs to another user."""
    directory = data_dir()
    owner = foreign_owner(directory)
    if owner is not None:
        raise ForeignOwner(
            f"the data directory {directory} is owned by {owner}, not by {user_name(os.geteuid())}: "
            f"run mbxtui as {owner}, or choose a directory of your own with MBXTUI_DATA_DIR")
    return ensure_private_dir(directory)


def writable_by_others(path: Path) -> bool:
    """Whether the group or everyone may write ``path`` (False when it does not exist)."""
    try:
        return bool(os.stat(path).st_mode & (stat.S_IWGRP | stat.S_IWOTH))
    except OSError:
        return False


def storage_warnings(location: Path | str, data_dir: Path) -> list[str]:
    """One sentence per file others could read or change: the data directory, and for a SQLite
    database its file, its -wal and -shm, and the directory that holds it."""
    found: list[str] = []
    if writable_by_others(data_dir):
        found.append(f"the data directory {data_dir} can be written by other users; run: chmod 700 {data_dir}")
    if is_server_url(location):
        return found
    path = Path(location).expanduser()
    if path.parent.resolve() != Path(data_dir).expanduser().resolve() and writable_by_others(path.parent):
        found.append(f"the directory {path.parent} of the database can be written by other users, who could "
                     f"replace or plant files beside it; move the database to a directory only you can write to")
    problem = _shared_with_others(path)
    if problem:
        found.append(f"{path} {problem}; run: chmod 600 {path}")
    for companion in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        # SQLite gives them the file's mode: said once above when it is the file's.
        if writable_by_others(companion) and not writable_by_others(path):
            found.append(f"{companion} can be written by other users; run: chmod 600 {companion}")
    return found


def _shared_with_others(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    readable, writable = mode & (stat.S_IRGRP | stat.S_IROTH), mode & (stat.S_IWGRP | stat.S_IWOTH)
    if readable and writable:
        return "can be read and written by other users"
    if writable:
        return "can be written by other users"
    return "can be read by other users" if readable else None
