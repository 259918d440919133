"""Faults of the machine under mbxtui (issue 15, first part): a full disk, a read-only database, the
database file replaced or deleted under a running process. SQLite only: PostgreSQL's full disk and
refused connections are in test_postgres_faults.py.

A small tmpfs mounted by the test holds the database (and, for the keyring case, the encrypted
secrets file); a filler file takes its free space. Each case: the command ends with one line that
says what happened and where, exit 1; the database and the secrets file are whole afterwards; once
space returns, the same command succeeds. Needs root (mount); skipped otherwise, saying so.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from mbxtui.core import db
from mbxtui.core.faults import DatabaseReplaced
from mbxtui.core.models import database
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import operators, users
from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens.mailbox_detail import MailboxEditScreen
from tests.backends import ON_POSTGRES
from tests.cli.conftest import Cli, build_template
from tests.hardening.small_disk import SmallDisk, mounted_tmpfs, worker_waits_out_the_full_disk
from tests.tui.conftest import (  # noqa: F401  (fixtures used by name)
    Console, console, console_env, notifications, seed_organisation, settle, unlocked_store,
)
from tests.tui.test_flows import confirm_shows, emails_in, grid_of, open_edit_form, stored, type_into

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="SQLite's machine faults; PostgreSQL's are in test_postgres_faults.py")

FULL_WORDS = "is full (no space left on device)"
BAD_WORDS = ("cannot rollback", "Traceback", "database error")
IMPORT_ROWS = 20_000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    with mounted_tmpfs(tmp_path / "disk", "48m") as disk:
        yield disk


@pytest.fixture(scope="module")
def fault_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("faults-template") / "template.db"
    build_template(path)
    database.close()
    return path


@pytest.fixture
def disk_cli(small_disk: SmallDisk, fault_template: Path) -> Cli:
    """The CLI's template database on the small disk; its data directory (the secrets file) there too."""
    data_dir = small_disk.root / "data"
    data_dir.mkdir(mode=0o700)
    path = small_disk.root / "mbxtui.db"
    shutil.copyfile(fault_template, path)
    os.chmod(path, 0o600)
    return Cli(path, data_dir)


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def people_csv(folder: Path, rows: int, prefix: str = "p") -> Path:
    csv_file = folder / f"{prefix}-people.csv"
    csv_file.write_text("name,email\n" + "".join(f"Person {i},{prefix}{i}@corp.test\n" for i in range(rows)))
    return csv_file


def assert_full_disk_line(stderr: str, where: Path) -> None:
    assert FULL_WORDS in stderr and str(where) in stderr, stderr
    assert not any(word in stderr for word in BAD_WORDS), stderr


# --- a full disk ------------------------------------------------------------------------------

def test_import_on_a_full_disk_is_one_line_and_nothing_half_imported(disk_cli: Cli, small_disk: SmallDisk,
                                                                     tmp_path: Path):
    csv_file = people_csv(tmp_path, IMPORT_ROWS)
    before = disk_cli.dump()
    small_disk.fill(leave=256 * 1024)
    stderr = disk_cli.fails("import", "users", str(csv_file))
    assert_full_disk_line(stderr, small_disk.root / "mbxtui.db")
    small_disk.free()
    assert disk_cli.dump() == before and integrity(disk_cli.db_path) == "ok"
    assert disk_cli.json("import", "users", str(csv_file)) == {"imported": IMPORT_ROWS, "kind": "users"}


def test_bulk_reject_of_every_mailbox_on_a_full_disk(disk_cli: Cli, small_disk: SmallDisk, tmp_path: Path):
    disk_cli.json("import", "users", str(people_csv(tmp_path, IMPORT_ROWS)))
    before = disk_cli.dump()
    small_disk.fill(leave=128 * 1024)
    stderr = disk_cli.fails("mailbox", "reject", "--view", "all")
    assert_full_disk_line(stderr, small_disk.root / "mbxtui.db")
    small_disk.free()
    assert disk_cli.dump() == before and integrity(disk_cli.db_path) == "ok"
    changed = disk_cli.json("mailbox", "reject", "--view", "all")
    assert changed["changed"] == IMPORT_ROWS + 3
    assert disk_cli.scalar("SELECT count(*) FROM mailbox WHERE approval != 'rejected'") == 0


