"""What the console runs beside its screens through ``core/session.py``: the watch on changes made
elsewhere over the database it opened, and the checkpoints moved off the connections that write."""

from __future__ import annotations

import threading

from mbxtui.core.services import users
from mbxtui.core.session import start_checkpoints, watch_changes
from tests.backends import execute

DEADLINE_SECONDS = 10.0


def test_a_change_made_on_another_connection_reaches_the_console(db_path, admin):
    users.add_user(admin, "Person", "p@corp.test")
    changed = threading.Event()
    errors: list[Exception] = []
    watcher = watch_changes(changed.set, on_error=errors.append)
    try:
        execute(db_path, "UPDATE mailbox SET name = 'Renamed' WHERE email = 'p@corp.test'")
        assert changed.wait(DEADLINE_SECONDS)
        assert not errors
    finally:
        assert watcher.stop()


def test_checkpoints_start_and_stop_on_either_backend(db_path, admin):
    checkpoints = start_checkpoints()
    users.add_user(admin, "Person", "p@corp.test")  # a write while they run
    checkpoints.stop()
    assert not [thread for thread in threading.enumerate() if thread.name == "mbxtui-checkpoints"]
