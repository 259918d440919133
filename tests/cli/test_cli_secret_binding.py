"""R34 through the command line: whether a secret is confirmed for the current endpoint (show),
confirming it for mailboxes by address or by view and for a profile, who may, and credentials in
clear allowed only by a global_admin."""

from __future__ import annotations

from tests.cli.conftest import Cli

PASSWORD = "Bound-Cli-Pässword-61d0"


def set_passwords(cli: Cli, *emails: str) -> None:
    for email in emails:
        cli.ok("mailbox", "set-password", email, "--password-stdin", input=PASSWORD + "\n")


def test_show_says_whether_the_secret_is_confirmed_and_confirm_secret_confirms_by_view(cli: Cli):
    assert cli.json("mailbox", "show", "ann@corp.test")["secret_endpoint"] == "no secret"
    set_passwords(cli, "ann@corp.test", "bob@corp.test")
    assert cli.json("mailbox", "show", "ann@corp.test")["secret_endpoint"] == "confirmed"
    assert "secret_endpoint" in cli.ok("mailbox", "show", "ann@corp.test").stdout

    cli.ok("profile", "edit", "imap", "--incoming-host", "imap.elsewhere.test")
    assert cli.json("mailbox", "show", "ann@corp.test")["secret_endpoint"] == "not confirmed"
    assert cli.json("mailbox", "show", "bob@corp.test")["secret_endpoint"] == "not confirmed"

    before = cli.dump()
    refused = cli.fails("--as", "vic", "mailbox", "confirm-secret", "--view", "all")
    assert "vic is viewer" in refused
    assert cli.dump() == before

    # The system_admin who can point a profile anywhere may not also send the passwords there.
    assert cli.fails("--as", "syd", "mailbox", "confirm-secret", "--view", "all") == (
        "mbxtui: syd is system_admin and may not confirm a secret for an endpoint it was not set for: "
        "this needs the role global_admin or service_admin")
    assert cli.dump() == before
    confirmed = cli.json("--as", "sam", "mailbox", "confirm-secret", "--view", "all", "--filter", "corp.test")
    assert confirmed == {"selected": 3, "changed": 2}
    for email in ("ann@corp.test", "bob@corp.test"):
        assert cli.json("mailbox", "show", email)["secret_endpoint"] == "confirmed"
    actions = [r[0] for r in cli.query("SELECT action FROM audit_entry ORDER BY id DESC LIMIT 1")]
    assert actions == ["mailbox.confirm_secret"]


def test_a_mailbox_moved_by_bulk_edit_needs_its_secret_confirmed(cli: Cli):
    set_passwords(cli, "ann@corp.test")
    cli.ok("mailbox", "bulk-edit", "ann@corp.test", "--profile", "pop")
    assert cli.json("mailbox", "show", "ann@corp.test")["secret_endpoint"] == "not confirmed"
    assert cli.ok("mailbox", "confirm-secret", "ann@corp.test").stdout.strip() == (
        "confirmed the secrets of 1 of 1 selected mailbox(es) for their profile's current endpoint")
    assert cli.json("mailbox", "show", "ann@corp.test")["secret_endpoint"] == "confirmed"


def test_profile_confirm_secret(cli: Cli):
    assert cli.fails("profile", "confirm-secret", "imap") == (
        "mbxtui: confirm-secret: profile 'imap' has no password or token to confirm: set one with "
        "`mbxtui profile set-password`")
    cli.ok("profile", "set-password", "imap", "--password-stdin", input=PASSWORD + "\n")
    cli.ok("profile", "edit", "imap", "--outgoing-port", "2525")
    assert cli.json("profile", "show", "imap")["secret_endpoint"] == "not confirmed"
    assert cli.ok("profile", "confirm-secret", "imap").stdout.strip() == (
        "the secrets of profile imap confirmed for its current endpoint")
    assert cli.json("profile", "show", "imap")["secret_endpoint"] == "confirmed"


def test_credentials_in_clear_need_a_global_admin(cli: Cli):
    before = cli.dump()
    assert cli.fails("profile", "edit", "imap", "--incoming-tls", "none", "--incoming-port", "143") == (
        "mbxtui: incoming-tls: none would send credentials in clear to imap.corp.test:143, which is not a "
        "loopback host: choose implicit or starttls, or have a global_admin save it with "
        "--allow-plaintext-credentials")
    refused = cli.fails("--as", "syd", "profile", "edit", "imap", "--incoming-tls", "none",
                        "--allow-plaintext-credentials")
    assert "syd is system_admin and may not allow credentials in clear" in refused
    assert cli.dump() == before
    shown = cli.json("profile", "edit", "imap", "--incoming-tls", "none", "--incoming-port", "143",
                     "--allow-plaintext-credentials")
    assert shown["plaintext_credentials"] == "allowed"
    assert cli.json("profile", "edit", "imap", "--incoming-host", "imap2.corp.test",
                    "--allow-plaintext-credentials")["plaintext_credentials"] == "allowed"
    cli.ok("profile", "edit", "imap", "--incoming-tls", "implicit", "--incoming-port", "993")
    assert cli.json("profile", "show", "imap")["plaintext_credentials"] == "not allowed"
