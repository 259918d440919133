"""Benchmark of what a backward jump of the clock costs a worker at 1,000,000 mailboxes, on SQLite and
PostgreSQL: ``clock_jumps.bring_back`` runs inside the lease renewal's write transaction (and a
worker's start), so every writer waits for it; ``clock_jumps.left_ahead`` runs at every start.

    python bench/clock_jumps.py [--backends sqlite,postgresql] [--mailboxes 1000000] [--before FILE]

Prints its figures; asserts nothing. The database of make_mailboxes.py at schema step 16, copied
(into PostgreSQL with ``mbxtui.core.transfer``, then vacuumed); every enabled mailbox gets a sync
status last synced a day ago, and the jump back is laid out as it leaves a database: 1 mailbox in
1,000 tested, enabled and synced 3 h ahead of the clock, 1 in 10,000 waiting for a retry 3 h ahead.
``bring_back`` runs 3 times, each in a transaction rolled back: the median, and the time of each
statement in that run. ``--before FILE`` runs a clock_jumps.py of an earlier version
(``git show REV:mbxtui/core/jobs/clock_jumps.py > FILE``) the same way on the database at step
``--before-step`` (16, the default, or later); then the database is brought to the latest step
(timed) and this version's runs. Beside each, what the indexes of the sync status cost a worker's
processing: the statements a pass runs on the sync status of 1,000 mailboxes it cycles (the claim,
its read-back by the worker's name, a renewal, the end of the cycles), medians of 3 runs rolled
back. The copy into PostgreSQL takes 7 min under load; ``--pg-url URL`` uses one made before (at
step 16).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent))

import make_mailboxes  # noqa: E402  (beside this file)

from mbxtui.core import clock, db  # noqa: E402
from mbxtui.core.jobs import clock_jumps  # noqa: E402
from mbxtui.core.models import database  # noqa: E402

BEFORE_STEP = 16
RUNS = 3


@contextmanager
def at_step(step: int):
    """Open databases at schema ``step`` (as tests/core/test_authorization_schema.py does)."""
    kept = {name: getattr(db, name) for name in ("MIGRATIONS", "POSTGRES_MIGRATIONS", "LATEST_VERSION")}
    kept_build = make_mailboxes.LATEST_VERSION
    try:
        db.MIGRATIONS, db.POSTGRES_MIGRATIONS = kept["MIGRATIONS"][:step], kept["POSTGRES_MIGRATIONS"][:step]
        db.LATEST_VERSION = make_mailboxes.LATEST_VERSION = step
        yield
    finally:
        for name, value in kept.items():
            setattr(db, name, value)
        make_mailboxes.LATEST_VERSION = kept_build


class TimedDatabase:
    """``database`` with each ``execute_sql`` timed (the first 70 characters of its SQL)."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []

    def execute_sql(self, sql, params=None):
        started = time.perf_counter()
        cursor = database.execute_sql(sql, params)
        self.times.append((" ".join(sql.split())[:70], time.perf_counter() - started))
        return cursor

    def __getattr__(self, name):
        return getattr(database, name)


def lay_out_the_jump(now: datetime, postgresql: bool) -> None:
    day_ago, ahead = now - timedelta(days=1), now + timedelta(hours=3)
    with database.atomic():
        if postgresql:
            # The rows are the mailboxes' own: no key to check. Checked, the 870,000 rows locked
            # their mailboxes one by one for over 15 min (a 1 GB table through 128 MB of buffers).
            database.execute_sql("SET LOCAL session_replication_role = replica")
        database.execute_sql(
            "INSERT INTO sync_status (mailbox_id, state, items_last_cycle, items_total, unresolved_total, "
            "enabled_since, last_cycle_started, last_cycle_finished, last_incoming_success, next_due) "
            "SELECT id, 'idle', 0, 0, 0, ?, ?, ?, ?, ? FROM mailbox WHERE incoming_enabled = 1 OR outgoing_enabled = 1",
            [day_ago - timedelta(days=30), day_ago, day_ago, day_ago, day_ago + timedelta(minutes=5)])
        database.execute_sql("UPDATE mailbox SET test_completed_on = ?, test_last_attempted_on = ? "
                             "WHERE id % 1000 = 0", [ahead, ahead])
        database.execute_sql("UPDATE mailbox SET postponed_until = ? WHERE id % 10000 = 5",
                             [ahead + timedelta(minutes=5)])
        database.execute_sql("UPDATE sync_status SET enabled_since = ?, last_cycle_started = ?, "
                             "last_cycle_finished = ?, last_incoming_success = ?, next_due = ? "
                             "WHERE mailbox_id % 1000 = 0", [ahead, ahead, ahead, ahead, ahead + timedelta(minutes=5)])


