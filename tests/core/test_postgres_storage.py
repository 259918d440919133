"""A PostgreSQL database: URLs, connection errors, the schema and its migrations under concurrency.

The URL checks need no server and run on every backend; the rest runs when the suite runs on
PostgreSQL (MBXTUI_TEST_BACKEND=postgresql)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest
from peewee import IntegrityError

from mbxtui.core import db, paths, postgres
from mbxtui.core.errors import InvalidInput
from mbxtui.core.migrations import LATEST_VERSION
from mbxtui.core.models import Mailbox, User, database
from mbxtui.core.services import mailbox_views, operators, users
from mbxtui.core.sync import store
from tests.backends import ON_POSTGRES, Databases, query
from tests.lab.postgres import TEST_LOGIN, start_postgres

on_postgres = pytest.mark.skipif(not ON_POSTGRES, reason="runs when the suite runs on PostgreSQL")


@pytest.mark.parametrize("url, problem", [
    ("postgresql://db.example.test", "names no database"),
    ("postgresql://db.example.test/", "names no database"),
    ("postgresql://db.example.test/a/b", "names no database"),
    ("postgresql://db.example.test:99999/mbxtui", "not a PostgreSQL URL: Port out of range"),
    ("postgresql://db.example.test:port/mbxtui", "not a PostgreSQL URL"),
    ("postgresql://db.example.test:0/mbxtui", "port 0 is out of range"),
])
def test_a_bad_url_is_refused_with_what_is_wrong(url: str, problem: str):
    with pytest.raises(InvalidInput, match=problem) as refused:
        db.open_database(url)
    assert str(refused.value).startswith(f"db: {url}")


def test_a_password_in_the_url_never_shows_in_a_message():
    with pytest.raises(InvalidInput) as refused:
        db.open_database("postgresql://admin:s3cret@db.example.test:99999/mbxtui")
    assert "s3cret" not in str(refused.value) and "admin:***@" in str(refused.value)


def test_urls_and_files_are_told_apart():
    assert paths.is_server_url("postgresql://u@h/db") and paths.is_server_url("postgres://h/db")
    assert not paths.is_server_url("postgresql.db") and not paths.is_server_url("/var/lib/postgresql/x.db")
    assert paths.database_location("postgresql://u@h:5432/db") == "postgresql://u@h:5432/db"


def test_placeholders_outside_quoted_text_become_driver_parameters():
    assert postgres.pyformat("SELECT ? WHERE a LIKE '%?' AND \"q?\" = ?") == \
        "SELECT %s WHERE a LIKE '%%?' AND \"q?\" = %s"
    peewee_sql = 'SELECT "t1"."id" FROM "mailbox" AS "t1" WHERE ("t1"."email" = %s)'
    assert postgres.pyformat(peewee_sql) == peewee_sql


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_server_that_does_not_answer_is_one_clear_error():
    url = f"postgresql://mbxtui:pw@127.0.0.1:{_free_port()}/mbxtui"
    with pytest.raises(db.DatabaseError) as refused:
        db.open_database(url)
    message = str(refused.value)
    assert message.startswith("cannot connect to postgresql://mbxtui:***@127.0.0.1:") and "refused" in message
    assert "\n" not in message and ":pw@" not in message


@on_postgres
def test_a_database_that_does_not_exist_is_one_clear_error(databases: Databases):
    url = databases.server.url("no_such_database")
    with pytest.raises(db.DatabaseError, match='cannot connect to .*: .*database "no_such_database" does not exist'):
        db.open_database(url)


@on_postgres
def test_an_unknown_role_is_one_clear_error(databases: Databases, tmp_path):
    url = databases.new(tmp_path).replace(f"{TEST_LOGIN}@", "nobody@")
    with pytest.raises(db.DatabaseError, match='cannot connect to .*role "nobody" does not exist'):
        db.open_database(url)


@pytest.fixture
def fresh(databases: Databases, tmp_path):
    if not ON_POSTGRES:
        pytest.skip("runs when the suite runs on PostgreSQL")
    url = databases.new(tmp_path)
    opened = db.open_database(url)
    yield url
    opened.close()
    databases.drop(url)


def test_a_new_database_is_at_the_latest_version_with_its_own_install_id(fresh: str):
    assert query(fresh, "SELECT version FROM schema_version")[0][0] == LATEST_VERSION
    assert len(db.install_id()) == 32
    assert {row[0] for row in query(fresh, "SELECT extname FROM pg_extension")} >= {"pg_trgm"}
    indexes = {row[0] for row in query(fresh, "SELECT indexname FROM pg_indexes WHERE tablename = 'mailbox'")}
    assert {"mailbox_name", "mailbox_name_trigram", "mailbox_email_trigram", "mailbox_created_on",
            "mailbox_overall_status_active"} <= indexes
    assert not {"mailbox_approval", "mailbox_approval_active"} & indexes  # the narrow table's (step 19)


def test_reopening_keeps_the_data_and_the_install_id(fresh: str):
    users.add_user(operators.initialise(login="alice"), "Ann", "ann@corp.test")
    first = db.install_id()
    database.close()
    db.open_database(fresh)
    assert db.install_id() == first
    assert Mailbox.get(Mailbox.email == "ann@corp.test").name == "Ann"


def test_a_database_from_a_newer_version_is_refused_and_left_alone(fresh: str):
    database.execute_sql("UPDATE schema_version SET version = ?", [LATEST_VERSION + 1])
    database.close()
    with pytest.raises(db.DatabaseError, match="newer than this mbxtui understands"):
        db.open_database(fresh)
    assert query(fresh, "SELECT version FROM schema_version")[0][0] == LATEST_VERSION + 1


def test_foreign_keys_and_unique_mailboxes_are_enforced(fresh: str):
    admin = operators.initialise(login="alice")
    users.add_user(admin, "Ann", "ann@corp.test")
    with pytest.raises(IntegrityError):
        Mailbox.update(profile=999).where(Mailbox.email == "ann@corp.test").execute()
    with pytest.raises(IntegrityError):
        Mailbox.insert(name="Again", email="ann2@corp.test", regarding="user",
                       user=User.get(User.email == "ann@corp.test").id).execute()


def test_sorting_by_name_ignores_case_like_sqlite(fresh: str):
    admin = operators.initialise(login="alice")
    for name in ("bob", "Anna", "carl", "anne"):
        users.add_user(admin, name, f"{name.lower()}@corp.test")
    names = [row["name"] for row in mailbox_views.list_mailboxes(admin, view="all", sort="name").rows]
    assert names == ["Anna", "anne", "bob", "carl"]


def test_two_processes_opening_a_new_database_at_once_make_one_schema(databases: Databases, tmp_path):
    if not ON_POSTGRES:
        pytest.skip("runs when the suite runs on PostgreSQL")
    url = databases.new(tmp_path)
    start = threading.Barrier(4)
    versions: list[int] = []
    errors: list[BaseException] = []

    def open_and_migrate() -> None:
        connection = postgres.database_for(url)
        try:
            start.wait(timeout=10)
            versions.append(db.migrate_postgres(connection))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=open_and_migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [] and versions == [LATEST_VERSION] * 4
    assert query(url, "SELECT count(*) FROM meta WHERE key = 'install_id'")[0][0] == 1
    assert query(url, "SELECT count(*) FROM org_settings")[0][0] == 1
    databases.drop(url)



STEP_10_INDEXES = {  # PostgreSQL's own words for them (pg_indexes.indexdef, after "USING")
    "mailbox_name": "btree (name COLLATE nocase, id)",
    "mailbox_email": "btree (email) INCLUDE (id)",
    "mailbox_profile_id": "btree (profile_id, id)",
    "mailbox_test_completed_on": "btree (test_completed_on NULLS FIRST, id)",
    "mailbox_enabled": "btree ((((incoming_enabled + outgoing_enabled) + act_enabled)), id) "
                       "INCLUDE (incoming_enabled, outgoing_enabled, act_enabled)",
    "mailbox_active": "btree (active)",
    "mailbox_disabled": "btree (id) WHERE ((incoming_enabled = 0) AND (outgoing_enabled = 0) AND (act_enabled = 0))",
    "mailbox_user_id": "btree (user_id) WHERE (user_id IS NOT NULL)",
}


def mailbox_indexes(url: str) -> dict[str, str]:
    return {row[0]: row[1].split(" USING ", 1)[1]
            for row in query(url, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'mailbox'")}


@contextmanager
def opened_at_step(url: str, step: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The database at ``url`` made (or opened) by the steps up to ``step`` only, for rows written as
    that version wrote them; closed after."""
    with monkeypatch.context() as at_step:
        at_step.setattr(db, "POSTGRES_MIGRATIONS", db.POSTGRES_MIGRATIONS[:step])
        at_step.setattr(db, "LATEST_VERSION", step)
        db.open_database(url)
        yield
        database.close()


