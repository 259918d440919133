"""Faults of the machine under a PostgreSQL database (issue 15): every connection slot taken
(max_connections reached), the server's disk full, a read-only database. Each ends in one line that
names the server (``host:port/dbname``, never the password) and what to do, exit 1; nothing is
half-written; the next attempt succeeds once the fault is gone, without a restart.

The tests run their own small cluster (tests/lab/postgres.py), whatever MBXTUI_TEST_BACKEND says, so
the suite's shared server is never starved or filled. Its WAL stays on the ordinary disk: PostgreSQL
stops (PANIC) when it cannot write WAL, so the full disk is a tablespace on a small tmpfs holding the
test database's tables and indexes, which is where an import or a bulk change first meets it.
Mounting needs root: those tests are skipped otherwise, saying so.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import pwd
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import psycopg2
import pytest
from textual.pilot import Pilot

from mbxtui.core import db
from mbxtui.core.models import database
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import operators, outgoing, users
from mbxtui.core.sync.loop import ProcessingLoop
from mbxtui.core.sync.outgoing import OutgoingRunner
from mbxtui.core.sync.runner import SyncRunner
from mbxtui.tui.app import MbxApp
from tests.backends import ON_POSTGRES
from tests.cli.conftest import Cli, build_template
from tests.hardening.small_disk import SmallDisk, mounted_tmpfs, worker_waits_out_the_full_disk
from tests.integration.conftest import PROFILE_OWNER, Org, secret_store, secrets_dir  # noqa: F401  (fixtures)
from tests.integration.test_sync_incoming import deliver, message, queue_mailbox
from tests.lab import MailLab
from tests.lab.errors import LabError
from tests.lab.postgres import PostgresServer, start_postgres
from tests.tui.conftest import (  # noqa: F401  (fixtures used by name)
    Console, console_env, notifications, pg_console, settle, unlocked_store,
)
from tests.tui.test_flows import confirm_shows, emails_in, grid_of

SLOTS = 12
PASSWORD = "never-shown-pw"
NO_SLOT_WORDS = "refuses new connections: every connection slot is taken (max_connections reached)"
FULL_WORDS = "is out of disk space (no space left on device)"
READ_ONLY_WORDS = "is read-only (a standby, or default_transaction_read_only is on)"
BAD_WORDS = ("Traceback", "database error", "psycopg2", PASSWORD)
IMPORT_ROWS = 20_000
BULK_ROWS = 5_000  # a bulk change writes a new version of every row: it must fit the small disk once freed
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    try:
        started = start_postgres({"max_connections": str(SLOTS), "superuser_reserved_connections": "2",
                                  "shared_buffers": "16MB"})
    except LabError as exc:
        pytest.skip(f"no PostgreSQL for the fault tests: {exc}")
    try:
        url = started.create_database("faults_template")
        build_template(url)
        database.close()
        yield started
    finally:
        started.stop()


def new_database(server: PostgresServer, tablespace: str | None = None) -> str:
    name = f"faults_{next(_numbers)}"
    clause = f" TABLESPACE {tablespace}" if tablespace else ""
    server.admin(f'CREATE DATABASE "{name}" TEMPLATE faults_template{clause}')
    return f"postgresql://{pwd.getpwuid(os.geteuid()).pw_name}:{PASSWORD}@127.0.0.1:{server.port}/{name}"


def shown(url: str) -> str:
    """How the sentences name the server: host:port/dbname."""
    return url.split("@", 1)[1]


def count(url: str, sql: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(sql)
        value = cursor.fetchone()[0]
    conn.close()
    return value


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(sql)
        found = cursor.fetchall()
    conn.close()
    return found


def people_csv(folder: Path, rows: int, prefix: str = "p") -> Path:
    csv_file = folder / f"{prefix}-people.csv"
    csv_file.write_text("name,email\n" + "".join(f"Person {i},{prefix}{i}@corp.test\n" for i in range(rows)))
    return csv_file


def assert_one_line(stderr: str, words: str, url: str) -> None:
    assert words in stderr and shown(url) in stderr, stderr
    assert not any(word in stderr for word in BAD_WORDS), stderr


@pytest.fixture
def cli(server: PostgresServer, tmp_path: Path) -> Cli:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    return Cli(new_database(server), data_dir)


class Slots:
    """Connections held open as the superuser until the server has no slot left for anyone."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.held: list = []

    def take_all(self) -> None:
        """Every slot, including those freed meanwhile by connections of finished threads."""
        while True:
            before = len(self.held)
            self._take_free()
            gc.collect()  # a finished thread's connection closes when collected
            time.sleep(0.2)
            self._take_free()
            if len(self.held) == before:
                return

    def _take_free(self) -> None:
        while True:
            try:
                self.held.append(psycopg2.connect(host="127.0.0.1", port=self.server.port, user="postgres",
                                                  dbname="postgres", connect_timeout=5))
            except psycopg2.OperationalError as exc:
                assert "too many clients" in str(exc), exc
                break
            assert len(self.held) <= SLOTS, "the server took more connections than max_connections"

    def free(self, how_many: int = 1) -> None:
        for _ in range(how_many):
            self.held.pop().close()

    def release(self) -> None:
        while self.held:
            self.free()