def test_listing_and_check_with_the_log_file_on_a_full_disk_say_so_in_one_line_each(disk_cli: Cli, small_disk: SmallDisk):
    # A database just closed has no -shm: SQLite cannot make one on the full disk (SQLITE_IOERR_SHMSIZE).
    log_file = small_disk.root / "mbxtui.log"
    small_disk.fill()
    result = disk_cli.run("--log-file", str(log_file), "user", "list")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"mbxtui: the disk holding {disk_cli.db_path} {FULL_WORDS}: nothing was changed; free some space there "
        "and try again",
        f"mbxtui: warning: the log file {log_file} could not be written (No space left on device); what followed "
        "is not in it"], result.stderr
    probe = disk_cli.run("check")  # the monitoring probe: UNKNOWN, with the cause
    assert probe.returncode == 3 and FULL_WORDS in probe.stdout + probe.stderr, probe
    small_disk.free()
    listed = disk_cli.json("--log-file", str(log_file), "user", "list")
    assert {row["email"] for row in listed} == {"ann@corp.test", "bob@corp.test"}
    assert "user list: exit status 0" in log_file.read_text()


def test_keyring_write_on_a_full_disk_loses_no_secret(small_disk: SmallDisk, fault_template: Path, tmp_path: Path):
    # The database elsewhere: what meets the full disk is the encrypted secrets file's write.
    data_dir = small_disk.root / "data"
    data_dir.mkdir(mode=0o700)
    path = tmp_path / "mbxtui.db"
    shutil.copyfile(fault_template, path)
    os.chmod(path, 0o600)
    cli = Cli(path, data_dir)
    cli.ok("profile", "set-password", "imap", "--password-stdin", input="first secret\n")
    secrets_file = data_dir / "secrets.cfg"
    assert secrets_file.is_file(), sorted(p.name for p in data_dir.iterdir())
    kept = secrets_file.read_bytes()
    small_disk.fill()
    stderr = cli.fails("profile", "set-password", "pop", "--password-stdin", input="second secret\n")
    assert FULL_WORDS in stderr and str(data_dir) in stderr, stderr
    assert "Traceback" not in stderr and "Errno" not in stderr, stderr
    assert secrets_file.read_bytes() == kept
    assert sorted(p.name for p in data_dir.iterdir() if p.name.startswith(".")) == []  # no temporary left
    assert cli.scalar("SELECT password_set FROM profile WHERE name = 'pop'") == 0
    small_disk.free()
    cli.ok("profile", "set-password", "pop", "--password-stdin", input="second secret\n")
    from mbxtui.core.secret_file import EncryptedSecretFile

    reopened = EncryptedSecretFile(secrets_file)
    reopened.unlock("master password of the test keyring")
    values = {name: reopened.get(service, name) for (service, name) in reopened._current_content().entries}
    assert sorted(values.values()) == ["first secret", "second secret"]


def test_wal_checkpoint_on_a_full_disk_keeps_every_commit(small_disk: SmallDisk, fault_template: Path,
                                                          caplog: pytest.LogCaptureFixture):
    path = small_disk.root / "mbxtui.db"
    shutil.copyfile(fault_template, path)
    os.chmod(path, 0o600)
    opened = db.open_database(path)
    try:
        checkpoints = db.BackgroundCheckpoints(interval=0.1)  # the console's
        try:
            me = operators.current_actor()
            # A reader's snapshot holds the checkpoints back while the WAL grows.
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN")
            holder.execute("SELECT count(*) FROM user").fetchone()
            for number in range(100):
                users.add_user(me, f"Person {number}", f"w{number}@corp.test")
            size_before = path.stat().st_size
            small_disk.fill()  # the file cannot grow to take the new pages
            holder.execute("COMMIT")
            holder.close()
            with pytest.raises(Exception) as failed:
                database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
            assert "disk is full" in str(failed.value)
            time.sleep(0.5)  # rounds of the background checkpoint fail
            assert path.stat().st_size == size_before
            with sqlite3.connect(path) as reader:
                assert reader.execute("SELECT count(*) FROM user WHERE email LIKE 'w%@corp.test'").fetchone()[0] == 100
            small_disk.free()
            deadline = time.monotonic() + 10
            while path.stat().st_size == size_before and time.monotonic() < deadline:
                time.sleep(0.1)
            assert path.stat().st_size > size_before  # the background rounds went on once space returned
        finally:
            checkpoints.stop()
    finally:
        opened.close()
        database.close()
    assert integrity(path) == "ok"
    with sqlite3.connect(path) as reader:
        assert reader.execute("SELECT count(*) FROM user WHERE email LIKE 'w%@corp.test'").fetchone()[0] == 100
    warnings = [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()]
    assert len(warnings) == 1 and FULL_WORDS in warnings[0] and str(path) in warnings[0], warnings


