"""The settings of processing through the command line: `settings set --tracking-users
--tracking-queues --stale-hours --notification-mailbox`, `mailbox edit --tracking`, `profile
add/edit --retest-hours --processed-folder`, each shown back and refused in one line."""

from __future__ import annotations

from tests.cli.conftest import Cli

NOT_ENABLED = ("mbxtui: warning: mailbox sales@corp.test is not enabled for outgoing yet: owners' emails wait until "
               "Test & Enable passes for it\n")


def test_settings_set_tracking_stale_hours_and_notification_mailbox(cli: Cli):
    result = cli.ok("settings", "set", "--tracking-users", "ALL", "--tracking-queues", "none", "--stale-hours", "72",
                    "--notification-mailbox", "sales@corp.test", "--json")
    changed = result.json()
    assert (changed["tracking_users"], changed["tracking_queues"], changed["stale_hours"]) == ("all", "none", 72)
    assert changed["notification_mailbox"] == "sales@corp.test" and "notification_warning" not in changed
    assert result.stderr == NOT_ENABLED
    stored = cli.query("SELECT tracking_users, tracking_queues, stale_hours FROM org_settings")
    assert [tuple(row) for row in stored] == [("all", "none", 72)]
    shown = cli.ok("settings", "show")
    for line in ("tracking_users                   all", "tracking_queues                  none",
                 "stale_hours                      72", "notification_mailbox             sales@corp.test"):
        assert line in shown.stdout.splitlines()
    assert shown.stderr == NOT_ENABLED
    cli.execute("UPDATE mailbox SET outgoing_enabled = 1 WHERE email = 'sales@corp.test'")
    assert cli.ok("settings", "show").stderr == ""
    assert cli.json("settings", "set", "--notification-mailbox", "none")["notification_mailbox"] is None
    assert cli.scalar("SELECT notification_mailbox_id FROM org_settings") is None


def test_settings_set_refuses_bad_processing_settings_in_one_line(cli: Cli):
    before = cli.dump()
    for args, message in (
        (("--tracking-users", "some"), "tracking_users: 'some' is not one of: all, replies, none"),
        (("--tracking-queues", "default"), "tracking_queues: 'default' is not one of: all, replies, none"),
        (("--stale-hours", "0"), "stale_hours: 0 hours is out of range 1–8760"),
        (("--stale-hours", "soon"), "stale_hours: 'soon' is not a whole number"),
        (("--notification-mailbox", "ghost@corp.test"),
         "notification_mailbox: no mailbox with email ghost@corp.test: give an existing mailbox, or none to clear it"),
    ):
        assert cli.fails("settings", "set", *args) == f"mbxtui: {message}"
    cli.execute("UPDATE mailbox SET outgoing_method = 'none' WHERE email = 'ann@corp.test'")
    before = cli.dump()
    assert cli.fails("settings", "set", "--notification-mailbox", "ann@corp.test") == (
        "mbxtui: notification_mailbox: mailbox ann@corp.test has outgoing method none, so it cannot send the "
        "owners' emails: choose a mailbox that sends (outgoing method server_side_sync)")
    assert cli.fails("--as", "vic", "settings", "set", "--stale-hours", "2").startswith("mbxtui: vic is viewer")
    assert cli.dump() == before


def test_mailbox_edit_tracking_and_back_to_default(cli: Cli):
    assert cli.json("mailbox", "show", "ann@corp.test")["tracking"] == "default"
    assert cli.json("mailbox", "edit", "ann@corp.test", "--tracking", "None")["tracking"] == "none"
    assert cli.scalar("SELECT tracking FROM mailbox WHERE email = 'ann@corp.test'") == "none"
    assert "tracking                 none" in cli.ok("mailbox", "show", "ann@corp.test").stdout
    assert cli.json("mailbox", "edit", "ann@corp.test", "--tracking", "default")["tracking"] == "default"
    assert cli.scalar("SELECT tracking FROM mailbox WHERE email = 'ann@corp.test'") is None
    before = cli.dump()
    assert cli.fails("mailbox", "edit", "ann@corp.test", "--tracking", "most") == (
        "mbxtui: tracking: 'most' is not one of: all, replies, none, default")
    assert cli.dump() == before
    assert "--tracking all|replies|none|default" in cli.ok("mailbox", "edit", "--help").stdout


def test_mailbox_bulk_edit_tracking(cli: Cli):
    assert cli.json("mailbox", "bulk-edit", "ann@corp.test", "sales@corp.test", "--tracking", "all") == {
        "selected": 2, "changed": 2}
    stored = cli.query("SELECT email, tracking FROM mailbox ORDER BY email")
    assert [tuple(row) for row in stored] == [
        ("ann@corp.test", "all"), ("bob@corp.test", None), ("sales@corp.test", "all")]
    assert cli.fails("mailbox", "bulk-edit", "--view", "active", "--tracking", "some") == (
        "mbxtui: tracking: 'some' is not one of: all, replies, none, default")


def test_profile_add_and_edit_retest_hours_and_processed_folder(cli: Cli):
    created = cli.json("profile", "add", "--name", "corp", "--type", "imap_smtp", "--incoming-host", "imap.corp.test",
                       "--incoming-port", "993", "--incoming-tls", "implicit", "--outgoing-host", "smtp.corp.test",
                       "--outgoing-port", "587", "--outgoing-tls", "starttls", "--incoming-auth", "mailbox",
                       "--outgoing-auth", "mailbox", "--retest-hours", "168", "--processed-folder", "Processed")
    assert (created["retest_hours"], created["processed_folder"]) == (168, "Processed")
    edited = cli.json("profile", "edit", "corp", "--retest-hours", "none", "--processed-folder", "Archive/Done")
    assert (edited["retest_hours"], edited["processed_folder"]) == (None, "Archive/Done")
    shown = cli.ok("profile", "show", "corp").stdout.splitlines()
    assert "retest_hours           -" in shown and "processed_folder       Archive/Done" in shown
    assert cli.json("profile", "edit", "corp", "--processed-folder", "none")["processed_folder"] is None
    before = cli.dump()
    assert cli.fails("profile", "edit", "corp", "--retest-hours", "0") == (
        "mbxtui: retest-hours: 0 hours is out of range 1–8760")
    assert cli.fails("profile", "edit", "corp", "--processed-folder", "INBOX") == (
        "mbxtui: processed-folder: INBOX is where processed mail is read from: choose another folder")
    assert cli.fails("profile", "edit", "pop", "--processed-folder", "Done") == (
        "mbxtui: processed-folder: only an imap_smtp profile moves processed mail to a folder; this profile is "
        "pop3_smtp: leave it empty (processed mail is deleted from the server)")
    assert cli.dump() == before
    assert cli.json("profile", "edit", "pop", "--retest-hours", "12")["retest_hours"] == 12