@pytest.fixture
def slots(server: PostgresServer) -> Iterator[Slots]:
    taken = Slots(server)
    try:
        yield taken
    finally:
        taken.release()


# --- every connection slot taken ---------------------------------------------------------------------

def test_commands_with_every_slot_taken_say_so_and_work_once_one_is_free(cli: Cli, slots: Slots, tmp_path: Path):
    csv_file = people_csv(tmp_path, 50)
    slots.take_all()
    for command in (("mailbox", "list"), ("import", "users", str(csv_file))):
        stderr = cli.fails(*command)
        assert_one_line(stderr, NO_SLOT_WORDS, str(cli.db_path))
        assert stderr.endswith("close idle sessions or raise max_connections, then try again"), stderr
    slots.free()
    assert len(cli.json("mailbox", "list", "--view", "all")["rows"]) == 3
    assert cli.json("import", "users", str(csv_file)) == {"imported": 50, "kind": "users"}
    slots.release()
    assert count(str(cli.db_path), "SELECT count(*) FROM \"user\"") == 52


# --- the server's disk full ----------------------------------------------------------------------------

class SmallTablespace(SmallDisk):
    """A tmpfs the postgres OS user owns, and a tablespace on it."""

    def __init__(self, disk: SmallDisk, tablespace: str) -> None:
        super().__init__(disk.root)
        self.tablespace = tablespace


@pytest.fixture
def small_disk(server: PostgresServer) -> Iterator[SmallTablespace]:
    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    base = Path(tempfile.mkdtemp(prefix="mbxtui-pgdisk-"))
    base.chmod(0o711)  # the server's user passes through to the mount
    try:
        with mounted_tmpfs(base / "disk", "64m", owner=(owner.pw_uid, owner.pw_gid)) as disk:
            (disk.root / "pg").mkdir()
            os.chown(disk.root / "pg", owner.pw_uid, owner.pw_gid)
            tablespace = f"small_{next(_numbers)}"
            server.admin(f"CREATE TABLESPACE {tablespace} LOCATION '{disk.root / 'pg'}'")
            yield SmallTablespace(disk, tablespace)
    finally:
        subprocess.run(["rm", "-rf", str(base)], capture_output=True)


@pytest.fixture
def disk_cli(server: PostgresServer, small_disk: SmallTablespace, tmp_path: Path) -> Iterator[Cli]:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    url = new_database(server, small_disk.tablespace)
    yield Cli(url, data_dir)
    small_disk.free()
    server.drop_database(url.rsplit("/", 1)[-1])
    server.admin(f"DROP TABLESPACE IF EXISTS {small_disk.tablespace}")


