"""Speed of the core at scale (issue 2), printed beside the targets.

    .venv/bin/python bench/core.py [--mailboxes N] [--import-rows N] [--repeat N] [--cache-dir DIR]
                                   [--rebuild] [--only import,list,approve] [--backends sqlite,postgresql]

Figures, each as wall time and CPU time (the CPU time does not grow when the machine is busy):
  * import of 100,000 users from CSV: the real CLI (`mbxtui import users FILE.csv`) in a
    subprocess, and the service (`imports.import_csv`) in this process; each into a fresh database
    with a default profile, median of --repeat runs;
  * `mbxtui mailbox list --view pending --json --limit 100` on 1,000,000 mailboxes: subprocess wall
    time, median of 5 after one warm-up run (the service call alone is shown beside it);
  * approving the 100,000 mailboxes of the Pending Approval view: the service
    (`bulk.approve`) and the CLI (`mbxtui mailbox approve --view pending`), each on a fresh
    copy of the 1,000,000-mailbox database (on PostgreSQL ``CREATE DATABASE ... TEMPLATE``), and
    with both backends PostgreSQL's time over SQLite's.

With ``--backends sqlite,postgresql`` each figure is measured on both, side by side. PostgreSQL is a
private server started as the test suite starts it (tests/lab/postgres.py: over loopback, fsync
off); the import runs into a fresh ``CREATE DATABASE ... TEMPLATE`` copy of an empty installation,
and the big database is the cached SQLite one copied in by ``mbxtui.core.transfer`` and vacuumed.

The 1,000,000-mailbox database is built once by executemany into the real schema, in one
transaction with the full-text triggers firing, and kept in --cache-dir (default $MBXTUI_BENCH_DIR,
else mbxtui-bench in the temporary directory, where bench/make_mailboxes.py keeps its own); the
build's phases are printed when it is built. It is not make_mailboxes' database because these
figures need exactly 100,000 pending mailboxes, the OS login as the operator (the CLI acts as it)
and the cost of the triggers, which make_mailboxes avoids by rebuilding the full-text index.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mbxtui.core import db
from mbxtui.core.migrations import LATEST_VERSION
from mbxtui.core.services import bulk, imports, mailbox_views, operators, profiles, settings
from mbxtui.core.services.selection import Selection

# Bump when the built data changes, so an old cached database is not reused.
BUILDER_VERSION = 1
# The same place as bench/make_mailboxes.py keeps its databases.
DEFAULT_CACHE_DIR = Path(os.environ.get("MBXTUI_BENCH_DIR") or Path(tempfile.gettempdir()) / "mbxtui-bench")
MBXTUI = Path(sys.executable).with_name("mbxtui")
OPERATOR = operators.os_login()  # the CLI acts as the OS login: make it the global_admin

FIRST_NAMES = ("Ada", "Bruno", "Chloé", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
               "Kemal", "Lucía", "Mina", "Noah", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tariq",
               "Uma", "Viktor", "Wen", "Xavier", "Yara", "Zoltan")
LAST_NAMES = ("Almeida", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Haddad", "Ivanova",
              "Jansen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Quispe",
              "Rossi", "Schmidt", "Tanaka", "Ueda", "Varga", "Weber", "Yilmaz", "Zhang")
DEPARTMENTS = ("sales", "support", "finance", "ops", "legal", "hr", "it", "marketing")
PROFILE_COUNT = 8
STAGED_COLUMNS = ("name", "email", "user_id", "profile_id", "approval", "approved_by", "approved_on",
                  "incoming_status", "outgoing_status", "overall_status", "test_completed_on",
                  "last_error_code", "last_error_text", "active")


@dataclass
class Figure:
    what: str
    seconds: float
    cpu_seconds: float  # of the process that did the work: the load of the machine does not change it
    target: float | None
    note: str = ""

    def row(self) -> tuple[str, ...]:
        target = "" if self.target is None else f"< {self.target:g} s"
        verdict = "" if self.target is None else ("ok" if self.seconds < self.target else "MISSED")
        return (self.what, f"{self.seconds:.3f} s", f"{self.cpu_seconds:.3f} s", target,
                f"{verdict} {self.note}".strip())


def print_table(title: str, figures: list[Figure]) -> None:
    rows = [("figure", "wall", "CPU", "target", "")] + [f.row() for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\n{title}")
    for number, row in enumerate(rows):
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if number == 0:
            print("  " + "  ".join("-" * width for width in widths))


@functools.cache
def ascii_lower(word: str) -> str:
    return unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode().lower()


# --- databases ---------------------------------------------------------------------------------

def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def new_database(path: Path | str) -> None:
    """A fresh database with its global_admin, PROFILE_COUNT profiles and the first as default
    (``path``: a file, or a new PostgreSQL database's URL)."""
    if isinstance(path, Path):
        remove_database(path)
    database = db.open_database(path)
    try:
        admin = operators.initialise(login=OPERATOR)
        for number in range(1, PROFILE_COUNT + 1):
            profiles.create(admin, name=f"site{number}", type="imap_smtp",
                            incoming_host=f"imap.site{number}.example.test", incoming_port=993,
                            incoming_tls="implicit", incoming_auth="mailbox",
                            outgoing_host=f"smtp.site{number}.example.test", outgoing_port=587,
                            outgoing_tls="starttls", outgoing_auth="mailbox", max_connections=32)
        settings.update(admin, default_profile="site1")
    finally:
        database.close()


def build_mailbox_database(path: Path, count: int) -> dict[str, float]:
    """``count`` users, each with its mailbox, inserted by executemany in one transaction into the
    real schema. Every 10th mailbox is pending approval (all active); of the others, 1 in 50
    failed its test, 1 in 100 is inactive, the rest are approved and enabled. Returns phase times."""
    phases: dict[str, float] = {}
    started = time.perf_counter()
    new_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = wal")
    conn.execute("PRAGMA synchronous = normal")
    conn.execute("PRAGMA cache_size = -262144")
    now = "2026-01-05 09:00:00"
    phases["schema and profiles"] = time.perf_counter() - started

    def person(number: int) -> tuple[str, str]:
        first = FIRST_NAMES[number * 7 % len(FIRST_NAMES)]
        last = LAST_NAMES[number * 13 % len(LAST_NAMES)]
        department = DEPARTMENTS[number % len(DEPARTMENTS)]
        return (f"{first} {last} {number}",
                f"{ascii_lower(first)}.{ascii_lower(last)}.{number}@{department}.example.test")

    conn.execute("BEGIN IMMEDIATE")
    step = time.perf_counter()
    first_user = conn.execute('SELECT coalesce(max(id), 0) + 1 FROM "user"').fetchone()[0]
    conn.executemany('INSERT INTO "user" (id, name, email, active, created_on) VALUES (?, ?, ?, ?, ?)',
                     ((first_user + n, *person(n), int(n % 10 == 0 or n % 100 != 1), now) for n in range(count)))
    phases["users"] = time.perf_counter() - step

    def mailbox(n: int) -> tuple:
        name, email = person(n)
        user_id = first_user + n
        profile_id = 1 + n % PROFILE_COUNT
        if n % 10 == 0:
            return (name, email, user_id, profile_id, "pending", None, None,
                    "not_run", "not_run", "not_run", None, None, None, 1)
        if n % 100 == 1:
            return (name, email, user_id, profile_id, "approved", OPERATOR, now,
                    "not_run", "not_run", "not_run", None, None, None, 0)
        if n % 50 == 3:
            return (name, email, user_id, profile_id, "approved", OPERATOR, now,
                    "failure", "success", "failure", now, "AUTH_FAILED",
                    "the IMAP server refused the password", 1)
        return (name, email, user_id, profile_id, "approved", OPERATOR, now,
                "success", "success", "success", now, None, None, 1)

    # Staged first, then moved by one INSERT ... SELECT: FTS5 flushes its pending terms at every
    # statement that writes to it, so an executemany straight into mailbox is about 5x slower.
    step = time.perf_counter()
    conn.execute(f"CREATE TEMP TABLE staged_mailbox ({', '.join(STAGED_COLUMNS)})")
    conn.executemany(f"INSERT INTO staged_mailbox VALUES ({', '.join('?' * len(STAGED_COLUMNS))})",
                     (mailbox(n) for n in range(count)))
    phases["mailboxes staged"] = time.perf_counter() - step
    step = time.perf_counter()
    conn.execute(
        """INSERT INTO mailbox (name, email, regarding, user_id, owner_id, profile_id, is_forward,
              incoming_method, outgoing_method, act_method, use_own_credentials, username, password_set,
              token_set, delete_after_processing, approval, approved_by, approved_on, incoming_status,
              outgoing_status, overall_status, act_status, incoming_enabled, outgoing_enabled, act_enabled,
              test_scheduled, test_completed_on, last_error_code, last_error_text, transient_failures,
              active, created_on, modified_on, row_version)
           SELECT name, email, 'user', user_id, user_id, profile_id, 0, 'server_side_sync', 'server_side_sync',
              'none', 0, '', 1, 0, 0, approval, approved_by, approved_on, incoming_status, outgoing_status,
              overall_status, 'not_run', (incoming_status = 'success') * active,
              (outgoing_status = 'success') * active, 0, 0, test_completed_on, last_error_code,
              last_error_text, 0, active, ?, ?, 1
           FROM temp.staged_mailbox ORDER BY rowid""", (now, now))
    conn.execute("DROP TABLE temp.staged_mailbox")
    phases["mailboxes inserted (FTS triggers fire)"] = time.perf_counter() - step
    step = time.perf_counter()
    conn.execute("COMMIT")
    conn.execute("PRAGMA optimize")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    phases["commit and checkpoint"] = time.perf_counter() - step
    phases["total"] = time.perf_counter() - started
    return phases


def cached_mailbox_database(cache_dir: Path, count: int, rebuild: bool) -> Path:
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = cache_dir / f"mailboxes-{count}-schema{LATEST_VERSION}-build{BUILDER_VERSION}.db"
    if path.exists() and not rebuild:
        print(f"using the cached {count:,}-mailbox database {path}")
        return path
    print(f"building a {count:,}-mailbox database (cached as {path}) ...", flush=True)
    partial = path.with_name(path.name + ".partial")
    phases = build_mailbox_database(partial, count)
    remove_database(path)
    partial.rename(path)
    size = path.stat().st_size / 1e6
    print("  " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in phases.items())
          + f"; {size:,.0f} MB")
    return path


