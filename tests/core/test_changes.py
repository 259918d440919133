"""The change signal a console watches (``core/changes.py``): a commit by another connection is
reported within a bounded wait, a burst of commits once, and the watcher stops cleanly."""

from __future__ import annotations

import threading
import time

import pytest

from mbxtui.core.changes import ChangeWatcher
from mbxtui.core.models import database
from mbxtui.core.services import users
from tests.backends import ON_POSTGRES, execute, query

DEADLINE_SECONDS = 10.0


class Calls:
    def __init__(self):
        self.count = 0
        self.changed = threading.Event()

    def __call__(self) -> None:
        self.count += 1
        self.changed.set()


@pytest.fixture
def people(admin) -> None:
    for number in range(3):
        users.add_user(admin, f"Person {number}", f"p{number}@corp.test")


def watch(calls: Calls, **bounds) -> ChangeWatcher:
    return ChangeWatcher(database.obj, calls, **bounds).start()


def test_another_connections_change_is_reported(db_path, people):
    calls = Calls()
    watcher = watch(calls)
    try:
        execute(db_path, "UPDATE mailbox SET name = 'Renamed' WHERE email = 'p1@corp.test'")
        assert calls.changed.wait(DEADLINE_SECONDS)
    finally:
        assert watcher.stop()


def test_a_burst_of_commits_is_reported_once(db_path, people):
    calls = Calls()
    watcher = watch(calls, settle_seconds=0.5)
    try:
        for number in range(20):
            execute(db_path, "UPDATE mailbox SET name = ? WHERE email = 'p2@corp.test'", [f"Burst {number}"])
        assert calls.changed.wait(DEADLINE_SECONDS)
        time.sleep(2.5)  # longer than the watcher's bounds (max delay 2 s): any second call has come by now
        assert calls.count == 1
    finally:
        assert watcher.stop()


def test_nothing_is_reported_without_a_change(db_path, people):
    calls = Calls()
    watcher = watch(calls)
    try:
        assert not calls.changed.wait(2.5)
    finally:
        assert watcher.stop()


def test_the_watcher_stops_promptly_and_closes_its_connection(db_path):
    watcher = watch(Calls())
    if ON_POSTGRES:
        assert query(db_path, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mbxtui changes'")[0][0] == 1
    started = time.monotonic()
    assert watcher.stop()
    assert time.monotonic() - started < 1.0
    assert not watcher.running
    if ON_POSTGRES:
        deadline = time.monotonic() + DEADLINE_SECONDS  # the server notices the closed socket shortly after
        while query(db_path, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mbxtui changes'")[0][0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_watcher_never_started_stops_too(db_path):
    assert ChangeWatcher(database.obj, Calls()).stop()