def test_import_on_the_servers_full_disk_is_one_line_and_nothing_half_imported(
        disk_cli: Cli, small_disk: SmallTablespace, tmp_path: Path):
    url = str(disk_cli.db_path)
    csv_file = people_csv(tmp_path, IMPORT_ROWS)
    assert count(url, 'SELECT count(*) FROM "user"') == 2  # a database in use: its cache file written
    small_disk.fill(leave=256 * 1024)
    stderr = disk_cli.fails("import", "users", str(csv_file))
    assert_one_line(stderr, FULL_WORDS, url)
    assert count(url, 'SELECT count(*) FROM "user"') == 2 and count(url, "SELECT count(*) FROM mailbox") == 3
    small_disk.free()
    assert disk_cli.json("import", "users", str(csv_file)) == {"imported": IMPORT_ROWS, "kind": "users"}
    assert count(url, 'SELECT count(*) FROM "user"') == IMPORT_ROWS + 2


def test_bulk_reject_on_the_servers_full_disk_changes_nothing_until_space_returns(
        disk_cli: Cli, small_disk: SmallTablespace, tmp_path: Path):
    url = str(disk_cli.db_path)
    disk_cli.json("import", "users", str(people_csv(tmp_path, BULK_ROWS)))
    assert count(url, "SELECT count(*) FROM mailbox") == BULK_ROWS + 3
    small_disk.fill(leave=128 * 1024)
    stderr = disk_cli.fails("mailbox", "reject", "--view", "all")
    assert_one_line(stderr, FULL_WORDS, url)
    assert count(url, "SELECT count(*) FROM mailbox WHERE approval = 'rejected'") == 0
    small_disk.free()
    assert disk_cli.json("mailbox", "reject", "--view", "all")["changed"] == BULK_ROWS + 3
    assert count(url, "SELECT count(*) FROM mailbox WHERE approval != 'rejected'") == 0


def test_first_session_on_the_servers_full_disk_says_the_server_could_not_write(disk_cli: Cli, small_disk: SmallTablespace):
    # Nobody has used the new database yet: its first session writes a cache file there, and fails.
    small_disk.fill()
    stderr = disk_cli.fails("user", "list")
    # The cache file's write fails with its own words, or an earlier write with the full disk's.
    said = ("could not write its files (could not write init file): its disk may be full"
            if "init file" in stderr else FULL_WORDS)
    assert_one_line(stderr, said, str(disk_cli.db_path))
    small_disk.free()
    assert {row["email"] for row in disk_cli.json("user", "list")} == {"ann@corp.test", "bob@corp.test"}


# --- a read-only database ------------------------------------------------------------------------------

def test_read_only_database_lists_and_refuses_changes(cli: Cli, server: PostgresServer):
    url = str(cli.db_path)
    name = url.rsplit("/", 1)[-1]
    server.admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    listed = cli.json("user", "list")
    assert {row["email"] for row in listed} == {"ann@corp.test", "bob@corp.test"}
    for change in (("user", "add", "--name", "Cat", "--email", "cat@corp.test"),
                   ("mailbox", "reject", "--view", "all")):
        stderr = cli.fails(*change)
        assert_one_line(stderr, READ_ONLY_WORDS, url)
        assert stderr.endswith("make changes on the primary server"), stderr
    server.admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
    assert cli.json("user", "add", "--name", "Cat", "--email", "cat@corp.test")["email"] == "cat@corp.test"
    assert count(url, "SELECT count(*) FROM mailbox WHERE approval = 'rejected'") == 0


# --- the console -----------------------------------------------------------------------------------------

