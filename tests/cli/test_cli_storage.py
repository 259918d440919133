"""Where the command line keeps its database, and how it refuses one it cannot use."""

from __future__ import annotations

import os
import pwd
import socket
import sqlite3
import stat
from pathlib import Path

import pytest

from mbxtui.core.migrations import LATEST_VERSION
from tests.backends import ON_POSTGRES, query
from tests.cli.conftest import OS_LOGIN, Cli
from tests.core.support import unused_uid

sqlite_file = pytest.mark.sqlite_only("the SQLite file the command line makes and checks")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@sqlite_file
def test_by_default_the_database_is_made_owner_only_in_the_data_directory(cli: Cli, tmp_path: Path):
    data_dir = tmp_path / "fresh" / "mbxtui-data"
    result = cli.ok("init", with_db=False, env={"MBXTUI_DATA_DIR": str(data_dir)})
    assert result.stdout.strip() == f"initialised the default database; {OS_LOGIN} is global_admin"
    database = data_dir / "mbxtui.db"
    assert mode(data_dir) == 0o700 and mode(database) == 0o600
    conn = sqlite3.connect(database)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_mbxtui_db_names_the_database_and_db_overrides_it(cli: Cli, databases, cli_template, tmp_path: Path):
    other = databases.copy(cli_template, tmp_path / "other")
    env = {"MBXTUI_DB": str(other)}
    cli.ok("user", "add", "--name", "Cat", "--email", "cat@corp.test", with_db=False, env=env)
    cli.ok("user", "add", "--name", "Dan", "--email", "dan@corp.test", env=env)
    users_in = {str(location): {r[0] for r in query(location, 'SELECT email FROM "user"')}
                for location in (other, cli.db_path)}
    assert users_in[str(other)] == {"ann@corp.test", "bob@corp.test", "cat@corp.test"}
    assert users_in[str(cli.db_path)] == {"ann@corp.test", "bob@corp.test", "dan@corp.test"}
    databases.drop(other)


@pytest.mark.parametrize("url, problem", [
    ("postgresql://db.example.test", "names no database: use postgresql://USER@HOST:PORT/DBNAME"),
    ("postgresql://db.example.test:70000/mbxtui", "is not a PostgreSQL URL: Port out of range 0-65535"),
])
def test_a_bad_postgresql_url_is_one_line_naming_the_problem(cli: Cli, url: str, problem: str):
    assert cli.fails("--db", url, "whoami", with_db=False) == f"mbxtui: db: {url} {problem}"


def test_an_unreachable_postgresql_server_is_one_line_without_the_password(cli: Cli):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stderr = cli.fails("whoami", with_db=False, env={"MBXTUI_DB": f"postgresql://admin:pw@127.0.0.1:{port}/mbxtui"})
    assert stderr.startswith(f"mbxtui: cannot connect to postgresql://admin:***@127.0.0.1:{port}/mbxtui: ")
    assert "refused" in stderr and ":pw@" not in stderr


@pytest.mark.skipif(not ON_POSTGRES, reason="runs when the suite runs on PostgreSQL")
def test_init_makes_a_new_postgresql_database_ready(cli: Cli, databases, tmp_path: Path):
    url = databases.new(tmp_path)
    assert cli.ok("--db", url, "init", with_db=False).stdout.strip() == f"initialised {url}; {OS_LOGIN} is global_admin"
    assert cli.json("--db", url, "whoami", with_db=False)["role"] == "global_admin"
    assert query(url, "SELECT version FROM schema_version")[0][0] == LATEST_VERSION
    databases.drop(url)


@sqlite_file
def test_a_database_from_a_newer_mbxtui_is_refused(cli: Cli):
    conn = sqlite3.connect(cli.db_path)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    assert cli.fails("mailbox", "list") == (
        f"mbxtui: the database is at schema version {LATEST_VERSION + 1}, newer than this mbxtui understands "
        f"({LATEST_VERSION}): upgrade mbxtui")


@sqlite_file
def test_a_file_that_is_not_a_database_is_refused(cli: Cli):
    cli.db_path.write_text("name,email\nAnn,ann@corp.test\n" * 20)
    assert cli.fails("mailbox", "list") == (
        f"mbxtui: cannot open {cli.db_path} as an mbxtui database: file is not a database")