def work_copy(source: Path, directory: Path) -> Path:
    target = directory / "work.db"
    remove_database(target)
    shutil.copyfile(source, target)
    os.chmod(target, 0o600)
    os.sync()  # else writing the copy back to disk competes with what is measured next
    return target


class SqliteBackend:
    name = f"SQLite {sqlite3.sqlite_version}"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.template = work / "template.db"
        new_database(self.template)

    @contextmanager
    def import_target(self) -> Iterator[Path]:
        target = self.work / "import.db"
        remove_database(target)
        shutil.copyfile(self.template, target)
        yield target

    def big(self, path: Path) -> Path:
        return path

    @contextmanager
    def big_copy(self, path: Path) -> Iterator[Path]:
        """A fresh copy of the big database, for a run that changes it."""
        yield work_copy(path, self.work)

    def server_cpu(self) -> float:
        return 0.0  # SQLite works inside the measured process

    def stop(self) -> None:
        pass


class PostgresBackend:
    def __init__(self) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.lab lives beside the package
        from tests.lab.postgres import start_postgres

        self.server = start_postgres()
        self.name = f"PostgreSQL {self.server.version}"
        self.template = "core_import_template"
        new_database(self.server.create_database(self.template))
        self.runs = 0
        self.copied: dict[str, str] = {}

    @contextmanager
    def import_target(self) -> Iterator[str]:
        self.runs += 1
        name = f"core_import_{self.runs}"
        url = self.server.create_database(name, template=self.template)
        try:
            yield url
        finally:
            self.server.drop_database(name)

    @staticmethod
    def database_name(path: Path) -> str:
        """The server's name for its copy of the big database at ``path``."""
        return path.stem.replace("-", "_")

    def big(self, path: Path) -> str:
        """The big database copied into the server (once)."""
        from mbxtui.core import transfer

        name = self.database_name(path)
        if name not in self.copied:
            started = time.perf_counter()
            self.copied[name] = self.server.create_database(name)
            transfer.copy_installation(path, self.copied[name])
            self.server.psql("VACUUM ANALYZE", database=name)
            print(f"  copied {path.name} into PostgreSQL and vacuumed it in {time.perf_counter() - started:.0f} s",
                  flush=True)
        return self.copied[name]

    @contextmanager
    def big_copy(self, path: Path) -> Iterator[str]:
        """A fresh copy of the big database (``CREATE DATABASE ... TEMPLATE``), for a run that changes it."""
        self.big(path)
        template = self.database_name(path)
        self.runs += 1
        name = f"{template}_run_{self.runs}"
        url = self.server.create_database(name, template=template)
        os.sync()  # else writing the copied files to disk competes with what is measured next
        try:
            yield url
        finally:
            self.server.drop_database(name)

    def server_cpu(self) -> float:
        """CPU seconds of the server's processes so far: the postmaster's own and those of the
        sessions that ended (a session's process is reaped by it when its connection closes)."""
        time.sleep(0.2)  # the session just closed: let the postmaster reap it
        fields = Path(f"/proc/{self.server.process.pid}/stat").read_text().rsplit(") ", 1)[1].split()
        return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.server.stop()


