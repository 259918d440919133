"""What a console keeps running beside its screens, over the database it opened: the watch on
changes made elsewhere and, on SQLite, the WAL checkpoints moved off the connections that write.
The console reaches the database only through this module and the services."""

from __future__ import annotations

from typing import Callable

from mbxtui.core.changes import DATABASE_ERRORS, ChangeWatcher
from mbxtui.core.db import BackgroundCheckpoints
from mbxtui.core.errors import MbxError, one_line
from mbxtui.core.models import database


class ChangeSignalUnavailable(MbxError):
    """The database's change signal could not be opened; the message says why, on one line."""


def watch_changes(on_change: Callable[[], None], *, on_error: Callable[[Exception], None]) -> ChangeWatcher:
    """Start watching the open database for changes made elsewhere (see ``core/changes.py``);
    raises ``ChangeSignalUnavailable`` when its signal cannot be opened."""
    try:
        return ChangeWatcher(database.obj, on_change, on_error=on_error).start()
    except DATABASE_ERRORS as exc:
        raise ChangeSignalUnavailable(one_line(exc)) from None


def start_checkpoints() -> BackgroundCheckpoints:
    """WAL checkpoints on a thread of their own for the connections opened from now on (SQLite)."""
    return BackgroundCheckpoints()