def test_console_with_its_sessions_ended_and_every_slot_taken_says_so_in_place_and_goes_on(
        pg_console: Console, slots: Slots):
    url = str(pg_console.db_path)

    async def approve_farah(app: MbxApp, pilot: Pilot) -> list[str]:
        app._notifications.clear()
        await pilot.press("A")
        await confirm_shows(app, pilot, "Approve the email address of 1 mailbox?")
        await pilot.press("y")
        await settle(app, pilot)
        return notifications(app)

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await settle(app, pilot)
        grid = grid_of(app)
        await pilot.press("5")
        await settle(app, pilot)
        assert emails_in(grid)[0] == "farah@corp.test"
        await pilot.press("space")
        # The server ends the console's sessions (a restart, an administrator), and other clients
        # take every slot before the console connects again.
        slots.server.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name LIKE 'mbxtui%' AND pid != pg_backend_pid()")
        slots.take_all()
        gone = await approve_farah(app, pilot)
        assert any(f"the PostgreSQL server {shown(url)} cannot be reached or closed the connection" in text
                   for text in gone), gone
        no_slot = await approve_farah(app, pilot)
        assert any(NO_SLOT_WORDS in text and shown(url) in text for text in no_slot), no_slot
        assert not any(word in text for text in gone + no_slot for word in BAD_WORDS), gone + no_slot
        slots.free()
        done = await approve_farah(app, pilot)
        assert "1 of 1 changed" in done, done

    app = pg_console.run(scenario)
    assert app.return_code in (None, 0)
    slots.release()
    assert count(url, "SELECT count(*) FROM mailbox WHERE email = 'farah@corp.test' AND approval = 'approved'") == 1



# --- processing -------------------------------------------------------------------------------------------

def test_a_processing_pass_without_a_connection_slot_fails_no_mailbox(cli: Cli, slots: Slots,
                                                                     caplog: pytest.LogCaptureFixture):
    # A pass reads a forward mailbox's candidates on a database thread of its own, which connects anew.
    url = str(cli.db_path)
    cli.ok("forward-mailbox", "add", "--name", "Inbound", "--email", "inbound@corp.test",
           "--profile", "imap")
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("UPDATE mailbox SET approval = 'approved', incoming_enabled = 1, "
                       "incoming_method = 'server_side_sync', active = 1 WHERE email = 'inbound@corp.test'")
    conn.close()
    from mbxtui.core.errors import problem_sentence
    from mbxtui.core.services import operators
    from mbxtui.core.sync.loop import ProcessingLoop
    from mbxtui.core.sync.runner import sync_once

    opened = db.open_database(url)
    try:
        me = operators.current_actor()
        slots.take_all()
        with pytest.raises(Exception) as failed:
            sync_once(me, None, ["inbound@corp.test"], ignore_interval=True)
        assert NO_SLOT_WORDS in problem_sentence(failed.value), problem_sentence(failed.value)
        # The worker's loop: says so in one line, no traceback, and goes on to its next pass.
        ProcessingLoop(None, requested_by=me.login, threads=2).run(once=True)
        passes = [r for r in caplog.records if "processing pass" in r.getMessage()]
        assert passes and all(r.exc_info is None and NO_SLOT_WORDS in r.getMessage() for r in passes), passes
        slots.release()
        assert count(url, "SELECT count(*) FROM mailbox WHERE email = 'inbound@corp.test' "
                          "AND last_error_code IS NULL AND incoming_enabled = 1") == 1
        assert count(url, "SELECT count(*) FROM sync_status WHERE last_error_code IS NOT NULL OR worker IS NOT NULL "
                          "OR incoming_failures > 0") == 0
        sync_once(me, None, ["inbound@corp.test"], ignore_interval=True)  # runs: its own failure, if any, is the mail server's
        assert count(url, "SELECT count(*) FROM mailbox WHERE email = 'inbound@corp.test' "
                          "AND coalesce(last_error_code, '') != 'INTERNAL_ERROR'") == 1
    finally:
        opened.close()
        database.close()


# --- sending and Test & Enable while the database is away --------------------------------------------

@pytest.fixture
def pg_org(server: PostgresServer, mail_lab: MailLab, secret_store: SecretStore, secrets_dir: Path,
           tmp_path: Path) -> Iterator[Org]:
    """An organisation on the small cluster, wired to the mail lab (as tests/integration's ``org``)."""
    name = f"org_{next(_numbers)}"
    server.create_database(name)
    yield from _organisation(server, name, mail_lab, secret_store, secrets_dir, tmp_path)


