"""Benchmark of the bulk actions at 1,000,000 mailboxes, on SQLite and on PostgreSQL.

    python bench/bulk.py [--backends sqlite,postgresql] [--mailboxes 1000000]
                         [--actions approve,reject,bulk_edit,deactivate] [--views all,pending]
                         [--ways view,ids] [--statements]

Prints its figures; asserts nothing. For each backend, view (All, Pending Approval) and way of
naming the mailboxes, each action runs once on a fresh copy of the database, timed from the
service call to its return (its transaction committed; on SQLite the WAL is checkpointed on a
thread of its own, as the console does):

- view: ``Selection.of_view(view, up_to_id=...)``, what the console sends after "mark all";
- ids: ``Selection.of_ids`` with every id of the view, what it sends when the marks are not a
  whole view (say after unmarking one row). Reading the ids is not timed.

The actions: approve, reject, bulk edit (profile ``pop3-legacy``: every mailbox not on it has its
tests reset) and deactivate. ``--statements`` also prints the time of each SQL statement and of
the commit, the profile of where the time goes.

The SQLite database comes from make_mailboxes.py and is copied (and synced) before each run. For
PostgreSQL a private server is started as the test suite starts it (tests/lab/postgres.py: fsync
off, so commits cost no disk flush), the SQLite database is copied into it once with
``mbxtui.core.transfer`` and vacuumed, and each run gets its own ``CREATE DATABASE ... TEMPLATE``
(``--pg-template URL`` reuses a database copied before, on a server kept running).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent))

import make_mailboxes  # noqa: E402  (beside this file)

from mbxtui.core import db  # noqa: E402
from mbxtui.core.models import database  # noqa: E402
from mbxtui.core.services import bulk, operators  # noqa: E402
from mbxtui.core.services.mailbox_views import ids_in_view  # noqa: E402
from mbxtui.core.services.selection import Selection  # noqa: E402

TARGET_SECONDS = 3.0
PG_TEMPLATE = "bulk_template"
ACTIONS: dict[str, Callable[[Any, Selection], bulk.BulkResult]] = {
    "approve": bulk.approve,
    "reject": bulk.reject,
    "bulk_edit": lambda actor, selection: bulk.bulk_edit(actor, selection, profile="pop3-legacy"),
    "deactivate": bulk.deactivate,
}


@dataclass
class Statements:
    """Time spent in each SQL statement (its first words) and in commits, while installed."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, label: str, seconds: float) -> None:
        self.seconds[label] = self.seconds.get(label, 0.0) + seconds

    @contextmanager
    def installed(self) -> Iterator[None]:
        connection = database.obj
        execute_sql, commit = connection.execute_sql, connection.commit

        def timed_execute(sql: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return execute_sql(sql, params, *args, **kwargs)
            finally:
                self.add(" ".join(sql.split())[:110], time.perf_counter() - started)

        def timed_commit(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return commit(*args, **kwargs)
            finally:
                self.add("(commit)", time.perf_counter() - started)

        connection.execute_sql, connection.commit = timed_execute, timed_commit
        try:
            yield
        finally:
            del connection.execute_sql, connection.commit


class SqliteCopies:
    name = "SQLite"

    def __init__(self, source: Path, scratch: Path) -> None:
        self.source, self.scratch = source, scratch

    @contextmanager
    def fresh(self) -> Iterator[str]:
        copy = self.scratch / "copy.db"
        shutil.copyfile(self.source, copy)
        with open(copy, "rb+") as handle:
            os.fsync(handle.fileno())
        try:
            yield str(copy)
        finally:
            for leftover in self.scratch.iterdir():
                leftover.unlink(missing_ok=True)


class PostgresCopies:
    name = "PostgreSQL"

    def __init__(self, source: Path, template_url: str | None = None) -> None:
        """Copies of ``template_url`` (a database already holding the mailboxes, on a server
        this benchmark may create databases on), else of ``source`` copied into a new private server."""
        import psycopg2

        self.server = None
        if template_url is None:
            from mbxtui.core import transfer
            from tests.lab.postgres import start_postgres

            self.server = start_postgres()
            template_url = self.server.create_database(PG_TEMPLATE)
            started = time.perf_counter()
            transfer.copy_installation(source, template_url)
            self.server.psql("VACUUM ANALYZE", database=PG_TEMPLATE)
            print(f"  copied {source.name} into PostgreSQL and vacuumed it in {time.perf_counter() - started:.0f} s",
                  flush=True)
        parts = urlsplit(template_url)
        self.template = parts.path.lstrip("/")
        self.url_of = lambda name: urlunsplit(parts._replace(path="/" + name))
        self.admin = psycopg2.connect(self.url_of("postgres"))
        self.admin.autocommit = True
        with self.admin.cursor() as cursor:
            cursor.execute("SHOW server_version")
            self.name = f"PostgreSQL {cursor.fetchone()[0].split()[0]}"
        self.runs = 0

    @contextmanager
    def fresh(self) -> Iterator[str]:
        self.runs += 1
        name = f"bulk_run_{self.runs}"
        with self.admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}" STRATEGY = FILE_COPY')
        try:
            yield self.url_of(name)
        finally:
            with self.admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        self.admin.close()
        if self.server is not None:
            self.server.stop()


def run_one(location: str, action: str, view: str, way: str, statements: bool) -> dict[str, Any]:
    opened = db.open_database(location)
    checkpoints = db.BackgroundCheckpoints() if not location.startswith("postgresql") else None  # as the console runs
    try:
        actor = operators.current_actor(login=make_mailboxes.LOGIN)
        ids = ids_in_view(actor, view=view)
        selection = Selection.of_ids(sorted(ids)) if way == "ids" else Selection.of_view(view, up_to_id=max(ids))
        timings = Statements()
        started = time.perf_counter()
        if statements:
            with timings.installed():
                outcome = ACTIONS[action](actor, selection)
        else:
            outcome = ACTIONS[action](actor, selection)
        seconds = time.perf_counter() - started
    finally:
        if checkpoints is not None:
            checkpoints.stop()
        opened.close()
    return {"seconds": seconds, "selected": outcome.selected, "changed": outcome.changed,
            "statements": timings.seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the bulk actions (prints figures).")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--mailboxes", type=int, default=1_000_000)
    parser.add_argument("--actions", default=",".join(ACTIONS))
    parser.add_argument("--views", default="all,pending")
    parser.add_argument("--ways", default="view,ids")
    parser.add_argument("--data-dir", type=Path, default=None, help="where make_mailboxes keeps its databases")
    parser.add_argument("--statements", action="store_true", help="print the time of each statement")
    parser.add_argument("--pg-template", metavar="postgresql://...",
                        help="a database already holding the mailboxes (from an earlier run) to copy for each run")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"bulk actions benchmark: {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, "
          f"{args.mailboxes:,} mailboxes, {time.strftime('%H:%M UTC', time.gmtime())}", flush=True)
    source = make_mailboxes.ensure(args.mailboxes, args.data_dir)
    rows = []
    for backend in args.backends.split(","):
        scratch = Path(tempfile.mkdtemp(prefix="mbxtui-bench-bulk-"))
        copies = (SqliteCopies(source, scratch) if backend == "sqlite"
                  else PostgresCopies(source, args.pg_template))
        try:
            for view in args.views.split(","):
                for way in args.ways.split(","):
                    for action in args.actions.split(","):
                        with copies.fresh() as location:
                            load = os.getloadavg()[0]
                            measured = run_one(location, action, view, way, args.statements)
                        verdict = "ok" if measured["seconds"] <= TARGET_SECONDS else "OVER"
                        rows.append([copies.name, view, way, action, f"{measured['selected']:,}",
                                     f"{measured['changed']:,}", f"{measured['seconds']:.2f}", f"{load:.1f}",
                                     f"<= {TARGET_SECONDS:.0f} s {verdict}"])
                        print("  " + " | ".join(rows[-1]), flush=True)
                        for label, seconds in sorted(measured["statements"].items(), key=lambda item: -item[1]):
                            if seconds >= 0.01:
                                print(f"      {seconds:7.3f} s  {label}", flush=True)
        finally:
            if isinstance(copies, PostgresCopies):
                copies.stop()
            shutil.rmtree(scratch, ignore_errors=True)
    print()
    print("| backend | view | selection | action | selected | changed | seconds | load | target |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
