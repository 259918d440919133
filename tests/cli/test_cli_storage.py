"""Where the command line keeps its database, and how it refuses one it cannot use."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from pathlib import Path

from mbxtui.core.migrations import LATEST_VERSION
from tests.cli.conftest import OS_LOGIN, Cli


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


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


def test_mbxtui_db_names_the_database_and_db_overrides_it(cli: Cli, tmp_path: Path):
    other = tmp_path / "other.db"
    shutil.copyfile(cli.db_path, other)
    env = {"MBXTUI_DB": str(other)}
    cli.ok("user", "add", "--name", "Cat", "--email", "cat@corp.test", with_db=False, env=env)
    cli.ok("user", "add", "--name", "Dan", "--email", "dan@corp.test", env=env)
    users_in = {path: {r[0] for r in sqlite3.connect(path).execute('SELECT email FROM "user"')}
                for path in (other, cli.db_path)}
    assert users_in[other] == {"ann@corp.test", "bob@corp.test", "cat@corp.test"}
    assert users_in[cli.db_path] == {"ann@corp.test", "bob@corp.test", "dan@corp.test"}


def test_a_database_from_a_newer_mbxtui_is_refused(cli: Cli):
    conn = sqlite3.connect(cli.db_path)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    assert cli.fails("mailbox", "list") == (
        f"mbxtui: the database is at schema version {LATEST_VERSION + 1}, newer than this mbxtui understands "
        f"({LATEST_VERSION}): upgrade mbxtui")


def test_a_file_that_is_not_a_database_is_refused(cli: Cli):
    cli.db_path.write_text("name,email\nAnn,ann@corp.test\n" * 20)
    assert cli.fails("mailbox", "list") == (
        f"mbxtui: cannot open {cli.db_path} as an mbxtui database: file is not a database")


def test_a_database_others_can_read_works_with_a_warning(cli: Cli):
    os.chmod(cli.db_path, 0o644)
    result = cli.ok("whoami")
    assert result.stderr == f"mbxtui: warning: {cli.db_path} can be read by other users; run: chmod 600 {cli.db_path}\n"