def _organisation(server: PostgresServer, name: str, mail_lab: MailLab, secret_store: SecretStore,
                  secrets_dir: Path, tmp_path: Path) -> Iterator[Org]:
    """The organisation of the database ``name``, made already, dropped when done."""
    url = server.url(name)
    opened = db.open_database(url)
    try:
        admin = operators.initialise()
        users.add_user(admin, "Profile Owner", PROFILE_OWNER)
        yield Org(mail_lab, url, admin, secret_store, secrets_dir, tmp_path)
    finally:
        opened.close()
        database.close()
        server.drop_database(name)


def enabled_sender(org: Org, prefix: str) -> tuple[str, str]:
    """A mailbox enabled for outgoing by a real Test & Enable, and a lab address to write to."""
    sender, recipient = org.lab.add_users(2, prefix)
    org.profile("lab", verify_delivery=False)
    org.mailbox(sender, "lab", incoming_method="none")
    assert org.test_enable(sender).passed == 1, org.row(sender).last_error_text
    return sender, recipient


def nothing_charged(url: str, email: str, direction: str = "outgoing") -> None:
    """No failure of the mailbox's own: no error code, no count toward retries or R16, no alert
    beyond Test & Enable's "connected", still enabled."""
    assert count(url, f"SELECT count(*) FROM mailbox WHERE email = '{email}' AND last_error_code IS NULL "
                      f"AND {direction}_enabled = 1 AND transient_failures = 0") == 1
    assert count(url, "SELECT count(*) FROM sync_status WHERE last_error_code IS NOT NULL OR worker IS NOT NULL "
                      "OR outgoing_failures > 0 OR incoming_failures > 0") == 0
    assert count(url, "SELECT count(*) FROM alert WHERE level != 'information'") == 0
    assert count(url, "SELECT count(*) FROM mailbox_failure") == 0


def test_sending_without_a_connection_slot_charges_no_mailbox_and_sends_once_one_is_free(
        pg_org: Org, slots: Slots, caplog: pytest.LogCaptureFixture):
    # The pass's sending threads connect anew, when the server has no slot left.
    url = str(pg_org.db_path)
    sender, recipient = enabled_sender(pg_org, "pgsend")
    activity = outgoing.queue_email(pg_org.admin, sender, [recipient], [], "While the database is full", "Hello.")
    slots.take_all()
    loop = ProcessingLoop(pg_org.store, requested_by=pg_org.admin.login, threads=2)
    loop.run(once=True)
    passes = [r for r in caplog.records if "processing pass" in r.getMessage()]
    assert passes and all(r.exc_info is None and NO_SLOT_WORDS in r.getMessage() for r in passes), \
        [(r.getMessage(), r.exc_info) for r in caplog.records]
    slots.release()
    nothing_charged(url, sender)
    assert count(url, f"SELECT count(*) FROM email_activity WHERE id = {activity} AND state = 'pending' "
                      "AND attempts = 0 AND last_error_code IS NULL") == 1
    summary = OutgoingRunner(pg_org.store).run_once()
    assert (summary.sent, summary.failed) == (1, 0), summary
    assert count(url, f"SELECT count(*) FROM email_activity WHERE id = {activity} AND state = 'sent'") == 1


