"""The Sync monitor's read (``sync_monitor.snapshot``) at 100,000 mailboxes and 100,000 activities, on
SQLite; prints its figures, asserts nothing.

    .venv/bin/python bench/sync_monitor.py [--mailboxes 100000] [--activities 100000] [--repeat 5]

The mailboxes come from bench/make_mailboxes.py (built once, reused); a copy gets a sync status row for
each mailbox enabled for incoming, in every processing state, with last successful syncs spread over
two days, and ``--activities`` incoming activities created over the last ten hours (one in ten of
them in the last hour). Then: the whole snapshot, median of ``--repeat`` runs after a warm-up, and
each of its queries alone, so the one that grows is plain; then the same once every mailbox enabled
for incoming has its status row, as a pass leaves them (the never-cycled count reads no mailbox).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_mailboxes  # noqa: E402  (beside this file)

from mbxtui.core import db  # noqa: E402
from mbxtui.core.models import database, utcnow  # noqa: E402
from mbxtui.core.services import mailbox_views, operators, sync_monitor  # noqa: E402


def fill(count_activities: int) -> tuple[int, int]:
    now = utcnow()
    with database.atomic():
        database.execute_sql(
            "INSERT INTO sync_status (mailbox_id, state, items_last_cycle, items_total, unresolved_total, "
            "enabled_since, last_incoming_success, last_error_code, next_due, last_cycle_started) "
            "SELECT id, CASE WHEN id % 50 = 0 THEN 'waiting' WHEN id % 97 = 0 THEN 'disabled' "
            "WHEN id % 13 = 0 THEN 'processing' ELSE 'idle' END, 0, id % 1000, 0, ?, "
            "CASE WHEN id % 211 = 0 THEN NULL ELSE datetime(?, '-' || (id * 7919 % 172800) || ' seconds') END, "
            "CASE WHEN id % 50 = 0 THEN 'TIMEOUT' WHEN id % 97 = 0 THEN 'AUTH_FAILED' END, ?, ? "
            "FROM mailbox WHERE incoming_enabled = 1 AND incoming_method = 'server_side_sync' AND id % 40 <> 0",
            [now - timedelta(days=3), now, now, now - timedelta(minutes=1)])
        statuses = database.execute_sql("SELECT COUNT(*) FROM sync_status").fetchone()[0]
        database.execute_sql(
            "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?) "
            "INSERT INTO email_activity (direction, state, message_id, sender, \"to\", cc, subject, size, attachments, "
            "preview, in_reply_to, mailbox_id, created_on, received_on) "
            "SELECT 'incoming', 'received', '<' || n || '@bench.test>', 'someone@outside.test', '[]', '[]', "
            "'Message ' || n, 2000, '[]', 'A preview of some length for message ' || n, '', 1 + n % 1000, "
            "datetime(?, '-' || ((? - n) * 36000 / ?) || ' seconds'), ? FROM seq",
            [count_activities, now, count_activities, count_activities, now])
    return statuses, count_activities


def timed(call, repeat: int) -> str:
    """Wall and CPU time of ``call``, medians of ``repeat`` runs after a warm-up."""
    call()
    walls, cpus = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - started_cpu)
    return f"{statistics.median(walls) * 1000:8.1f} ms wall {statistics.median(cpus) * 1000:8.1f} ms CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailboxes", type=int, default=100_000)
    parser.add_argument("--activities", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    source = make_mailboxes.ensure(args.mailboxes)
    with tempfile.TemporaryDirectory(prefix="mbxtui-bench-monitor-") as scratch:
        path = Path(scratch) / "monitor.db"
        shutil.copyfile(source, path)
        opened = db.open_database(path)
        try:
            statuses, activities = fill(args.activities)
            actor = operators.current_actor(login=make_mailboxes.LOGIN)
            now = utcnow()
            seen = sync_monitor.snapshot(actor, now)
            print(f"{args.mailboxes:,} mailboxes, {statuses:,} sync status rows, {activities:,} activities "
                  f"({seen.messages_last_hour:,} in the last hour)")
            print(f"states {seen.states}; stale {seen.stale:,}; {len(seen.failures)} error codes; "
                  f"{len(seen.lags)} profiles")
            incoming_rows = sync_monitor._status_figures(now - timedelta(hours=24))[3]
            parts = {
                "snapshot (everything)": lambda: sync_monitor.snapshot(actor, now),
                "  states, failures, lag, stale (one join)":
                    lambda: sync_monitor._status_figures(now - timedelta(hours=24)),
                "  never cycled, some enabled without a row": lambda: sync_monitor._never_cycled(incoming_rows),
                "  per minute (the hour's index entries)": lambda: sync_monitor._per_minute(now),
                "the detail's sync status (mailbox_views.sync_of)": lambda: mailbox_views.sync_of(actor, 1),
            }
            for name, call in parts.items():
                print(f"{name:<42} {timed(call, args.repeat)}")
            # As a pass leaves them: every mailbox enabled for incoming has its status row.
            with database.atomic():
                database.execute_sql(
                    "INSERT INTO sync_status (mailbox_id, state, items_last_cycle, items_total, unresolved_total, "
                    "enabled_since, last_cycle_started) SELECT id, 'idle', 0, 0, 0, ?, ? FROM mailbox "
                    "WHERE incoming_enabled = 1 AND id NOT IN (SELECT mailbox_id FROM sync_status)", [now, now])
            incoming_rows = sync_monitor._status_figures(now - timedelta(hours=24))[3]
            print(f"{'snapshot, every enabled one with a row':<42} "
                  f"{timed(lambda: sync_monitor.snapshot(actor, now), args.repeat)}")
            print(f"{'  never cycled, every enabled one with a row':<42} "
                  f"{timed(lambda: sync_monitor._never_cycled(incoming_rows), args.repeat)}")
            full_scan = ("SELECT substr(created_on, 1, 16), COUNT(*) FROM email_activity NOT INDEXED "
                         "WHERE direction = 'incoming' AND created_on >= ? GROUP BY 1")
            scan = timed(lambda: database.execute_sql(full_scan, [now - timedelta(hours=1)]).fetchall(), args.repeat)
            print(f"{'  per minute by a scan of the table':<42} {scan}")
        finally:
            opened.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