def insert_person_in_sql(name: str, email: str) -> None:
    """A user and their pending mailbox, written in SQL as an earlier version would (the services read
    columns of later steps)."""
    database.execute_sql('INSERT INTO "user" (name, email, active, created_on) VALUES (%s, %s, 1, now())',
                         [name, email])
    database.execute_sql(
        "INSERT INTO mailbox (name, email, regarding, user_id, owner_id, is_forward, incoming_method, "
        "outgoing_method, act_method, use_own_credentials, username, password_set, token_set, "
        "delete_after_processing, approval, incoming_status, outgoing_status, act_status, overall_status, "
        "incoming_enabled, outgoing_enabled, act_enabled, test_scheduled, transient_failures, active, "
        "created_on, modified_on, row_version) "
        "SELECT name, email, 'user', id, id, 0, 'server_side_sync', 'server_side_sync', 'none', 0, '', 0, 0, 0, "
        "'pending', 'not_run', 'not_run', 'not_run', 'not_run', 0, 0, 0, 0, 0, 1, now(), now(), 1 "
        'FROM "user" WHERE email = %s', [email])


def test_a_database_at_step_9_gets_the_mailbox_indexes_of_step_10_with_its_data(
        fresh: str, databases: Databases, tmp_path, monkeypatch: pytest.MonkeyPatch):
    new = mailbox_indexes(fresh)
    assert {name: new.get(name) for name in STEP_10_INDEXES} == STEP_10_INDEXES
    assert "mailbox_postponed_until" not in new
    database.close()

    url = databases.new(tmp_path / "v9")
    with opened_at_step(url, 9, monkeypatch):
        insert_person_in_sql("Ann", "ann@corp.test")
        insert_person_in_sql("Bob", "bob@corp.test")
    assert query(url, "SELECT version FROM schema_version")[0][0] == 9
    assert mailbox_indexes(url)["mailbox_approval"] == "btree (approval)"

    db.open_database(url)
    assert query(url, "SELECT version FROM schema_version")[0][0] == LATEST_VERSION >= 10
    assert mailbox_indexes(url) == new
    assert [m.email for m in Mailbox.select().order_by(Mailbox.email)] == ["ann@corp.test", "bob@corp.test"]
    names = [row["name"] for row in mailbox_views.list_mailboxes(
        operators.initialise(login="alice"), view="pending", sort="approval").rows]
    assert names == ["Ann", "Bob"]
    with pytest.raises(IntegrityError):  # one mailbox per user, as before
        Mailbox.insert(name="Again", email="ann2@corp.test", regarding="user",
                       user=User.get(User.email == "ann@corp.test").id).execute()
    database.close()
    databases.drop(url)


