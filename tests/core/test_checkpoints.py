"""The console's background checkpoints: commits return without copying the WAL back, and the
WAL is copied back within a few seconds anyway."""

import time

import pytest

from mbxtui.core.db import BackgroundCheckpoints
from mbxtui.core.models import database


def wal_frames() -> tuple[int, int]:
    """(frames in the WAL, frames of it already copied into the database), without copying any."""
    _busy, log, done = database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return log, done


def write_rows(count: int) -> None:
    with database.atomic():
        database.execute_sql("CREATE TABLE IF NOT EXISTS filler (payload TEXT)")
        database.execute_sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                             "INSERT INTO filler SELECT hex(randomblob(500)) FROM n", [count])


@pytest.mark.sqlite_only("SQLite's write-ahead log")
def test_commits_leave_the_wal_to_the_checkpoint_thread(db_path):
    checkpoints = BackgroundCheckpoints(interval=0.2)
    try:
        assert database.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        write_rows(5000)  # several thousand pages: past the automatic checkpoint's 1,000
        deadline = time.monotonic() + 10
        while True:
            log, done = wal_frames()
            if log and done == log:
                break
            assert time.monotonic() < deadline, f"WAL not checkpointed: {done} of {log} frames"
            time.sleep(0.05)
    finally:
        checkpoints.stop()
    assert database.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
