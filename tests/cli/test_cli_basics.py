"""The command line's contract: help, exit codes (0 done, 1 refused with one line on stderr, 2 usage),
JSON that parses, text that cannot drive the terminal."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.cli.conftest import OS_LOGIN, REPO, Cli


def test_python_dash_m_mbxtui_help_lists_the_commands(cli: Cli):
    result = cli.ok("--help", with_db=False)
    for command in ("init", "operator", "user", "queue", "profile", "settings", "mailbox", "forward-mailbox",
                    "import", "alerts", "audit"):
        assert command in result.stdout
    assert "--db PATH" in result.stdout and "--as LOGIN" in result.stdout


def test_the_console_script_runs_the_same_program(cli: Cli):
    target = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["mbxtui"]
    module, function = target.split(":")
    launcher = f"import sys, {module}; sys.exit({module}.{function}())"
    completed = subprocess.run([sys.executable, "-c", launcher, "--version"], capture_output=True, text=True,
                               env=cli.env, timeout=60)
    assert completed.returncode == 0 and completed.stdout.startswith("mbxtui ")


def test_usage_errors_exit_2(cli: Cli):
    assert "invalid choice: 'frobnicate'" in cli.fails("frobnicate", code=2)
    assert "the following arguments are required: --email" in cli.fails("user", "add", "--name", "X", code=2)
    assert "invalid choice: 'everything'" in cli.fails("mailbox", "list", "--view", "everything", code=2)
    stderr = cli.fails("mailbox", "approve", code=2)
    assert stderr == "mbxtui: error: name the mailboxes: EMAIL..., or --view/--filter"


def test_a_refusal_exits_1_with_one_line_naming_the_problem(cli: Cli):
    before = cli.dump()
    assert cli.fails("user", "add", "--name", "Ann again", "--email", "ANN@corp.test") == (
        "mbxtui: email: a user with email ann@corp.test already exists")
    assert cli.fails("mailbox", "show", "ghost@corp.test") == "mbxtui: no mailbox with email ghost@corp.test"
    assert cli.dump() == before


def test_a_database_without_operators_asks_for_init(cli: Cli, tmp_path):
    cli.db_path = tmp_path / "fresh.db"
    assert "run `mbxtui init` first" in cli.fails("user", "list")
    assert cli.ok("init").stdout.strip() == f"initialised {cli.db_path}; {OS_LOGIN} is global_admin"
    assert cli.json("whoami") == {"login": OS_LOGIN, "role": "global_admin", "acting_for": None}


def test_a_login_that_is_not_an_operator_is_told_whom_to_ask(cli: Cli):
    cli.execute("UPDATE operator SET login = 'alice' WHERE login = ?", (OS_LOGIN,))
    stderr = cli.fails("mailbox", "list")
    assert stderr == (f"mbxtui: {OS_LOGIN} is not an operator of this database: ask a global_admin to run "
                      f"`mbxtui operator add {OS_LOGIN} --role ROLE`")


def test_every_listing_and_show_command_prints_json(cli: Cli):
    outputs = {
        "whoami": cli.json("whoami"),
        "operator list": cli.json("operator", "list"),
        "user list": cli.json("user", "list"),
        "queue list": cli.json("queue", "list"),
        "profile list": cli.json("profile", "list"),
        "profile show": cli.json("profile", "show", "imap"),
        "settings show": cli.json("settings", "show"),
        "mailbox list": cli.json("mailbox", "list"),
        "mailbox show": cli.json("mailbox", "show", "ann@corp.test"),
        "alerts list": cli.json("alerts", "list"),
        "audit list": cli.json("audit", "list"),
    }
    assert [u["email"] for u in outputs["user list"]] == ["ann@corp.test", "bob@corp.test"]
    assert outputs["queue list"][0]["owner"] == "ann@corp.test"
    assert outputs["profile list"][0]["mailboxes"] == 3
    assert outputs["profile show"]["password"] == "not set"
    assert outputs["settings show"]["default_profile"] == "imap"
    assert outputs["mailbox list"]["total"] == 3 and len(outputs["mailbox list"]["rows"]) == 3
    assert outputs["mailbox show"]["email"] == "ann@corp.test"
    assert outputs["alerts list"] == []
    assert outputs["audit list"][0]["action"] == "mailbox.create"
    assert {o["login"] for o in outputs["operator list"]} == {OS_LOGIN, "sam", "syd", "vic"}


def test_terminal_escapes_in_stored_text_are_shown_not_obeyed(cli: Cli):
    evil = "Eve\x1b[2J\x1b]0;pwned\x07\x9b31m"
    cli.execute("UPDATE mailbox SET name = ? WHERE email = 'bob@corp.test'", (evil,))
    cli.execute('UPDATE "user" SET name = ? WHERE email = \'bob@corp.test\'', (evil,))
    shown = "Eve\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m"
    for args in (("mailbox", "list"), ("mailbox", "show", "bob@corp.test"), ("user", "list")):
        output = cli.ok(*args).stdout
        assert shown in output, args
        assert not any(ch in output for ch in "\x1b\x07\x9b"), args
    rows = cli.json("mailbox", "list", "--filter", "Eve")["rows"]
    assert [r["name"] for r in rows] == [evil]


def test_control_characters_typed_into_a_name_are_refused(cli: Cli):
    assert cli.fails("user", "add", "--name", "Eve\x1b[2J", "--email", "eve@corp.test") == (
        "mbxtui: name: contains a control character (U+001B)")
