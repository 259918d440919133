"""Schema step 11 and what it is for: the plans of the Activities screen's views and counts and of
the Sync monitor's messages per minute read an index in order, on both backends (the suite's
backend's own EXPLAIN of the SQL the services ran), and a database of step 10 gains the indexes."""

from __future__ import annotations

import logging
from datetime import datetime

import pytest

from mbxtui.core import db
from mbxtui.core.models import database
from mbxtui.core.services import activities, sync_monitor
from tests.backends import ON_POSTGRES
from tests.core.test_activities import record, received, support  # noqa: F401 (a fixture)

STEP_11_INDEXES = {"email_activity_direction_id", "email_activity_direction_created_on"}


def statements(caplog: pytest.LogCaptureFixture, read) -> list[tuple[str, list]]:
    """The SQL statements (with their parameters) that ``read()`` ran."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        read()
    return [record.msg for record in caplog.records if record.name == "peewee" and isinstance(record.msg, tuple)]


def plan(sql: str, params: list) -> str:
    if ON_POSTGRES:
        # At test sizes the planner rightly prefers reading the table: forbid that (and sorting),
        # so that the plan shows whether an index can give the rows in order at all.
        with database.atomic():
            database.execute_sql("SET LOCAL enable_seqscan = off")
            database.execute_sql("SET LOCAL enable_sort = off")
            return "\n".join(row[0] for row in database.execute_sql(f"EXPLAIN {sql}", params).fetchall())
    return "\n".join(row[3] for row in database.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params).fetchall())


def plan_of(caplog: pytest.LogCaptureFixture, read, containing: str) -> str:
    ran = [(sql, params) for sql, params in statements(caplog, read) if containing in sql]
    assert len(ran) == 1, ran
    return plan(*ran[0])


def assert_index_in_order(shown: str, index: str) -> None:
    if ON_POSTGRES:
        assert "Seq Scan" not in shown and "Sort" not in shown, shown  # disabled steps cost 1e10: used only if needed
    else:
        assert f"INDEX {index}" in shown and "TEMP B-TREE" not in shown, shown


@pytest.mark.parametrize("direction", ["incoming", "outgoing"])
def test_the_direction_views_and_their_counts_walk_an_index(admin, support, caplog, direction):  # noqa: F811
    record(support, 2, [received(1, "First"), received(2, "Second")])
    assert_index_in_order(plan_of(caplog, lambda: activities.page_activities(admin, direction=direction),
                                  "ORDER BY a.id DESC"), "email_activity_direction_id")
    counted = plan_of(caplog, lambda: activities.count_activities(admin, direction=direction), "count(*)")
    assert "Seq Scan" not in counted if ON_POSTGRES else "USING COVERING INDEX email_activity_direction" in counted


def test_a_state_view_reads_the_state_index_whatever_the_direction(admin, support, caplog):  # noqa: F811
    record(support, 1, [received(1, "First")])
    shown = plan_of(caplog, lambda: activities.page_activities(admin, direction="outgoing", state="failed"),
                    "ORDER BY a.id DESC")
    assert_index_in_order(shown, "email_activity_state")
    if ON_POSTGRES:
        assert "email_activity_state" in shown, shown


def test_the_monitors_messages_per_minute_read_the_hours_index_entries(admin, support, caplog):  # noqa: F811
    record(support, 1, [received(1, "First")])
    shown = plan_of(caplog, lambda: sync_monitor.snapshot(admin, datetime(2026, 12, 6, 12, 0)), "GROUP BY minute")
    if ON_POSTGRES:
        assert "email_activity_direction_created_on" in shown and "Seq Scan" not in shown, shown
    else:
        assert "INDEX email_activity_direction_created_on (direction=? AND created_on>?)" in shown, shown


def test_a_database_of_step_10_gains_the_indexes_and_keeps_its_activities(admin, support,  # noqa: F811
                                                                          monkeypatch: pytest.MonkeyPatch):
    record(support, 1, [received(1, "Kept")])
    for index in STEP_11_INDEXES:
        database.execute_sql(f'DROP INDEX "{index}"')
    # Migrating from 10 applies step 11 and, so that this test holds whatever later steps exist, nothing after it.
    monkeypatch.setattr(db, "MIGRATIONS", [step for step in db.MIGRATIONS if step[0] <= 11])
    monkeypatch.setattr(db, "POSTGRES_MIGRATIONS", [step for step in db.POSTGRES_MIGRATIONS if step[0] <= 11])
    if ON_POSTGRES:
        database.execute_sql("UPDATE schema_version SET version = 10")
        assert db.migrate_postgres(database.obj) == 11
        names = {row[0] for row in database.execute_sql(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'email_activity'").fetchall()}
    else:
        database.execute_sql("PRAGMA user_version = 10")
        assert db.migrate(database.connection()) == 11
        names = {row[0] for row in database.execute_sql(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'email_activity'").fetchall()}
    assert STEP_11_INDEXES <= names
    assert [row["subject"] for row in activities.page_activities(admin)] == ["Kept"]