class HoldingServer:
    """A TCP listener on loopback that accepts connections and holds them, silent, until released
    (then closes them): the tests it stands for are in flight while the disk fills."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.released = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while True:
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.released.is_set():
                connection.close()
            else:
                self.accepted.append(connection)

    def release(self) -> None:
        self.released.set()
        for connection in self.accepted:
            connection.close()

    def close(self) -> None:
        self.release()
        self.listener.close()


def test_test_and_enable_results_on_a_full_disk_are_written_by_the_next_run(disk_cli: Cli, small_disk: SmallDisk):
    server = HoldingServer()
    try:
        disk_cli.ok("profile", "edit", "imap", "--incoming-host", "127.0.0.1", "--incoming-port", str(server.port),
                    "--incoming-tls", "implicit", "--outgoing-host", "127.0.0.1", "--outgoing-port",
                    str(server.port), "--outgoing-tls", "implicit", "--timeout", "20")
        emails = [row["email"] for row in disk_cli.json("mailbox", "list", "--view", "all")["rows"]]
        assert len(emails) == 3, emails
        for email in emails:
            disk_cli.ok("mailbox", "set-password", email, "--password-stdin", input="mailbox secret\n")
        disk_cli.ok("mailbox", "approve", "--view", "all")
        disk_cli.ok("test-enable", "--view", "all")
        worker = subprocess.Popen(
            [sys.executable, "-m", "mbxtui", "--db", str(disk_cli.db_path), "worker", "--once", "--no-process",
             "--lease", "2"], env=disk_cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=small_disk.root.parent)
        try:
            deadline = time.monotonic() + 30
            while len(server.accepted) < len(emails) and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.05)
            assert len(server.accepted) >= len(emails), worker.communicate()
            with sqlite3.connect(disk_cli.db_path) as other:  # a WAL of no length: nothing to reuse
                other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            small_disk.fill()
            server.release()  # the tests end: their results are to be written
            _out, err = worker.communicate(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        assert worker.returncode == 1, err
        [line] = [text for text in err.splitlines() if text.startswith("mbxtui: ") and "warning" not in text]
        assert_full_disk_line(line, disk_cli.db_path)
        assert "Traceback" not in err, err
        small_disk.free()
        assert integrity(disk_cli.db_path) == "ok"
        assert disk_cli.scalar("SELECT count(*) FROM test_job WHERE finished_on IS NOT NULL") == 0
        time.sleep(2.5)  # the dead run's lease ends
        disk_cli.ok("worker", "--once", "--no-process")
        rows = disk_cli.query("SELECT state, outcome FROM test_job")
        assert len(rows) == len(emails) and all(row["outcome"] for row in rows), [tuple(r) for r in rows]
    finally:
        server.close()


def test_a_running_worker_waits_out_a_full_disk_and_writes_the_results_once_space_returns(
        disk_cli: Cli, small_disk: SmallDisk, tmp_path: Path):
    server = HoldingServer()
    err_file = tmp_path / "worker.err"  # off the small disk
    try:
        disk_cli.ok("profile", "edit", "imap", "--incoming-host", "127.0.0.1", "--incoming-port", str(server.port),
                    "--incoming-tls", "implicit", "--outgoing-host", "127.0.0.1", "--outgoing-port",
                    str(server.port), "--outgoing-tls", "implicit", "--timeout", "20")
        emails = [row["email"] for row in disk_cli.json("mailbox", "list", "--view", "all")["rows"]]
        for email in emails:
            disk_cli.ok("mailbox", "set-password", email, "--password-stdin", input="mailbox secret\n")
        disk_cli.ok("mailbox", "approve", "--view", "all")
        disk_cli.ok("test-enable", "--view", "all")
        with open(err_file, "w") as err:
            worker = subprocess.Popen(
                [sys.executable, "-m", "mbxtui", "--db", str(disk_cli.db_path), "worker", "--no-process",
                 "--poll", "0.2", "--lease", "2"], env=disk_cli.env, stdout=subprocess.DEVNULL, stderr=err,
                text=True, cwd=small_disk.root.parent)
        try:
            deadline = time.monotonic() + 30
            while len(server.accepted) < len(emails) and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.05)
            assert len(server.accepted) >= len(emails), err_file.read_text()
            with sqlite3.connect(disk_cli.db_path) as other:  # a WAL of no length: nothing to reuse
                other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            small_disk.fill()
            server.release()  # the tests end: their results are to be written, on a full disk
            worker_waits_out_the_full_disk(
                worker, err_file, said="is full",
                finished=lambda: disk_cli.scalar("SELECT count(*) FROM test_job WHERE finished_on IS NOT NULL"),
                free=small_disk.free, done_within=60, done=lambda: disk_cli.scalar(
                    "SELECT count(DISTINCT mailbox_id) FROM test_job WHERE finished_on IS NOT NULL") >= len(emails))
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        err = err_file.read_text()
        assert worker.returncode == 0, err
        assert "Traceback" not in err, err
        [waits] = [line for line in err.splitlines() if line.startswith("Test & Enable waits: ")]
        assert_full_disk_line(waits, disk_cli.db_path)
        assert "Test & Enable goes on: the database answers again" in err.splitlines(), err
        assert integrity(disk_cli.db_path) == "ok"
        finished = disk_cli.query("SELECT mailbox_id, outcome FROM test_job WHERE finished_on IS NOT NULL")
        assert sorted(row[0] for row in finished) == sorted({row[0] for row in finished}), "a mailbox tested twice"
        assert len(finished) == len(emails) and all(row[1] for row in finished), [tuple(r) for r in finished]
    finally:
        server.close()


# --- a read-only database -----------------------------------------------------------------------

def test_read_only_file_system_lists_shows_checks_and_refuses_changes(disk_cli: Cli, small_disk: SmallDisk):
    small_disk.remount("ro")
    try:
        listed = disk_cli.json("user", "list")
        assert {row["email"] for row in listed} == {"ann@corp.test", "bob@corp.test"}
        assert disk_cli.json("mailbox", "show", "ann@corp.test")["email"] == "ann@corp.test"
        checked = disk_cli.run("check")
        assert checked.returncode == 0 and checked.stdout.startswith("MBXTUI OK"), checked
        for change in (("user", "add", "--name", "Cat", "--email", "cat@corp.test"),
                       ("mailbox", "reject", "--view", "all")):
            stderr = disk_cli.fails(*change)
            assert f"the database {disk_cli.db_path} is read-only" in stderr, stderr
            assert not any(word in stderr for word in BAD_WORDS), stderr
    finally:
        small_disk.remount("rw")
    assert sorted(p.name for p in small_disk.root.iterdir()) == ["data", "mbxtui.db"]
    assert disk_cli.json("user", "add", "--name", "Cat", "--email", "cat@corp.test")["email"] == "cat@corp.test"


# --- the database replaced or deleted under a running process --------------------------------------

@pytest.mark.parametrize("how", ["replaced", "deleted"])
def test_database_replaced_under_an_open_process_is_never_written(how: str, fault_template: Path, tmp_path: Path):
    path = tmp_path / "mbxtui.db"
    shutil.copyfile(fault_template, path)
    opened = db.open_database(path)
    try:
        me = operators.current_actor()
        users.add_user(me, "Cat", "cat@corp.test")
        # The WAL folded back first: SQLite would read a WAL left beside the path into a new file there.
        database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        if how == "replaced":
            other = tmp_path / "other.db"
            shutil.copyfile(fault_template, other)
            os.replace(other, path)
        else:
            path.unlink()
        with pytest.raises(DatabaseReplaced, match=f"the database file {path} was {how}"):
            users.add_user(me, "Dan", "dan@corp.test")
        database.close()
        with pytest.raises(DatabaseReplaced):  # a new connection neither opens nor creates what is there
            users.add_user(me, "Dan", "dan@corp.test")
    finally:
        opened.close()
        database.close()
    if how == "replaced":
        with sqlite3.connect(path) as reader:
            assert reader.execute("SELECT count(*) FROM user WHERE email IN ('cat@corp.test', 'dan@corp.test')"
                                  ).fetchone()[0] == 0
    else:
        assert not path.exists()


def test_worker_stops_when_its_database_is_replaced(fault_template: Path, tmp_path: Path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    path = tmp_path / "mbxtui.db"
    shutil.copyfile(fault_template, path)
    cli = Cli(path, data_dir)
    worker = subprocess.Popen([sys.executable, "-m", "mbxtui", "--db", str(path), "worker", "--no-process",
                               "--poll", "0.2"], env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=tmp_path)
    try:
        time.sleep(3)
        assert worker.poll() is None, worker.communicate()
        other = tmp_path / "other.db"
        shutil.copyfile(fault_template, other)
        os.replace(other, path)
        kept = cli.dump()
        _out, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 1, err
    assert f"the database file {path} was replaced by another file while mbxtui had it open" in err, err
    assert "Traceback" not in err, err
    assert cli.dump() == kept


# --- the console ------------------------------------------------------------------------------------

@pytest.fixture
def disk_console(console_env: Path, unlocked_store: SecretStore, small_disk: SmallDisk) -> Iterator[Console]:
    """The console's seeded organisation in a database on the small disk."""
    path = small_disk.root / "mbxtui.db"
    opened = db.open_database(path)
    try:
        actors = seed_organisation()
        yield Console(path, console_env, unlocked_store, actors)
    finally:
        opened.close()
        database.close()