def test_an_incoming_cycle_without_a_connection_slot_charges_no_mailbox(
        pg_org: Org, slots: Slots, caplog: pytest.LogCaptureFixture):
    # The cycle's database thread first connects to read the checkpoint, once logged in to IMAP.
    url = str(pg_org.db_path)
    reader, writer = pg_org.lab.add_users(2, "pgread")
    pg_org.profile("lab", verify_delivery=False)
    queue_mailbox(pg_org, reader)  # a queue tracks all its mail (R27)
    assert pg_org.test_enable(reader).passed == 1, pg_org.row(reader).last_error_text
    deliver(pg_org, reader, message(writer, reader, "While the database is full"))
    slots.take_all()
    ProcessingLoop(pg_org.store, requested_by=pg_org.admin.login, threads=2).run(once=True)
    passes = [r for r in caplog.records if "processing pass" in r.getMessage()]
    assert passes and all(r.exc_info is None and NO_SLOT_WORDS in r.getMessage() for r in passes), \
        [(r.getMessage(), r.exc_info) for r in caplog.records]
    slots.release()
    nothing_charged(url, reader, "incoming")
    assert count(url, "SELECT count(*) FROM email_activity") == 0
    summary = SyncRunner(pg_org.store).run_once(ignore_interval=True)
    assert [(m.ok, m.recorded) for m in summary.mailboxes] == [(True, 1)], summary


def test_a_running_test_and_enable_runner_waits_out_a_server_restart_and_a_full_server(
        pg_org: Org, slots: Slots, caplog: pytest.LogCaptureFixture):
    # The server ends every session (a restart) and other clients take every slot before the
    # runner connects again: the runner of a worker or a console says so once and goes on.
    caplog.set_level(logging.INFO, logger="mbxtui.core.faults")  # the line saying it goes on
    url = str(pg_org.db_path)
    login = pg_org.lab.add_users(1, "pgtest")[0]
    pg_org.profile("lab", verify_delivery=False)
    pg_org.mailbox(login, "lab")
    runner = pg_org.runner(threads=2, lease_seconds=2)
    stop = threading.Event()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            runner.run(stop=stop, until_idle=False, poll_seconds=0.1)
        except BaseException as exc:  # noqa: BLE001  (what stopped the runner, for the assertion)
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        slots.server.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name LIKE 'mbxtui%' AND pid != pg_backend_pid()")
        slots.take_all()
        time.sleep(3)
        assert thread.is_alive(), raised
        slots.release()
        database.close()  # this test's own session was ended too
        pg_org.schedule(login)
        deadline = time.monotonic() + 30
        while count(url, "SELECT count(*) FROM test_job WHERE state = 'done'") == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert count(url, f"SELECT count(*) FROM mailbox WHERE email = '{login}' AND overall_status = 'success'") == 1
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive() and raised == [], raised
    waits = [r for r in caplog.records if "Test & Enable" in r.getMessage()]
    said = [r.getMessage() for r in waits]
    assert all(r.exc_info is None for r in waits) and said[-1] == "Test & Enable goes on: the database answers again", said
    assert any(NO_SLOT_WORDS in text for text in said), said
    assert not any(word in text for text in said for word in BAD_WORDS), said


# --- a deadlock ------------------------------------------------------------------------------------------

def test_a_transaction_ended_by_a_deadlock_is_said_to_be_one_not_a_busy_database(cli: Cli):
    """The server's deadlock detail says "blocked by process", which read as "locked": the sentence
    was the busy timeout's, and a worker that lost a deadlock said another session had held the
    database too long."""
    from mbxtui.core.errors import DEADLOCK, problem_sentence
    from mbxtui.core.postgres import database_for

    url = str(cli.db_path)
    with psycopg2.connect(url) as setup, setup.cursor() as cursor:
        cursor.execute("CREATE TABLE deadlock_rows (id integer PRIMARY KEY, n integer)")
        cursor.execute("INSERT INTO deadlock_rows VALUES (1, 0), (2, 0)")
    both_hold_one, errors = threading.Barrier(2, timeout=10), []

    def update(first: int, second: int) -> None:
        connection = database_for(url)
        try:
            with connection.atomic():
                connection.execute_sql("UPDATE deadlock_rows SET n = n + 1 WHERE id = ?", [first])
                both_hold_one.wait()
                connection.execute_sql("UPDATE deadlock_rows SET n = n + 1 WHERE id = ?", [second])
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    sessions = [threading.Thread(target=update, args=order) for order in ((1, 2), (2, 1))]
    for session in sessions:
        session.start()
    for session in sessions:
        session.join(30)
    assert len(errors) == 1, errors
    assert problem_sentence(errors[0]) == DEADLOCK, errors[0]


