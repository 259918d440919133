"""Roles through the command line: who may change, approve, manage operators and use --as."""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from tests import backends
from tests.cli.conftest import OS_LOGIN, Cli
from tests.core.support import unused_uid
from tests.lab.postgres import TEST_LOGIN


def test_a_viewer_can_list_but_not_change(cli: Cli):
    assert cli.json("--as", "vic", "mailbox", "list")["total"] == 3
    before = cli.dump()
    assert cli.fails("--as", "vic", "user", "add", "--name", "Cat", "--email", "cat@corp.test") == (
        "mbxtui: vic is viewer and may not change users, queues, mailboxes, profiles and settings: "
        "this needs the role global_admin or service_admin or system_admin")
    assert cli.dump() == before


def test_a_service_admin_approves_and_the_audit_log_names_both_logins(cli: Cli):
    assert cli.json("--as", "sam", "mailbox", "approve", "ann@corp.test", "sales@corp.test") == {
        "selected": 2, "changed": 2}
    rows = cli.query("SELECT email, approval, approved_by, approved_on FROM mailbox ORDER BY email")
    assert [(r["email"], r["approval"], r["approved_by"]) for r in rows] == [
        ("ann@corp.test", "approved", "sam"), ("bob@corp.test", "pending", None),
        ("sales@corp.test", "approved", "sam")]
    assert all(r["approved_on"] for r in rows if r["approval"] == "approved")
    entry = cli.json("audit", "list", "--limit", "1")[0]
    assert (entry["action"], entry["login"], entry["by_login"], entry["record_count"]) == (
        "mailbox.approve", "sam", OS_LOGIN, 2)
    table_row = cli.ok("audit", "list", "--limit", "1").stdout.splitlines()[1].split()
    assert table_row[2:5] == ["sam", OS_LOGIN, "mailbox.approve"]


def test_a_system_admin_and_a_viewer_may_not_approve_or_reject(cli: Cli):
    before = cli.dump()
    for login, role in (("syd", "system_admin"), ("vic", "viewer")):
        for command in ("approve", "reject"):
            assert cli.fails("--as", login, "mailbox", command, "--view", "pending") == (
                f"mbxtui: {login} is {role} and may not approve or reject email addresses: "
                "this needs the role global_admin or service_admin")
    assert cli.dump() == before


def test_only_a_global_admin_may_act_as_another_operator(cli: Cli):
    cli.execute("UPDATE operator SET role = 'service_admin' WHERE login = ?", (OS_LOGIN,))
    cli.execute("UPDATE operator SET role = 'global_admin' WHERE login = 'sam'")
    assert cli.fails("--as", "vic", "whoami") == (
        f"mbxtui: {OS_LOGIN} is service_admin and may not act as another operator: this needs the role global_admin")
    assert cli.json("whoami")["role"] == "service_admin"


def test_operators_are_added_listed_and_the_last_global_admin_is_kept(cli: Cli):
    added = cli.json("operator", "add", "olga", "--role", "system_admin", "--user", "bob@corp.test")
    assert added["user"] == "bob@corp.test" and added["role"] == "system_admin"
    assert cli.json("--as", "olga", "mailbox", "list", "--view", "mine")["total"] == 1
    assert "role: 'boss' is not one of" in cli.fails("operator", "add", "pat", "--role", "boss")
    assert cli.fails("operator", "set-role", OS_LOGIN, "--role", "viewer") == (
        f"mbxtui: {OS_LOGIN} is the last global_admin; make another operator global_admin first")
    assert cli.fails("--as", "vic", "operator", "add", "pat", "--role", "viewer").endswith(
        "this needs the role global_admin")
    listed = cli.ok("operator", "list").stdout.splitlines()
    assert listed[0].split() == ["LOGIN", "ROLE", "USER"]
    assert sorted(line.split()[0] for line in listed[1:]) == sorted([OS_LOGIN, "olga", "sam", "syd", "vic"])


UNLISTED_UID = unused_uid()  # a uid with no passwd entry, as in many containers