def test_console_save_on_a_full_disk_is_shown_in_place_and_works_once_space_returns(
        disk_console: Console, small_disk: SmallDisk, caplog: pytest.LogCaptureFixture):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        form = await open_edit_form(app, pilot, "carla@corp.test")
        await type_into(pilot, form.query_one("#name", Input), "Carla Díaz-Ruiz")
        # The WAL emptied first: SQLite reuses a WAL's space, so a small change would still fit.
        with sqlite3.connect(disk_console.db_path) as other:
            assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        small_disk.fill()
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert app.screen is form, "the form closed on a full disk"
        problem = str(form.query_one("#save-problem", Static).render())
        assert problem.startswith(f"Not saved: the disk holding {disk_console.db_path} {FULL_WORDS}"), problem
        assert not any(word in problem for word in BAD_WORDS), problem
        small_disk.free()
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert not isinstance(app.screen, MailboxEditScreen)
        assert "Saved" in notifications(app)

    app = disk_console.run(scenario)
    assert app.return_code in (None, 0)
    assert stored("carla@corp.test").name == "Carla Díaz-Ruiz"
    logged = [r for r in caplog.records if r.name == "mbxtui.tui.workers"]
    assert logged and all(r.exc_info is None and FULL_WORDS in r.getMessage() for r in logged), logged
    assert integrity(disk_console.db_path) == "ok"


