"""Build an mbxtui database holding N mailboxes, fast, for benchmarks.

    python bench/make_mailboxes.py --db PATH --count 1000000

The schema, the operator, the profiles and the settings come from the services; the bulk rows
(users, queues, mailboxes) are generated inside SQLite by one INSERT ... SELECT each. Indexes and
the full-text triggers of the tables being filled are dropped first and recreated afterwards from
their own stored SQL, so the schema ends up exactly as the migrations made it. The data is
deterministic: the same count gives the same database. About 90% of the mailboxes belong to users,
9% to queues, 1% are forward mailboxes; most are approved and tested, some pending, failed,
disabled or inactive, so every view has rows.

The database is built beside PATH and moved into place when complete, so an interrupted build
never leaves a file that looks finished. Other benchmarks call ``ensure(count)``, which builds the
database once into a shared directory and reuses it afterwards; the operator ``LOGIN`` is a
global_admin.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from mbxtui.core import db
from mbxtui.core.migrations import LATEST_VERSION
from mbxtui.core.services import operators, profiles, settings
from mbxtui.core.services.mailboxes import OVERALL_STATUS_SQL

LOGIN = "admin"
BUILD = 2  # raise when the generated data changes, so that saved databases are built again
USER_SHARE = 0.90
QUEUE_SHARE = 0.09

FIRST_NAMES = (
    "Ada Alan Alice Amara Anders Ania Ben Bianca Carlos Chen Chloe Dara David Dmitri Elena Emeka Erik "
    "Fatima Felix Grace Hana Hugo Ines Ivan Jamal Jana Jonas Julia Kai Karin Kenji Lara Leon Lina Luca "
    "Maya Mehmet Mia Nadia Nils Noor Olga Omar Paula Pedro Priya Rafael Rosa Sami Sara Sofia Tariq "
    "Teresa Tomas Uma Victor Wei Yara Yusuf Zoe"
).split()
LAST_NAMES = (
    "Abbott Adeyemi Alvarez Andersen Bauer Becker Brown Castro Chen Costa Dubois Eriksson Fischer "
    "Garcia Gomez Hansen Haddad Hoffmann Ivanova Jensen Kaur Kim Kowalski Kruger Larsen Lee Lopez "
    "Martin Meyer Moreau Muller Nakamura Novak Okafor Olsen Park Patel Petrov Quinn Rossi Santos "
    "Schmidt Silva Singh Smith Sousa Suzuki Tanaka Torres Varga Wagner Walker Weber Wong Yilmaz Zhang"
).split()
DEPARTMENTS = "sales support finance hr legal it ops marketing research logistics".split()
QUEUE_KINDS = "Help Desk,Orders,Invoices,Claims,Careers,Press,Returns,Billing,Partners,Tenders".split(",")

PROFILES = (
    {"name": "imap-main", "type": "imap_smtp", "incoming_host": "imap.corp.test", "incoming_port": 993,
     "incoming_tls": "implicit", "incoming_auth": "mailbox", "outgoing_host": "smtp.corp.test",
     "outgoing_port": 587, "outgoing_tls": "starttls", "outgoing_auth": "mailbox"},
    {"name": "pop3-legacy", "type": "pop3_smtp", "incoming_host": "pop.corp.test", "incoming_port": 995,
     "incoming_tls": "implicit", "incoming_auth": "mailbox", "outgoing_host": "smtp.corp.test",
     "outgoing_port": 587, "outgoing_tls": "starttls", "outgoing_auth": "mailbox"},
    {"name": "exchange-online", "type": "exchange_online", "incoming_host": "outlook.office365.com",
     "incoming_port": 993, "incoming_tls": "implicit", "incoming_auth": "oauth2",
     "outgoing_host": "smtp.office365.com", "outgoing_port": 587, "outgoing_tls": "starttls",
     "outgoing_auth": "oauth2"},
    {"name": "exchange-hq", "type": "exchange_server", "incoming_host": "mail.hq.corp.test",
     "incoming_port": 993, "incoming_tls": "implicit", "incoming_auth": "profile",
     "outgoing_host": "mail.hq.corp.test", "outgoing_port": 587, "outgoing_tls": "starttls",
     "outgoing_auth": "profile", "username": "svc-sync"},
)



def h(salt: int) -> str:
    """SQL spreading the row number n over [0, 1000), independently for each salt (two rounds of
    multiply and xor-shift; SQLite has no ^, so a ^ b is written (a | b) - (a & b))."""
    x = f"((n + {salt} * 7919) * 2654435761 % 4294967296)"
    return f"((({x} | ({x} >> 15)) - ({x} & ({x} >> 15))) * 73244475 % 4294967296 / 4096 % 1000)"


# Mailbox n's columns, computed from n alone. Profile ids 1-4 follow PROFILES; 5% have none.
MAILBOX_SELECT = f"""
SELECT n, name, email, regarding, user_id, queue_id, owner_id, profile_id, is_forward,
       incoming_method, outgoing_method, act_method,
       approval,
       CASE WHEN approval = 'approved' THEN CASE WHEN profile_id = 3 THEN 'exchange_online' ELSE :login END END,
       CASE WHEN approval = 'approved' THEN created_on END,
       incoming_status, outgoing_status, act_status, {OVERALL_STATUS_SQL},
       active AND incoming_status = 'success', active AND outgoing_status = 'success',
       active AND act_status = 'success',
       CASE WHEN tested THEN :login END, CASE WHEN tested THEN tested_on END, CASE WHEN tested THEN tested_on END,
       CASE WHEN incoming_status = 'failure' OR outgoing_status = 'failure' THEN 'authentication_failed' END,
       CASE WHEN incoming_status = 'failure' OR outgoing_status = 'failure'
            THEN 'the server refused the user name or password' END,
       active, created_on, created_on