def run_as_uid(uid: int, argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """``mbxtui ARGV`` in a child process whose every uid and gid is ``uid`` (forked from this one:
    the interpreter may live where that uid cannot read, so what the command imports is loaded first)."""
    import importlib

    for name in ("mbxtui.cli.program", "mbxtui.cli.context", "mbxtui.core.db", "mbxtui.core.services.operators",
                 "mbxtui.core.secrets", "sqlite3", "peewee", "getpass", "pwd", "json", "uuid"):
        importlib.import_module(name)
    from mbxtui.cli import program

    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.dup2(out_write, 1)
            os.dup2(err_write, 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            os.environ.clear()
            os.environ.update(env)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            code = program.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 98
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(out_write)
    os.close(err_write)
    with open(out_read) as out, open(err_read) as err:
        stdout, stderr = out.read(), err.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), stdout, stderr


@pytest.mark.sqlite_only("the OS account is the operator on SQLite; PostgreSQL vouches by its database role")
@pytest.mark.skipif(os.geteuid() != 0, reason="running as a uid without a passwd entry needs root")
def test_a_uid_without_a_passwd_entry_is_refused_and_logname_is_never_read(cli: Cli):
    with pytest.raises(KeyError):
        pwd.getpwuid(UNLISTED_UID)
    # The uid may read and write the database and its directory: only its identity is missing.
    place = Path(tempfile.mkdtemp(prefix="mbxtui-unlisted-"))
    try:
        database = place / "mbxtui.db"
        shutil.copyfile(cli.db_path, database)
        os.chmod(database, 0o600)
        for path in (place, database):
            os.chown(path, UNLISTED_UID, UNLISTED_UID)
        before = backends.dump(database)
        audit_count = backends.query(database, "SELECT count(*) FROM audit_entry")[0][0]
        env = {**cli.env, "LOGNAME": "root", "USER": "root", "LNAME": "root", "USERNAME": "root",
               "HOME": str(place), "MBXTUI_DATA_DIR": str(place)}
        for command in (("operator", "set-role", "vic", "--role", "global_admin"), ("whoami",), ("init",)):
            code, stdout, stderr = run_as_uid(UNLISTED_UID, ["--db", str(database), *command], env)
            assert (code, stdout) == (1, ""), (command, stderr)
            assert stderr == (
                f"mbxtui: this process runs as uid {UNLISTED_UID}, which has no entry in the system's user "
                "database (passwd), so mbxtui cannot tell who you are: run it as a user with an account; "
                "nothing was changed\n"), command
        assert backends.dump(database) == before
        # Nothing recorded in anyone's name, root's (the environment's claim) least of all.
        assert backends.query(database, "SELECT count(*) FROM audit_entry")[0][0] == audit_count
    finally:
        shutil.rmtree(place)


postgres_only = pytest.mark.skipif(not backends.ON_POSTGRES, reason="PostgreSQL only: the server enforces roles (R35)")


def as_role(cli: Cli, login: str) -> Cli:
    """The same database and data directory, connected as the database role ``login``."""
    return Cli(str(cli.db_path).replace(f"//{TEST_LOGIN}@", f"//{login}@", 1), cli.data_dir)


def members_of(cli: Cli, login: str) -> list[str]:
    return sorted(row[0] for row in cli.query(
        "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = ?", (login,)))


@postgres_only
def test_on_postgres_operator_add_makes_a_database_role_and_as_needs_its_membership(cli: Cli):
    gail = "gail_" + str(cli.db_path).rsplit("/", 1)[-1]  # roles are the cluster's: one name per test database
    try:
        assert cli.json("operator", "add", gail, "--role", "global_admin")["role"] == "global_admin"
        assert members_of(cli, gail) == ["mbxtui_global_admin"]
        as_gail = as_role(cli, gail)
        assert as_gail.json("whoami") == {"login": gail, "role": "global_admin", "acting_for": None}
        assert as_gail.fails("--as", "sam", "mailbox", "approve", "ann@corp.test") == (
            f"mbxtui: {gail} may not act as sam on this database server: the role {gail} is not a member of the "
            f'role sam; a database administrator can allow it with: GRANT "sam" TO "{gail}"')
        cli.execute(f'GRANT "sam" TO "{gail}"')
        assert as_gail.json("--as", "sam", "mailbox", "approve", "ann@corp.test")["changed"] == 1
        entry = cli.json("audit", "list", "--limit", "1")[0]
        assert (entry["action"], entry["login"], entry["by_login"]) == ("mailbox.approve", "sam", gail)
        cli.ok("operator", "set-role", gail, "--role", "viewer")
        assert members_of(cli, gail) == ["mbxtui_viewer", "sam"]
        cli.ok("operator", "remove", gail)
        assert members_of(cli, gail) == ["sam"]
        cli.execute(f'GRANT mbxtui_global_admin TO "{gail}"')  # by hand, behind mbxtui's back
        assert cli.ok("operator", "sync-roles").stdout == (
            "the database roles of 4 operator(s) match their mbxtui roles\n")
        assert members_of(cli, gail) == ["sam"]
        assert "is not an operator of this database" in as_gail.fails("whoami")
    finally:
        cli.execute(f'DROP ROLE IF EXISTS "{gail}"')


@postgres_only
def test_on_postgres_a_refusal_by_the_server_is_one_sentence_and_changes_nothing(cli: Cli):
    # mbxtui's own check is passed (syd is global_admin in the operator table); the server knows
    # syd's role is system_admin.
    cli.execute("UPDATE operator SET role = 'global_admin' WHERE login = 'syd'")
    as_syd = as_role(cli, "syd")
    before = cli.dump()
    assert as_syd.fails("operator", "add", "pat", "--role", "viewer") == (
        "mbxtui: the database server refused this (permission denied for table operator); nothing was changed: "
        "your database role may not do it, ask a global_admin for a role that may")
    assert as_syd.fails("mailbox", "approve", "ann@corp.test") == (
        "mbxtui: the database server refused this (the role syd may not approve or reject email addresses: this "
        "needs the role global_admin or service_admin); nothing was changed: your database role may not do it, "
        "ask a global_admin for a role that may")
    assert cli.dump() == before
    assert cli.query("SELECT 1 FROM pg_roles WHERE rolname = 'pat'") == []


@postgres_only
def test_on_postgres_init_makes_the_session_role_global_admin(cli: Cli, databases):
    owner = "owner_" + str(cli.db_path).rsplit("/", 1)[-1]
    name = f"{owner}_db"
    databases.server.admin(f'CREATE ROLE "{owner}" LOGIN CREATEROLE')
    try:
        databases.server.admin(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        fresh = Cli(databases.server.url(name, user=owner), cli.data_dir)
        assert fresh.ok("init").stdout.endswith(f"; {owner} is global_admin\n")
        assert fresh.json("whoami") == {"login": owner, "role": "global_admin", "acting_for": None}
        assert members_of(cli, owner) == ["mbxtui_global_admin"]
        assert fresh.json("audit", "list")[0]["login"] == owner
    finally:
        databases.server.drop_database(name)
        databases.server.admin(f'DROP ROLE IF EXISTS "{owner}"')