def test_a_database_at_step_13_gets_the_checkpoints_delete_pending_of_step_14_with_its_data(
        fresh: str, databases: Databases, tmp_path, monkeypatch: pytest.MonkeyPatch):
    database.close()
    url = databases.new(tmp_path / "v13")
    with opened_at_step(url, 13, monkeypatch):
        insert_person_in_sql("Ann", "ann@corp.test")
        database.execute_sql("INSERT INTO sync_checkpoint (mailbox_id, folder, uidvalidity, last_uid, updated_on) "
                             "SELECT id, 'INBOX', 4294967295, 3, now() FROM mailbox")
    assert query(url, "SELECT version FROM schema_version")[0][0] == 13

    db.open_database(url)
    assert query(url, "SELECT version FROM schema_version")[0][0] == LATEST_VERSION >= 14
    assert [tuple(row) for row in query(url, "SELECT uidvalidity, last_uid, delete_pending FROM sync_checkpoint")] == [
        (4294967295, 3, None)]
    saved = store.checkpoint(Mailbox.get(Mailbox.email == "ann@corp.test").id, "INBOX")
    assert (saved, saved.delete_pending) == (store.Checkpoint(4294967295, 3), ())
    database.close()
    databases.drop(url)


# --- TLS toward the server: sslmode=verify-full unless the host is this machine ------------------

VERIFY_FULL = {"sslmode": "verify-full"}