def measure(module: ModuleType, now: datetime, label: str) -> None:
    timed = TimedDatabase()
    module.database = timed
    try:
        runs = []
        for _ in range(RUNS):
            timed.times.clear()
            with database.atomic() as transaction:
                started = time.perf_counter()
                moved = module.bring_back(now, 60.0)
                runs.append((time.perf_counter() - started, moved, list(timed.times)))
                transaction.rollback()
        started = time.perf_counter()
        ahead = module.left_ahead(now)
        left_ahead_seconds = time.perf_counter() - started
    finally:
        module.database = database
    runs.sort(key=lambda run: run[0])
    total, moved, statements = runs[len(runs) // 2]
    print(f"  {label}: bring_back {total:.3f} s (runs {', '.join(f'{run[0]:.3f}' for run in runs)}), "
          f"{moved} values moved; left_ahead {left_ahead_seconds * 1000:.1f} ms ({ahead})", flush=True)
    for sql, seconds in sorted(statements, key=lambda item: -item[1])[:8]:
        print(f"      {seconds:8.4f} s  {sql}", flush=True)


def measure_cycles(now: datetime, label: str) -> None:
    ids = [row[0] for row in database.execute_sql(
        "SELECT mailbox_id FROM sync_status WHERE mailbox_id % 1000 = 1 ORDER BY mailbox_id LIMIT 1000").fetchall()]
    marks = ", ".join("?" * len(ids))
    until, worker = now + timedelta(seconds=60), "bench-worker"
    statements = {
        "claim": ("UPDATE sync_status SET worker = ?, lease_until = ?, state = 'processing', last_cycle_started = ? "
                  f"WHERE mailbox_id IN ({marks}) AND (worker IS NULL OR lease_until < ?)", [worker, until, now, *ids, now]),
        "read back": ("SELECT mailbox_id FROM sync_status WHERE worker = ? ORDER BY mailbox_id", [worker]),
        "renew": ("UPDATE sync_status SET lease_until = ? WHERE worker = ?", [until, worker]),
        "finish": ("UPDATE sync_status SET worker = NULL, lease_until = NULL, last_cycle_finished = ?, "
                   f"items_last_cycle = ?, next_due = ? WHERE mailbox_id IN ({marks}) AND worker = ?",
                   [now, 0, now + timedelta(minutes=5), *ids, worker]),
    }
    times: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(RUNS):
        with database.atomic() as transaction:
            for name, (sql, params) in statements.items():
                started = time.perf_counter()
                database.execute_sql(sql, params).fetchall() if name == "read back" else database.execute_sql(sql, params)
                times[name].append(time.perf_counter() - started)
            transaction.rollback()
    print(f"  {label}, a pass over {len(ids)} mailboxes: "
          + ", ".join(f"{name} {statistics.median(values) * 1000:.1f} ms" for name, values in times.items()), flush=True)


def load_before(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("clock_jumps_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(location: str, before: ModuleType | None, analyze: bool, before_step: int = BEFORE_STEP) -> None:
    now = clock.now()
    with at_step(before_step):
        db.open_database(location)
        if analyze:
            database.execute_sql("VACUUM ANALYZE")
        lay_out_the_jump(now, postgresql=analyze)
        if analyze:
            database.execute_sql("VACUUM ANALYZE")
        if before is not None:
            measure(before, now, f"schema {before_step}, the earlier clock_jumps.py")
            measure_cycles(now, f"schema {before_step}")
        database.close()
    started = time.perf_counter()
    db.open_database(location)
    print(f"  brought to the latest step in {time.perf_counter() - started:.2f} s", flush=True)
    if analyze:
        database.execute_sql("ANALYZE mailbox")
    measure(clock_jumps, now, "latest schema, this clock_jumps.py")
    measure_cycles(now, "latest schema")
    database.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--mailboxes", type=int, default=1_000_000)
    parser.add_argument("--before", type=Path, help="a clock_jumps.py of an earlier version")
    parser.add_argument("--before-step", type=int, default=BEFORE_STEP,
                        help="the schema step --before runs on (the database is built at 16)")
    parser.add_argument("--pg-url", help="a PostgreSQL database copied in before, still at step 16 "
                                         "(instead of a server of its own and the copy)")
    args = parser.parse_args()
    before = load_before(args.before) if args.before else None
    print(f"load average at start: {' '.join(f'{value:.2f}' for value in os.getloadavg())}", flush=True)
    with at_step(BEFORE_STEP):
        source = make_mailboxes.ensure(args.mailboxes)
    work = Path(tempfile.mkdtemp(prefix="mbxtui-bench-clock-"))
    try:
        for backend in args.backends.split(","):
            print(f"{backend}, {args.mailboxes:,} mailboxes:", flush=True)
            if backend == "sqlite":
                copy = work / "clock.db"
                shutil.copyfile(source, copy)
                run(str(copy), before, analyze=False, before_step=args.before_step)
                copy.unlink()
            elif backend == "postgresql" and args.pg_url:
                run(args.pg_url, before, analyze=True, before_step=args.before_step)
            elif backend == "postgresql":
                from mbxtui.core import transfer
                from tests.lab.postgres import start_postgres

                server = start_postgres()
                try:
                    url = server.create_database("clock_jumps")
                    started = time.perf_counter()
                    with at_step(BEFORE_STEP):
                        transfer.copy_installation(source, url)
                    print(f"  copied in {time.perf_counter() - started:.0f} s", flush=True)
                    run(url, before, analyze=True, before_step=args.before_step)
                finally:
                    server.stop()
            else:
                parser.error("--backends: sqlite, postgresql or both")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at end: {' '.join(f'{value:.2f}' for value in os.getloadavg())}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