@sqlite_file
def test_a_database_others_can_read_works_with_a_warning(cli: Cli):
    os.chmod(cli.db_path, 0o644)
    result = cli.ok("whoami")
    assert result.stderr == f"mbxtui: warning: {cli.db_path} can be read by other users; run: chmod 600 {cli.db_path}\n"


ME = pwd.getpwuid(os.geteuid()).pw_name


@sqlite_file
def test_every_directory_init_makes_is_0700_under_umask_0(cli: Cli, tmp_path: Path):
    data_dir = tmp_path / "fresh" / "deeper" / "mbxtui-data"
    previous = os.umask(0)  # the command inherits it
    try:
        cli.ok("init", with_db=False, env={"MBXTUI_DATA_DIR": str(data_dir)})
    finally:
        os.umask(previous)
    for directory in (tmp_path / "fresh", tmp_path / "fresh" / "deeper", data_dir):
        assert mode(directory) == 0o700, f"{directory} has mode {oct(mode(directory))}"
    assert mode(data_dir / "mbxtui.db") == 0o600


@sqlite_file
def test_a_database_owned_by_another_user_is_refused(cli: Cli):
    other = unused_uid()
    os.chown(cli.db_path, other, -1)
    assert cli.fails("whoami") == (
        f"mbxtui: {cli.db_path} is owned by uid {other}, not by {ME}: mbxtui opens only databases of the user it "
        f"runs as; run it as uid {other}")


def test_a_data_directory_owned_by_another_user_is_refused(cli: Cli, tmp_path: Path):
    data_dir = tmp_path / "someone-else"
    data_dir.mkdir(mode=0o700)
    other = unused_uid()
    os.chown(data_dir, other, -1)
    env = {"MBXTUI_DATA_DIR": str(data_dir)}
    refusal = (f"mbxtui: the data directory {data_dir} is owned by uid {other}, not by {ME}: run mbxtui as "
               f"uid {other}, or choose a directory of your own with MBXTUI_DATA_DIR")
    if not ON_POSTGRES:
        assert cli.fails("init", with_db=False, env=env) == refusal  # the default database would go there
    assert cli.fails("mailbox", "set-password", "ann@corp.test", "--password-stdin", input="pw\n", env=env) == refusal
    assert os.listdir(data_dir) == []


@sqlite_file
def test_a_data_directory_and_a_database_others_can_write_work_with_a_warning_each(cli: Cli):
    os.chmod(cli.data_dir, 0o777)
    os.chmod(cli.db_path, 0o660)
    result = cli.ok("whoami")
    assert result.stderr == (
        f"mbxtui: warning: the data directory {cli.data_dir} can be written by other users; "
        f"run: chmod 700 {cli.data_dir}\n"
        f"mbxtui: warning: {cli.db_path} can be read and written by other users; run: chmod 600 {cli.db_path}\n")


def test_a_data_directory_others_can_write_is_warned_about_on_any_database(cli: Cli):
    os.chmod(cli.data_dir, 0o770)
    result = cli.ok("whoami")
    assert result.stderr == (f"mbxtui: warning: the data directory {cli.data_dir} can be written by other users; "
                             f"run: chmod 700 {cli.data_dir}\n")


@pytest.mark.skipif(not ON_POSTGRES, reason="runs when the suite runs on PostgreSQL")
def test_a_remote_postgresql_host_gets_verify_full_and_one_line_saying_what_to_do(cli: Cli):
    # Named as another host, reached on the lab server's loopback address (libpq's hostaddr).
    remote = str(cli.db_path).replace("@127.0.0.1:", "@db.mbxtui.test:") + "?hostaddr=127.0.0.1"
    env = {"PGSSLMODE": ""}  # none from the machine running the tests
    assert cli.fails("--db", remote, "whoami", with_db=False, env=env) == (
        f"mbxtui: cannot connect to {remote}: the server does not offer SSL, which mbxtui requires of a server on "
        f"another host (sslmode=verify-full): enable SSL on the server, or add sslmode=disable to the URL to "
        f"connect without it")
    assert cli.json("--db", f"{remote}&sslmode=disable", "whoami", with_db=False, env=env)["role"] == "global_admin"