@pytest.mark.parametrize("url, expected", [
    ("postgresql://u@db.example.test:5432/mbxtui", VERIFY_FULL),
    ("postgresql://u@192.0.2.10/mbxtui", VERIFY_FULL),
    ("postgresql://u@[2001:db8::1]:5432/mbxtui", VERIFY_FULL),
    ("postgresql://u@localhost.example.test/mbxtui", VERIFY_FULL),
    # The host named is the one the certificate is checked against, wherever hostaddr points.
    ("postgresql://u@db.example.test/mbxtui?hostaddr=127.0.0.1", VERIFY_FULL),
    ("postgresql://u@localhost/mbxtui?host=db.example.test", VERIFY_FULL),
    ("postgresql://u@/mbxtui?hostaddr=192.0.2.10", VERIFY_FULL),
    ("postgresql://u@127.0.0.1:5432/mbxtui", {}),
    ("postgresql://u@127.8.9.10/mbxtui", {}),
    ("postgresql://u@[::1]:5432/mbxtui", {}),
    ("postgresql://u@localhost/mbxtui", {}),
    ("postgresql://u@LocalHost/mbxtui", {}),
    ("postgresql:///mbxtui", {}),
    ("postgresql://u@/mbxtui?host=/var/run/postgresql", {}),
    ("postgresql://u@%2Fvar%2Frun%2Fpostgresql/mbxtui", {}),
    # An sslmode the URL sets wins.
    ("postgresql://u@db.example.test/mbxtui?sslmode=disable", {}),
    ("postgresql://u@db.example.test/mbxtui?connect_timeout=5&sslmode=require", {}),
])
def test_a_host_other_than_this_machine_gets_verify_full_unless_the_url_says(url: str, expected: dict,
                                                                              monkeypatch: pytest.MonkeyPatch):
    for name in ("PGSSLMODE", "PGHOST", "PGHOSTADDR"):
        monkeypatch.delenv(name, raising=False)
    assert postgres.ssl_parameters(url) == expected


def test_pgsslmode_wins_and_pghost_counts_when_the_url_names_no_host(monkeypatch: pytest.MonkeyPatch):
    for name in ("PGSSLMODE", "PGHOST", "PGHOSTADDR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGHOST", "db.example.test")
    assert postgres.ssl_parameters("postgresql:///mbxtui") == VERIFY_FULL
    assert postgres.ssl_parameters("postgresql://u@127.0.0.1/mbxtui") == {}
    monkeypatch.setenv("PGHOST", "/run/postgresql")
    assert postgres.ssl_parameters("postgresql:///mbxtui") == {}
    monkeypatch.setenv("PGSSLMODE", "prefer")
    assert postgres.ssl_parameters("postgresql://u@db.example.test/mbxtui") == {}


def _named(url: str, host: str) -> str:
    """``url`` naming ``host`` while still connecting to the lab server on 127.0.0.1 (hostaddr)."""
    parts = urlsplit(url)
    netloc = parts.netloc.replace("127.0.0.1", host)
    return parts._replace(netloc=netloc, query="hostaddr=127.0.0.1").geturl()


@pytest.fixture
def no_libpq_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """No sslmode, root certificate or host from the environment; an empty home (no ~/.postgresql)."""
    for name in ("PGSSLMODE", "PGSSLROOTCERT", "PGHOST", "PGHOSTADDR", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@on_postgres
def test_the_lab_server_on_loopback_still_connects_as_before(databases: Databases, tmp_path, no_libpq_defaults):
    url = databases.new(tmp_path)
    assert postgres.ssl_parameters(url) == {}
    opened = db.connect_database(url)
    assert opened.execute_sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0] is False
    opened.close()
    databases.drop(url)


@on_postgres
def test_a_remote_server_without_ssl_is_refused_in_one_sentence_unless_the_url_disables_it(
        databases: Databases, tmp_path, no_libpq_defaults):
    url = databases.new(tmp_path)
    remote = _named(url, "db.mbxtui.test")
    with pytest.raises(db.DatabaseError) as refused:
        db.connect_database(remote)
    assert str(refused.value) == (
        f"cannot connect to {remote}: the server does not offer SSL, which mbxtui requires of a server on another "
        f"host (sslmode=verify-full): enable SSL on the server, or add sslmode=disable to the URL to connect "
        f"without it")
    with pytest.raises(psycopg2.OperationalError, match="SSL"):
        postgres.ChangeListener(remote)
    opened = db.connect_database(f"{remote}&sslmode=disable")
    assert db.schema_version(opened) == LATEST_VERSION
    opened.close()
    databases.drop(url)


