"""The command line, run as a person or a script runs it: `python -m mbxtui --db PATH ...` in a
subprocess, against a real database (a SQLite file or a PostgreSQL database, see tests/backends.py)
copied from a template made once per session.

The template: the login running the tests is its global_admin; sam, syd and vic are service_admin,
system_admin and viewer; profile "imap" is the default, profile "pop" another; users ann and bob; queue
sales (owner ann).
Secrets go to the encrypted file keyring in the test's data directory (no OS keyring is offered)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from mbxtui.core import db, server_roles
from mbxtui.core.services import operators, profiles, settings, users
from tests import backends
from tests.backends import Databases
from tests.core.support import IMAP_PROFILE, LOGINS

REPO = Path(__file__).resolve().parents[2]
OS_LOGIN = operators.os_login()  # on PostgreSQL the lab's superuser of the same name (tests/lab)
MASTER_PASSWORD = "master password of the test keyring"
CLI_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    def __init__(self, db_path: Path | str, data_dir: Path):
        self.db_path = db_path
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("MBXTUI_") and k not in ("PYTHON_KEYRING_BACKEND", "NO_COLOR")}
        self.env.update({
            "MBXTUI_DATA_DIR": str(data_dir),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "MBXTUI_MASTER_PASSWORD": MASTER_PASSWORD,
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        })

    def run(self, *args: str, input: str | None = None, env: dict[str, str] | None = None,
            with_db: bool = True) -> Result:
        command = [sys.executable, "-m", "mbxtui", *(["--db", str(self.db_path)] if with_db else []), *args]
        completed = subprocess.run(command, input=input if input is not None else "", capture_output=True, text=True,
                                   env={**self.env, **(env or {})}, cwd=self.data_dir.parent,
                                   timeout=CLI_TIMEOUT_SECONDS)
        return Result(tuple(args), completed.returncode, completed.stdout, completed.stderr)

    def ok(self, *args: str, **kwargs) -> Result:
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, f"{args} exited {result.returncode}: {result.stderr}"
        return result

    def json(self, *args: str, **kwargs) -> Any:
        return self.ok(*args, "--json", **kwargs).json()

    def fails(self, *args: str, code: int = 1, **kwargs) -> str:
        """Run a command that must be refused; return its one line of stderr."""
        result = self.run(*args, **kwargs)
        assert result.returncode == code, f"{args} exited {result.returncode}, not {code}: {result.stderr}"
        if code == 1:
            assert result.stderr.count("\n") == 1 and result.stderr.startswith("mbxtui: "), result.stderr
            assert result.stdout == ""
        return result.stderr.strip()

    def query(self, sql: str, params: tuple = ()) -> list[Any]:
        return backends.query(self.db_path, sql, params)

    def execute(self, sql: str, params: tuple = ()) -> None:
        backends.execute(self.db_path, sql, params)

    def scalar(self, sql: str, params: tuple = ()) -> Any:
        return self.query(sql, params)[0][0]

    def counts(self) -> dict[str, int]:
        return {name: self.scalar(f'SELECT count(*) FROM "{name}"') for name in backends.tables(self.db_path)}

    def dump(self) -> list[str]:
        """Every row of every table, to compare before and after a refused command."""
        return backends.dump(self.db_path)


def build_template(path: Path | str) -> None:
    opened = db.open_database(path)
    try:
        me = operators.initialise(login=OS_LOGIN)
        for role, login in (("service_admin", LOGINS["service"]), ("system_admin", LOGINS["system"]),
                            ("viewer", LOGINS["viewer"])):
            operators.add(me, login, role)
        profiles.create(me, **IMAP_PROFILE)
        profiles.create(me, **{**IMAP_PROFILE, "name": "pop", "type": "pop3_smtp", "incoming_port": 995})
        settings.update(me, default_profile=IMAP_PROFILE["name"])
        users.add_user(me, "Ann", "ann@corp.test")
        users.add_user(me, "Bob", "bob@corp.test")
        users.add_queue(me, "Sales", "sales@corp.test", "ann@corp.test")
    finally:
        opened.close()


def sync_server_roles(location: str) -> None:
    """The database roles are the cluster's, shared by every test database: give the template's
    operators their roles again, whatever another test made of the same logins."""
    opened = db.open_database(location)
    try:
        server_roles.grant_every_operator(opened)
    finally:
        opened.close()


@pytest.fixture(scope="session")
def cli_template(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Path | str:
    assert OS_LOGIN not in LOGINS.values(), f"the tests use the login {OS_LOGIN} for another operator"
    path = databases.new(tmp_path_factory.mktemp("cli-template"), "cli_template")
    build_template(path)
    return path


@pytest.fixture
def cli(databases: Databases, cli_template: Path | str, tmp_path: Path) -> Iterator[Cli]:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    path = databases.copy(cli_template, data_dir)
    if backends.ON_POSTGRES:
        sync_server_roles(path)
    yield Cli(path, data_dir)
    databases.drop(path)