FROM (
  SELECT n, name, email, regarding, user_id, queue_id, owner_id, profile_id, is_forward,
         incoming_method, outgoing_method, act_method, active, created_on, approval, tested, tested_on,
         CASE WHEN incoming_method = 'none' OR NOT tested THEN 'not_run'
              WHEN {h(6)} < 900 THEN 'success' ELSE 'failure' END AS incoming_status,
         CASE WHEN outgoing_method = 'none' OR NOT tested THEN 'not_run'
              WHEN {h(7)} < 940 THEN 'success' ELSE 'failure' END AS outgoing_status,
         CASE WHEN act_method = 'none' OR NOT tested THEN 'not_run'
              WHEN {h(8)} < 950 THEN 'success' ELSE 'failure' END AS act_status
  FROM (
    SELECT n, name, email, regarding, user_id, queue_id, owner_id, profile_id, is_forward, active, created_on,
           CASE WHEN is_forward THEN 'server_side_sync' WHEN {h(2)} < 40 THEN 'forward_mailbox'
                WHEN {h(2)} < 60 THEN 'none' ELSE 'server_side_sync' END AS incoming_method,
           CASE WHEN is_forward OR {h(3)} < 70 THEN 'none' ELSE 'server_side_sync' END AS outgoing_method,
           CASE WHEN profile_id IN (3, 4) AND NOT is_forward AND {h(4)} < 600 THEN 'server_side_sync'
                ELSE 'none' END AS act_method,
           approval,
           profile_id IS NOT NULL AND approval IN ('approved', 'empty') AND {h(9)} < 880 AS tested,
           datetime(created_on, '+' || (1 + {h(10)} * 131 % 200000) || ' minutes') AS tested_on
    FROM (
      SELECT n, src.name, src.email, src.regarding, src.user_id, src.queue_id, src.owner_id,
             CASE WHEN {h(1)} < 50 THEN NULL WHEN {h(1)} < 600 THEN 1 WHEN {h(1)} < 750 THEN 2
                  WHEN {h(1)} < 900 THEN 3 ELSE 4 END AS profile_id,
             CASE WHEN {h(1)} >= 750 AND {h(1)} < 900 THEN 'approved'
                  WHEN {h(5)} < 820 THEN 'approved' WHEN {h(5)} < 920 THEN 'pending'
                  WHEN {h(5)} < 940 THEN 'rejected' ELSE 'empty' END AS approval,
             src.regarding = 'forward' AS is_forward,
             {h(11)} >= 30 AS active,
             datetime('2024-01-01', '+' || ({h(12)} * 523 % 525600) || ' minutes') AS created_on
      FROM source_row src
    )
  )
)
"""


def _seq(limit_param: str) -> str:
    return f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :{limit_param}) "


def _words(conn, table: str, words: tuple[str, ...] | list[str]) -> None:
    conn.execute(f"CREATE TEMP TABLE {table} (i INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    conn.executemany(f"INSERT INTO {table} (i, v) VALUES (?, ?)", list(enumerate(words)))


def _fill(conn, count: int) -> None:
    users = max(1, round(count * USER_SHARE))
    queues = min(count - users, round(count * QUEUE_SHARE))
    params = {"users": users, "queues": queues, "count": count, "login": LOGIN,
              "first": len(FIRST_NAMES), "last": len(LAST_NAMES), "dept": len(DEPARTMENTS),
              "kinds": len(QUEUE_KINDS)}
    _words(conn, "first_name", FIRST_NAMES)
    _words(conn, "last_name", LAST_NAMES)
    _words(conn, "department", DEPARTMENTS)
    _words(conn, "queue_kind", QUEUE_KINDS)
    conn.execute(
        _seq("users") +
        """INSERT INTO "user" (id, name, email, active, created_on)
           SELECT n, f.v || ' ' || l.v, lower(f.v || '.' || l.v || '.' || n || '@' || d.v || '.example.org'),
                  1, '2024-01-01 00:00:00'
           FROM seq JOIN first_name f ON f.i = n % :first JOIN last_name l ON l.i = (n / :first) % :last
                    JOIN department d ON d.i = n % :dept""", params)
    conn.execute(
        _seq("queues") +
        """INSERT INTO queue (id, name, email, owner_id, active, created_on)
           SELECT n, k.v || ' ' || upper(substr(d.v, 1, 1)) || substr(d.v, 2) || ' ' || n,
                  lower(replace(k.v, ' ', '-')) || '.' || n || '@' || d.v || '.example.org',
                  1 + (n * 7919) % :users, 1, '2024-01-01 00:00:00'
           FROM seq JOIN queue_kind k ON k.i = n % :kinds JOIN department d ON d.i = (n / :kinds) % :dept""",
        params)
    conn.execute(
        "CREATE TEMP TABLE source_row (n INTEGER PRIMARY KEY, name TEXT, email TEXT, regarding TEXT, "
        "user_id INTEGER, queue_id INTEGER, owner_id INTEGER)")
    conn.execute(
        """INSERT INTO source_row SELECT id, name, email, 'user', id, NULL, id FROM "user" """)
    conn.execute(
        "INSERT INTO source_row SELECT :users + id, name, email, 'queue', NULL, id, owner_id FROM queue", params)
    conn.execute(
        _seq("count") +
        """INSERT INTO source_row
           SELECT n, 'Forward ' || d.v || ' ' || n, 'forward.' || n || '@' || d.v || '.example.org', 'forward',
                  NULL, NULL, NULL
           FROM seq JOIN department d ON d.i = n % :dept WHERE n > :users + :queues""", params)
    conn.execute(
        "INSERT INTO mailbox (id, name, email, regarding, user_id, queue_id, owner_id, profile_id, is_forward, "
        "incoming_method, outgoing_method, act_method, approval, approved_by, approved_on, "
        "incoming_status, outgoing_status, act_status, overall_status, "
        "incoming_enabled, outgoing_enabled, act_enabled, "
        "test_last_attempted_by, test_last_attempted_on, test_completed_on, last_error_code, last_error_text, "
        "active, created_on, modified_on, "
        "use_own_credentials, username, password_set, token_set, delete_after_processing, test_scheduled, "
        "transient_failures, row_version) "
        f"SELECT *, 0, '', 0, 0, 0, 0, 0, 1 FROM ({MAILBOX_SELECT})", params)
    for table in ("source_row", "first_name", "last_name", "department", "queue_kind"):
        conn.execute(f"DROP TABLE temp.{table}")


def build(path: Path, count: int) -> None:
    """Write a database of ``count`` mailboxes at ``path`` (which must not exist yet)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    partial = path.with_name(path.name + ".partial")
    for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        leftover.unlink(missing_ok=True)
    database = db.open_database(partial)
    try:
        admin = operators.initialise(login=LOGIN)
        for fields in PROFILES:
            profiles.create(admin, **fields)
        settings.update(admin, default_profile=PROFILES[0]["name"])
        conn = database.connection()
        conn.execute("BEGIN IMMEDIATE")
        kept = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE tbl_name IN ('user', 'queue', 'mailbox') "
            "AND type IN ('index', 'trigger') AND sql IS NOT NULL").fetchall()
        for kind, name, _ in kept:
            conn.execute(f'DROP {kind.upper()} "{name}"')
        _fill(conn, count)
        for _, _, sql in sorted(kept, key=lambda item: item[0] != "index"):
            conn.execute(sql)
        conn.execute("INSERT INTO mailbox_fts (mailbox_fts) VALUES ('rebuild')")
        conn.execute("COMMIT")
    finally:
        database.close()
    os.replace(partial, path)