@pytest.fixture(scope="module")
def ssl_server(tmp_path_factory: pytest.TempPathFactory):
    """A second lab cluster with SSL on, its certificate for db.mbxtui.test from a CA of its own."""
    if not ON_POSTGRES:
        pytest.skip("runs when the suite runs on PostgreSQL")
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    certificates = Path(tempfile.mkdtemp(prefix="mbxtui-pg-ssl-"))  # readable by the server's OS user
    issued = authority.issue_cert("db.mbxtui.test")
    issued.private_key_pem.write_to_path(certificates / "server.key")
    issued.cert_chain_pems[0].write_to_path(certificates / "server.crt")
    os.chmod(certificates / "server.key", 0o600)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (certificates, certificates / "server.key", certificates / "server.crt"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    clients = tmp_path_factory.mktemp("ssl-clients")
    authority.cert_pem.write_to_path(clients / "ca.pem")
    trustme.CA().cert_pem.write_to_path(clients / "other-ca.pem")
    server = start_postgres({"ssl": "on", "ssl_cert_file": str(certificates / "server.crt"),
                             "ssl_key_file": str(certificates / "server.key")})
    server.create_database("mbxtui_ssl")
    yield server, clients
    server.stop()
    shutil.rmtree(certificates, ignore_errors=True)


def test_without_a_root_certificate_a_remote_server_is_refused_in_one_sentence(ssl_server, no_libpq_defaults):
    server, _ = ssl_server
    remote = _named(server.url("mbxtui_ssl"), "db.mbxtui.test")
    with pytest.raises(db.DatabaseError) as refused:
        db.connect_database(remote)
    message = str(refused.value)
    root = re.search(r"there is no root certificate at (\S+): ", message)
    assert root and root.group(1).endswith("/.postgresql/root.crt"), message
    assert message == (
        f"cannot connect to {remote}: mbxtui checks the certificate of a server on another host "
        f"(sslmode=verify-full) and there is no root certificate at {root.group(1)}: add sslrootcert=FILE naming "
        f"the CA's certificate to the URL (sslrootcert=system for the system's CAs), or set sslmode there")


def test_with_the_servers_ca_a_remote_server_is_verified_and_encrypted(ssl_server, no_libpq_defaults):
    server, clients = ssl_server
    remote = _named(server.url("mbxtui_ssl"), "db.mbxtui.test")
    opened = db.connect_database(f"{remote}&sslrootcert={clients / 'ca.pem'}")
    assert opened.execute_sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0] is True
    opened.close()


def test_a_certificate_from_another_ca_or_for_another_name_is_refused(ssl_server, no_libpq_defaults):
    server, clients = ssl_server
    remote = _named(server.url("mbxtui_ssl"), "db.mbxtui.test")
    with pytest.raises(db.DatabaseError, match="certificate verify failed"):
        db.connect_database(f"{remote}&sslrootcert={clients / 'other-ca.pem'}")
    elsewhere = _named(server.url("mbxtui_ssl"), "elsewhere.mbxtui.test")
    with pytest.raises(db.DatabaseError, match='does not match host name "elsewhere.mbxtui.test"'):
        db.connect_database(f"{elsewhere}&sslrootcert={clients / 'ca.pem'}")


def test_an_sslmode_in_the_url_is_kept(ssl_server, no_libpq_defaults):
    server, _ = ssl_server
    remote = _named(server.url("mbxtui_ssl"), "db.mbxtui.test")
    opened = db.connect_database(f"{remote}&sslmode=disable")
    assert opened.execute_sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0] is False
    opened.close()



@on_postgres
@pytest.mark.parametrize("ended_by", ["idle_in_transaction_session_timeout", "idle_session_timeout",
                                      "pg_terminate_backend"])
def test_a_session_the_server_ended_is_a_fault_that_passes(db_path, ended_by: str):
    """The sessions the server ends idle (in a transaction or not: what it does to a host that fell
    silent, core/postgres.py), and one an administrator ended: a worker waits them out and
    connects anew, where an idle session's end stopped it."""
    from mbxtui.core.faults import passing_fault

    ended = database.obj._connect()
    try:
        with ended.cursor() as cursor:
            if ended_by == "pg_terminate_backend":
                with database.obj._connect() as admin, admin.cursor() as other:
                    other.execute("SELECT pg_terminate_backend(%s)", [ended.get_backend_pid()])
            else:
                cursor.execute(f"SET {ended_by} = '50ms'")
                if ended_by.startswith("idle_in"):
                    cursor.execute("BEGIN")
                ended.commit() if not ended_by.startswith("idle_in") else None
                time.sleep(0.5)
            with pytest.raises(psycopg2.Error) as failed:
                cursor.execute("SELECT 1")
    finally:
        ended.close()
    assert passing_fault(failed.value) is not None, failed.value

@on_postgres
def test_a_server_that_does_not_answer_in_time_is_a_fault_that_passes(db_path):
    """A server behind a link that stalls (a partition, a loaded host): libpq's "timeout expired"
    when connecting anew. A worker waits it out, where it exited (found in tests/hardening/test_hosts.py)."""
    from mbxtui.core.faults import passing_fault

    with socket.socket() as silent:  # accepts (the kernel's backlog) and never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.raises(psycopg2.OperationalError) as refused:
            psycopg2.connect(host="127.0.0.1", port=silent.getsockname()[1], dbname="x", connect_timeout=1)
    assert "timeout expired" in str(refused.value)
    fault = passing_fault(refused.value)
    assert fault is not None and "timeout expired" in fault