def test_console_on_a_read_only_database_shows_mailboxes_and_refuses_approval(
        disk_console: Console, small_disk: SmallDisk):
    database.close()
    small_disk.remount("ro")

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await settle(app, pilot)
        grid = grid_of(app)
        await pilot.press("5")
        await settle(app, pilot)
        assert emails_in(grid) == ["farah@corp.test", "jade@corp.test", "orders@corp.test"]
        await pilot.press("space", "A")
        await confirm_shows(app, pilot, "Approve the email address of 1 mailbox?")
        await pilot.press("y")
        await settle(app, pilot)
        shown = notifications(app)
        assert any(f"the database {disk_console.db_path} is read-only" in text for text in shown), shown
        assert emails_in(grid) == ["farah@corp.test", "jade@corp.test", "orders@corp.test"]

    try:
        app = disk_console.run(scenario)
    finally:
        small_disk.remount("rw")
    assert app.return_code in (None, 0)
    assert stored("farah@corp.test").approval == "pending"


# The console's checkpoint thread meets the replaced file too: it says so, without a traceback.
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_console_refuses_changes_once_its_database_was_replaced(console: Console, tmp_path: Path):
    database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()
    copy = tmp_path / "copy.db"
    shutil.copyfile(console.db_path, copy)

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await settle(app, pilot)
        grid = grid_of(app)
        await pilot.press("5")
        await settle(app, pilot)
        os.replace(copy, console.db_path)
        await pilot.press("space", "A")
        await confirm_shows(app, pilot, "Approve the email address of 1 mailbox?")
        await pilot.press("y")
        await settle(app, pilot)
        shown = notifications(app)
        assert any(f"the database file {console.db_path} was replaced by another file" in text for text in shown), shown
        assert emails_in(grid)[0] == "farah@corp.test"
        await pilot.pause(1.5)  # a round of the background checkpoints (one a second)

    app = console.run(scenario)
    assert app.return_code in (None, 0)
    with sqlite3.connect(console.db_path) as reader:
        assert reader.execute("SELECT approval FROM mailbox WHERE email = 'farah@corp.test'").fetchone()[0] == "pending"
