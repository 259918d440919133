"""Roles through the command line: who may change, approve, manage operators and use --as."""

from __future__ import annotations


from tests.cli.conftest import OS_LOGIN, Cli


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
