"""What a backward jump of the clock makes a worker read, planned by each backend: no statement of
``clock_jumps.bring_back`` (run inside the lease renewal's write transaction, so every writer waits
for it) or of ``left_ahead`` (run at every worker's start) reads the whole mailbox table, the
sync status or the owners' notices, or the email activities (every email of every mailbox) for the
few waiting to be sent. At 1,000,000 mailboxes the two statements that read the mailboxes held the
lock 0.5 s of 1.8 s on SQLite and 1.9 s of 3.3 s on PostgreSQL (bench/README.md, clock_jumps.py);
schema step 17 gave them partial indexes. The one pass left over the sync status took 0.2 s more;
schema step 18 gave its moments indexes, and the owners' notices one.

PostgreSQL is asked with sequential scans priced out (``enable_seqscan`` off), so the answer does
not depend on how few rows the test's table holds: it scans anyway only when no index serves."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from mbxtui.core.db import write_transaction
from mbxtui.core.jobs import clock_jumps
from mbxtui.core.models import database
from tests.backends import ON_POSTGRES
from tests.core.conftest import actors, admin, db_path, imap_profile, template_db  # noqa: F401  (fixtures)


class RecordingDatabase:
    """``database``, remembering each statement run through ``execute_sql``."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, list[Any]]] = []

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        self.statements.append((sql, list(params or [])))
        return database.execute_sql(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(database, name)


# The tables that grow with the mailboxes or with time (connection_lease holds a row per profile a
# running worker holds slots of, mailbox_failure the directions failing now: R16).
WHOLE = ("mailbox", "email_activity", "sync_status", "owner_notice", "alert", "test_job")


def _partial_indexes() -> set[str]:
    return {row[0] for row in database.execute_sql(
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indpred IS NOT NULL").fetchall()}


def _scans_of_mailbox(sql: str, params: list[Any]) -> list[str]:
    if ON_POSTGRES:
        plan = database.execute_sql(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()[0]
        nodes, found = [((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"], "")], []
        while nodes:
            node, parent = nodes.pop()
            if node["Node Type"] == "Seq Scan" and node.get("Relation Name") in WHOLE:
                found.append(f"Seq Scan on {node['Relation Name']} (filter {node.get('Filter')})")
            elif (node["Node Type"] in ("Index Scan", "Index Only Scan") and node.get("Relation Name") in WHOLE
                  and "Index Cond" not in node and node["Index Name"] not in _partial_indexes()
                  and parent not in ("Limit", "Aggregate")):
                # A maximum reads the index's last entry (Limit); the test's tiny table is aggregated whole.
                # With sequential scans priced out, a whole index walked in place of the table.
                found.append(f"{node['Node Type']} of all {node['Index Name']} (filter {node.get('Filter')})")
            nodes += [(child, node["Node Type"]) for child in node.get("Plans", [])]
        return found
    return [row[3] for row in database.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            if row[3] in ("SCAN m", *(f"SCAN {table}" for table in WHOLE))]  # an index walk says USING ... INDEX


def test_bringing_back_and_finding_what_a_jump_left_read_no_whole_table_of_mailboxes_or_activities(imap_profile):  # noqa: F811
    recording = RecordingDatabase()
    now = datetime(2026, 1, 1, 12, 0, 0)
    clock_jumps.database = recording
    try:
        with write_transaction():
            clock_jumps.bring_back(now, 60)
            clock_jumps.left_ahead(now)
            if ON_POSTGRES:
                database.execute_sql("SET LOCAL enable_seqscan = off")
            of_mailbox = [(sql, params) for sql, params in recording.statements
                          if any(f" {table}" in sql for table in WHOLE)]
            scans = {sql: _scans_of_mailbox(sql, params) for sql, params in of_mailbox}
    finally:
        clock_jumps.database = database
    assert {sql: found for sql, found in scans.items() if found} == {}
    assert len(of_mailbox) >= 10, ("the retries, the attempt, the test, the claims' ends, the sync status's "
                                   "moments, the owners' notices, the next poll and left_ahead's maxima")
