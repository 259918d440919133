"""`mbxtui migrate`: a SQLite installation copied into a new database of the suite's backend (a
SQLite file, or a PostgreSQL database), the summary it prints, and its refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.backends import Databases
from tests.cli.conftest import Cli, build_template


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "old" / "mbxtui.db"
    path.parent.mkdir(mode=0o700)
    build_template(path)
    return path


@pytest.fixture
def target(databases: Databases, tmp_path: Path) -> Iterator[Path | str]:
    location = databases.new(tmp_path / "new", "migrate_target")
    yield location
    databases.drop(location)


def test_migrate_copies_the_installation_and_says_where_the_secrets_are(source, target, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    old, new = Cli(source, data_dir), Cli(target, data_dir)

    result = old.ok("migrate", "--from", f"sqlite://{source}", "--to", str(target), with_db=False)

    assert f"to {target}" in result.stdout and "row counts verified" in result.stdout
    assert any(line.split() == ["mailbox", "3"] for line in result.stdout.splitlines())
    assert "Secrets were not copied" in result.stdout and "secrets.cfg" in result.stdout
    for command in (("mailbox", "list", "--view", "all"), ("profile", "list"), ("settings", "show"),
                    ("audit", "list"), ("operator", "list")):
        assert new.json(*command) == old.json(*command), command


def test_migrate_refuses_a_target_with_data_and_changes_nothing(source, target, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    old, new = Cli(source, data_dir), Cli(target, data_dir)
    summary = old.json("migrate", "--from", str(source), "--to", str(target), with_db=False)
    assert summary["tables"]["mailbox"] == 3 and summary["install_id"]
    before = new.dump()

    error = old.fails("migrate", "--from", str(source), "--to", str(target), with_db=False)

    assert "already holds data" in error and "nothing was written" in error
    assert new.dump() == before


def test_migrate_needs_both_ends(cli):
    assert "--to" in cli.fails("migrate", "--from", "x.db", code=2, with_db=False)