def default_directory() -> Path:
    return Path(os.environ.get("MBXTUI_BENCH_DIR") or Path(tempfile.gettempdir()) / "mbxtui-bench")


def ensure(count: int, directory: Path | None = None) -> Path:
    """The database of ``count`` mailboxes in ``directory`` (default: $MBXTUI_BENCH_DIR, else
    mbxtui-bench in the temporary directory), built first if it is not there yet."""
    directory = directory or default_directory()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"make_mailboxes-{count}-schema{LATEST_VERSION}-build{BUILD}.db"
    if not path.exists():
        started = time.perf_counter()
        build(path, count)
        print(f"built {path} ({count:,} mailboxes) in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, type=Path, help="database file to create")
    parser.add_argument("--count", type=int, default=1_000_000, help="number of mailboxes (default 1,000,000)")
    parser.add_argument("--replace", action="store_true", help="overwrite the file if it exists")
    args = parser.parse_args(argv)
    if args.db.exists():
        if not args.replace:
            print(f"{args.db} exists; pass --replace to build it again", file=sys.stderr)
            return 1
        for stale in (args.db, Path(f"{args.db}-wal"), Path(f"{args.db}-shm")):
            stale.unlink(missing_ok=True)
    started = time.perf_counter()
    build(args.db, args.count)
    print(f"{args.db}: {args.count:,} mailboxes in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