# --- the server's disk full under a running worker ------------------------------------------------------

@pytest.fixture
def disk_org(server: PostgresServer, small_disk: SmallTablespace, mail_lab: MailLab, secret_store: SecretStore,
             secrets_dir: Path, tmp_path: Path) -> Iterator[Org]:
    """``pg_org``, its database's tables and indexes on the small disk."""
    name = f"org_{next(_numbers)}"
    server.admin(f'CREATE DATABASE "{name}" TABLESPACE {small_disk.tablespace}')
    try:
        yield from _organisation(server, name, mail_lab, secret_store, secrets_dir, tmp_path)
    finally:
        small_disk.free()
        server.admin(f"DROP TABLESPACE IF EXISTS {small_disk.tablespace}")


@pytest.mark.skipif(not ON_POSTGRES, reason="the PostgreSQL server's full disk under a worker; SQLite's is in "
                                            "test_machine_faults.py")
def test_a_running_worker_waits_out_the_servers_full_disk_and_writes_each_result_once(
        disk_org: Org, small_disk: SmallTablespace, tmp_path: Path):
    # A test is held at the mail server (its AUTHENTICATE) while the disk fills; released, its result
    # meets the full disk: the first of its kind, it needs a new page of the tables it goes to (a
    # result written before would have left room in theirs). The worker processes too: its passes
    # meet the full disk as well.
    url = str(disk_org.db_path)
    front = disk_org.lab.imap_front()
    front.holding("AUTHENTICATE")
    [login] = disk_org.lab.add_users(1, "pgdisk")
    disk_org.profile("lab", incoming_port=front.port, verify_delivery=False)
    disk_org.mailbox(login, "lab", incoming_method="server_side_sync", outgoing_method="none")
    err_file = tmp_path / "worker.err"
    with open(err_file, "w") as err:
        worker = subprocess.Popen(disk_org.cli_command("worker", "--poll", "0.2", "--lease", "2", "--threads", "2"),
                                  env=disk_org.cli_env(), stdout=subprocess.DEVNULL, stderr=err, text=True)
    try:
        disk_org.schedule(login)
        assert front.held.wait(30), (front.commands, err_file.read_text())
        small_disk.fill()
        front.release()  # the held test ends: its result is to be written, on the full disk
        worker_waits_out_the_full_disk(
            worker, err_file, said="Test & Enable waits",
            finished=lambda: count(url, "SELECT count(*) FROM test_job WHERE finished_on IS NOT NULL"),
            free=small_disk.free, done_within=30,  # tested, enabled, and its first cycle run:
            done=lambda: count(url, "SELECT count(*) FROM sync_status WHERE last_incoming_success IS NOT NULL") >= 1)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    said = err_file.read_text()
    assert worker.returncode == 0, said
    waits = [line for line in said.splitlines() if line.startswith("Test & Enable waits: ")]
    assert len(waits) == 1, said
    assert_one_line(waits[0], FULL_WORDS, url)
    assert "Test & Enable goes on: the database answers again" in said.splitlines(), said
    assert not any(word in said for word in BAD_WORDS), said
    assert rows(url, "SELECT state, outcome FROM test_job") == [("done", "passed")]
    assert rows(url, "SELECT level, code FROM alert") == [("information", "CONNECTED")], "the result written twice"
    passes = [line for line in said.splitlines() if "processing pass" in line]
    assert all(FULL_WORDS in line and shown(url) in line for line in passes), said
    assert count(url, "SELECT count(*) FROM mailbox WHERE overall_status = 'success' AND last_error_code IS NULL "
                      "AND incoming_enabled = 1 AND transient_failures = 0") == 1
    assert count(url, "SELECT count(*) FROM mailbox_failure") == 0
    assert count(url, "SELECT count(*) FROM alert WHERE level != 'information'") == 0
