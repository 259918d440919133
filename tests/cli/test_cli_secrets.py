"""R4 through the command line: a password goes in on standard input, into the encrypted file
keyring, and never comes out of any command, the database or the audit log."""

from __future__ import annotations

from mbxtui.core.secrets import SECRETS_FILE_NAME
from tests.cli.conftest import Cli
from tests.core.support import file_bytes

MAILBOX_PASSWORD = "Mailbox-Pässword-8e1f27"
PROFILE_PASSWORD = "Profile-Password-03c5aa"


def test_passwords_are_write_only_and_the_keyring_needs_its_master_password(cli: Cli):
    assert cli.ok("mailbox", "set-password", "ann@corp.test", "--password-stdin",
                  input=MAILBOX_PASSWORD + "\n").stdout.strip() == "password of mailbox ann@corp.test set"
    assert cli.ok("profile", "set-password", "imap", "--password-stdin",
                  input=PROFILE_PASSWORD + "\n").stdout.strip() == "password of profile imap set"
    outputs = [
        cli.ok("mailbox", "show", "ann@corp.test", "--json").stdout,
        cli.ok("mailbox", "show", "ann@corp.test").stdout,
        cli.ok("mailbox", "list", "--json").stdout,
        cli.ok("profile", "show", "imap", "--json").stdout,
        cli.ok("profile", "list", "--json").stdout,
        cli.ok("audit", "list", "--json").stdout,
        cli.ok("audit", "list", "--mailbox", "ann@corp.test", "--json").stdout,
    ]
    assert '"password": "set"' in outputs[0] and '"password": "set"' in outputs[3]
    for output in outputs:
        assert MAILBOX_PASSWORD not in output and PROFILE_PASSWORD not in output
    stored = file_bytes(cli.db_path) + (cli.data_dir / SECRETS_FILE_NAME).read_bytes()
    for secret in (MAILBOX_PASSWORD, PROFILE_PASSWORD):
        assert secret.encode() not in stored
    actions = [r[0] for r in cli.query("SELECT action FROM audit_entry ORDER BY id DESC LIMIT 2")]
    assert actions == ["profile.set_password", "mailbox.set_password"]

    before = cli.dump()
    stderr = cli.fails("mailbox", "set-password", "bob@corp.test", "--password-stdin", input="other",
                       env={"MBXTUI_MASTER_PASSWORD": "not the master password"})
    assert stderr == f"mbxtui: MBXTUI_MASTER_PASSWORD does not unlock {cli.data_dir / SECRETS_FILE_NAME}"
    assert cli.dump() == before


def test_a_password_is_never_taken_from_the_command_line(cli: Cli):
    assert cli.fails("mailbox", "set-password", "ann@corp.test", code=2) == (
        "mbxtui: error: give the password on standard input with --password-stdin (never on the command line)")
    assert "unrecognized arguments: hunter2" in cli.fails("mailbox", "set-password", "ann@corp.test", "hunter2",
                                                          "--password-stdin", code=2)