# --- measurements ------------------------------------------------------------------------------

def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cli(database: Path | str, *arguments: str, data_dir: Path) -> tuple[float, float]:
    """Wall and CPU time of one `mbxtui --db DATABASE ARGUMENTS...`; fails loudly if it does."""
    # As installed: the package's .pyc files are written once and read after (an environment that
    # forbids writing them makes every run compile mbxtui from source: 0.1-0.2 s more a run).
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["MBXTUI_DATA_DIR"] = str(data_dir)
    cpu = children_cpu()
    started = time.perf_counter()
    completed = subprocess.run([str(MBXTUI), "--db", str(database), *arguments], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"`mbxtui {' '.join(arguments)}` exited {completed.returncode}: "
                         f"{completed.stderr.decode(errors='replace').strip()}")
    return elapsed, children_cpu() - cpu


def timed(call) -> tuple[float, float]:
    """Wall and CPU time of ``call()`` in this process."""
    cpu = time.process_time()
    started = time.perf_counter()
    call()
    return time.perf_counter() - started, time.process_time() - cpu


def median_figure(what: str, runs: list[tuple[float, float]], target: float | None, note: str = "") -> Figure:
    """The run of median wall time, with its CPU time."""
    ordered = sorted(runs)
    seconds, cpu_seconds = ordered[len(ordered) // 2]
    return Figure(what, seconds, cpu_seconds, target,
                  note or (f"median of {len(runs)}" if len(runs) > 1 else ""))


def write_users_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as file:
        file.write("name,email\n")
        for number in range(rows):
            first = FIRST_NAMES[number % len(FIRST_NAMES)]
            last = LAST_NAMES[number * 7 % len(LAST_NAMES)]
            file.write(f"{first} {last},{ascii_lower(first)}.{ascii_lower(last)}.{number}@import.example.test\n")


def measure_import(backend: SqliteBackend | PostgresBackend, work: Path, rows: int, repeat: int) -> list[Figure]:
    csv_path = work / "users.csv"
    if not csv_path.exists():
        write_users_csv(csv_path, rows)

    cli_times, server = [], backend.server_cpu()
    for _ in range(repeat):
        with backend.import_target() as target:
            cli_times.append(run_cli(target, "import", "users", str(csv_path), data_dir=work))
    cli_server, server = (backend.server_cpu() - server) / repeat, backend.server_cpu()

    service_times = []
    for _ in range(repeat):
        with backend.import_target() as target:
            database = db.open_database(target)
            try:
                admin = operators.current_actor(login=OPERATOR)
                service_times.append(timed(lambda: imports.import_csv(admin, "users", csv_path)))
                imported = database.execute_sql("SELECT count(*) FROM mailbox").fetchone()[0]
            finally:
                database.close()
        if imported != rows:
            raise SystemExit(f"the import made {imported} mailboxes, expected {rows}")
    service_server = (backend.server_cpu() - server) / repeat
    noted = [(cli_times, cli_server, "CLI subprocess"), (service_times, service_server, "service")]
    return [median_figure(f"{backend.name}: import {rows:,} users: {what}", times, 10.0,
                          f"median of {repeat}" + (f", server CPU {spent:.1f} s a run" if spent else ""))
            for times, spent, what in noted]


def measure_list(name: str, database_path: Path | str, work: Path, count: int) -> list[Figure]:
    arguments = ("mailbox", "list", "--view", "pending", "--json", "--limit", "100")
    run_cli(database_path, *arguments, data_dir=work)  # warm-up: the page cache, .pyc files
    times = [run_cli(database_path, *arguments, data_dir=work) for _ in range(5)]
    database = db.open_database(database_path)
    try:
        admin = operators.current_actor(login=OPERATOR)
        service = [timed(lambda: mailbox_views.list_mailboxes(admin, view="pending", limit=100)) for _ in range(5)]
    finally:
        database.close()
    return [
        median_figure(f"{name}: `mailbox list --view pending --json --limit 100`, {count:,} mailboxes: CLI",
                      times, 0.5,
                      f"median of 5, worst {max(times)[0]:.3f} s"),
        median_figure("  the same page and total: service call alone", service, None),
    ]


def measure_approve(backend: SqliteBackend | PostgresBackend, database_path: Path, work: Path,
                    expected: int) -> list[Figure]:
    with backend.big_copy(database_path) as copy:
        database = db.open_database(copy)
        try:
            admin = operators.current_actor(login=OPERATOR)
            result = None

            def approve():
                nonlocal result
                result = bulk.approve(admin, Selection.of_view("pending"))

            service = timed(approve)
        finally:
            database.close()
    if result.changed != expected:
        raise SystemExit(f"approved {result.changed} mailboxes, expected {expected}")
    with backend.big_copy(database_path) as copy:
        cli = run_cli(copy, "mailbox", "approve", "--view", "pending", data_dir=work)
    return [Figure(f"{backend.name}: approve the {expected:,} mailboxes of the pending view: service", *service, 3.0),
            Figure(f"{backend.name}: approve the {expected:,} mailboxes of the pending view: CLI subprocess", *cli,
                   3.0)]


def approval_ratios(figures: list[Figure]) -> list[str]:
    """PostgreSQL's approval time over SQLite's (issue 14: at most 2), service and CLI."""
    lines = []
    for way in ("service", "CLI subprocess"):
        found = {f.what.split(":")[0]: f.seconds for f in figures if f.what.endswith(f"pending view: {way}")}
        sqlite = next((seconds for name, seconds in found.items() if name.startswith("SQLite")), None)
        postgres = next((seconds for name, seconds in found.items() if name.startswith("PostgreSQL")), None)
        if sqlite and postgres:
            ratio = postgres / sqlite
            lines.append(f"  approve, {way}: PostgreSQL {postgres:.2f} s / SQLite {sqlite:.2f} s = {ratio:.2f}x "
                         f"(target <= 2x: {'ok' if ratio <= 2 else 'MISSED'})")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1_000_000, help="size of the big database")
    parser.add_argument("--import-rows", type=int, default=100_000, help="users in the imported CSV")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each import (median shown)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                        help=f"where the big database is kept between runs (default {DEFAULT_CACHE_DIR})")
    parser.add_argument("--rebuild", action="store_true", help="build the big database even if cached")
    parser.add_argument("--only", default="import,list,approve",
                        help="comma-separated subset of: import, list, approve")
    parser.add_argument("--backends", default="sqlite", help="sqlite, postgresql or both, comma separated")
    arguments = parser.parse_args()
    backends = [part.strip() for part in arguments.backends.split(",") if part.strip()]
    if not backends or set(backends) - {"sqlite", "postgresql"}:
        parser.error("--backends: sqlite, postgresql or both")
    chosen = {part.strip() for part in arguments.only.split(",") if part.strip()}
    unknown = chosen - {"import", "list", "approve"}
    if unknown:
        parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}")

    print(f"mbxtui core benchmark: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"load average {' '.join(f'{load:.1f}' for load in os.getloadavg())}")
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="mbxtui-bench-core-") as scratch:
        work = Path(scratch)
        big = None
        if chosen & {"list", "approve"}:
            big = cached_mailbox_database(arguments.cache_dir, arguments.mailboxes, arguments.rebuild)
        for choice in backends:
            backend = SqliteBackend(work) if choice == "sqlite" else PostgresBackend()
            try:
                if "import" in chosen:
                    figures += measure_import(backend, work, arguments.import_rows, arguments.repeat)
                if "list" in chosen:
                    figures += measure_list(backend.name, backend.big(big), work, arguments.mailboxes)
                if "approve" in chosen:
                    figures += measure_approve(backend, big, work, len(range(0, arguments.mailboxes, 10)))
            finally:
                backend.stop()
    print(f"load average at the end: {' '.join(f'{load:.1f}' for load in os.getloadavg())}")
    print_table("results", figures)
    ratios = approval_ratios(figures)
    if ratios:
        print("\n" + "\n".join(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
