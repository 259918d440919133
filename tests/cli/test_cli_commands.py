"""The commands a script uses, each checked against what it wrote to the database."""

from __future__ import annotations

from pathlib import Path

import trustme

from tests.cli.conftest import OS_LOGIN, Cli


def execute(cli: Cli, sql: str, params: tuple = ()) -> None:
    cli.execute(sql, params)


def test_user_and_queue_add_make_exactly_one_mailbox_each_with_the_defaults(cli: Cli):
    assert cli.json("user", "add", "--name", "Cat", "--email", "Cat@Corp.test") == {
        "name": "Cat", "email": "cat@corp.test", "active": True, "mailbox": "cat@corp.test"}
    queue = cli.json("queue", "add", "--name", "Help", "--email", "help@corp.test", "--owner", "cat@corp.test")
    assert queue["owner"] == "cat@corp.test" and queue["mailbox"] == "help@corp.test"
    rows = cli.query(
        "SELECT m.email, m.regarding, p.name AS profile, m.incoming_method, m.outgoing_method, m.act_method, "
        "m.approval FROM mailbox m JOIN profile p ON p.id = m.profile_id "
        "WHERE m.email IN ('cat@corp.test', 'help@corp.test') ORDER BY m.email")
    assert [tuple(r) for r in rows] == [
        ("cat@corp.test", "user", "imap", "server_side_sync", "server_side_sync", "none", "pending"),
        ("help@corp.test", "queue", "imap", "server_side_sync", "server_side_sync", "none", "pending")]
    before = cli.dump()
    assert cli.fails("queue", "add", "--name", "Cat's", "--email", "cat@corp.test", "--owner", "cat@corp.test") == (
        "mbxtui: email: cat@corp.test is already the address of mailbox 'Cat'")
    assert cli.dump() == before


def test_profile_add_and_edit_validate_every_field(cli: Cli, tmp_path: Path):
    base = ["profile", "add", "--name", "corp", "--type", "imap_smtp", "--incoming-host", "imap.corp.test",
            "--incoming-port", "993", "--incoming-tls", "implicit", "--outgoing-host", "smtp.corp.test",
            "--outgoing-port", "587", "--outgoing-tls", "starttls", "--incoming-auth", "mailbox",
            "--outgoing-auth", "mailbox"]

    def with_option(option: str, value: str) -> list[str]:
        args = list(base)
        if option in args:
            args[args.index(option) + 1] = value
        else:
            args += [option, value]
        return args

    before = cli.dump()
    for option, value, message in (
        ("--incoming-port", "99999", "incoming-port: 99999 is out of range 1–65535"),
        ("--outgoing-tls", "ssl", "outgoing-tls: 'ssl' is not one of: implicit, starttls, none"),
        ("--incoming-auth", "profile", "username: is required when incoming or outgoing authentication is profile"),
        ("--max-connections", "301", "max-connections: 301 is out of range 1–300"),
        ("--ca-file", str(tmp_path / "missing.pem"), f"ca-file: {tmp_path / 'missing.pem'} does not exist"),
    ):
        assert cli.fails(*with_option(option, value)).startswith(f"mbxtui: {message}")
    assert cli.dump() == before
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    created = cli.json(*base, "--incoming-auth", "profile", "--username", "sync", "--ca-file", str(ca_file),
                       "--max-connections", "300", "--timeout", "600", "--owner", "ann@corp.test")
    assert (created["incoming"]["auth"], created["username"], created["ca_file"]) == ("profile", "sync", str(ca_file))
    assert (created["max_connections"], created["timeout_seconds"], created["owner"]) == (300, 600, "ann@corp.test")
    edited = cli.json("profile", "edit", "corp", "--name", "corp-mail", "--incoming-port", "143",
                      "--incoming-tls", "starttls")
    assert (edited["name"], edited["incoming"]["port"], edited["incoming"]["tls"], edited["row_version"]) == (
        "corp-mail", 143, "starttls", 2)
    assert cli.fails("profile", "edit", "corp-mail", "--timeout", "0") == (
        "mbxtui: timeout: 0 seconds is out of range 1–600")


def test_settings_set_and_show(cli: Cli):
    changed = cli.json("settings", "set", "--default-profile", "pop", "--incoming", "none", "--act", "server_side_sync",
                       "--require-approval-users", "off", "--retry-attempts", "3")
    assert (changed["default_profile"], changed["default_incoming"], changed["default_act"]) == (
        "pop", "none", "server_side_sync")
    assert changed["require_approval_users"] is False and changed["retry_attempts"] == 3
    shown = cli.ok("settings", "show").stdout
    assert "default_profile                  pop" in shown
    assert "require_approval_users           no" in shown
    assert cli.fails("settings", "set", "--retry-interval", "0") == (
        "mbxtui: retry_interval_minutes: 0 minutes is out of range 1–1440")


def test_mailbox_list_filters_sorts_and_pages(cli: Cli):
    page = cli.json("mailbox", "list", "--view", "pending", "--filter", "corp.test", "--sort", "email", "--desc",
                    "--limit", "2", "--offset", "1")
    assert (page["total"], page["offset"]) == (3, 1)
    assert [r["email"] for r in page["rows"]] == ["bob@corp.test", "ann@corp.test"]
    text = cli.ok("mailbox", "list", "--view", "all", "--filter", "an", "--sort", "name").stdout.splitlines()
    assert text[0].split()[:3] == ["NAME", "EMAIL", "REGARDING"]
    assert [line.split()[1] for line in text[1:-1]] == ["ann@corp.test"]
    assert text[-1] == "1–1 of 1 mailbox(es) in view all"
    assert cli.fails("mailbox", "list", "--sort", "colour").startswith("mbxtui: sort: 'colour' is not a column")


def test_a_new_address_starts_over_and_delete_after_processing_is_kept_off_user_mailboxes(cli: Cli):
    cli.ok("mailbox", "approve", "ann@corp.test")
    execute(cli, "UPDATE mailbox SET incoming_status = 'success', incoming_enabled = 1, overall_status = 'success' "
                 "WHERE email = 'ann@corp.test'")
    shown = cli.json("mailbox", "edit", "ann@corp.test", "--email", "ann.archer@corp.test")
    assert (shown["email"], shown["approval"], shown["approved_by"]) == ("ann.archer@corp.test", "pending", None)
    assert (shown["incoming_status"], shown["overall_status"], shown["incoming_enabled"]) == (
        "not_run", "not_run", False)
    before = cli.dump()
    assert cli.fails("mailbox", "edit", "bob@corp.test", "--delete-after-processing", "on") == (
        "mbxtui: delete-after-processing: is allowed only on queue and forward mailboxes (R18)")
    assert cli.dump() == before
    assert cli.json("mailbox", "edit", "sales@corp.test", "--delete-after-processing", "on")[
        "delete_after_processing"] is True


def test_forward_mailboxes_and_bulk_edit(cli: Cli):
    forward = cli.json("forward-mailbox", "add", "--name", "Inbound", "--email", "inbound@corp.test", "--profile", "pop",
                       "--delete-after-processing")
    assert (forward["regarding"], forward["is_forward"], forward["outgoing_method"]) == ("forward", True, "none")
    assert forward["delete_after_processing"] is True and forward["approval"] == "pending"
    before = cli.dump()
    stderr = cli.fails("mailbox", "bulk-edit", "--view", "all", "--profile", "pop", "--outgoing", "server_side_sync")
    assert stderr.startswith("mbxtui: outgoing: a forward mailbox only receives")
    assert "inbound@corp.test" in stderr and stderr.endswith("nothing was changed")
    assert cli.dump() == before
    assert cli.json("mailbox", "bulk-edit", "ann@corp.test", "bob@corp.test", "--profile", "pop", "--act",
                    "server_side_sync") == {"selected": 2, "changed": 2}
    rows = cli.query("SELECT m.email, p.name, m.act_method FROM mailbox m JOIN profile p ON p.id = m.profile_id "
                     "ORDER BY m.email")
    assert [tuple(r) for r in rows] == [
        ("ann@corp.test", "pop", "server_side_sync"), ("bob@corp.test", "pop", "server_side_sync"),
        ("inbound@corp.test", "pop", "none"), ("sales@corp.test", "imap", "none")]


def test_apply_defaults_schedules_the_test_unless_told_not_to(cli: Cli):
    cli.ok("settings", "set", "--default-profile", "pop")
    applied = cli.json("mailbox", "apply-defaults", "ann@corp.test", "sales@corp.test")
    assert (applied["selected"], applied["changed"]) == (2, 2) and applied["test_batch"] is not None
    assert cli.json("mailbox", "apply-defaults", "bob@corp.test", "--no-test")["test_batch"] is None
    rows = cli.query("SELECT m.email, p.name, m.test_scheduled, (SELECT min(j.state) FROM test_job j "
                     "WHERE j.mailbox_id = m.id) AS jobs FROM mailbox m JOIN profile p ON p.id = m.profile_id "
                     "ORDER BY m.email")
    assert [tuple(r) for r in rows] == [("ann@corp.test", "pop", 1, "queued"), ("bob@corp.test", "pop", 0, None),
                                        ("sales@corp.test", "pop", 1, "queued")]


def test_apply_defaults_without_a_default_profile_is_refused(cli: Cli):
    execute(cli, "UPDATE org_settings SET default_profile_id = NULL")
    before = cli.dump()
    assert cli.fails("mailbox", "apply-defaults", "--view", "all") == (
        "mbxtui: default_profile: is not set: choose one with `mbxtui settings set --default-profile NAME`")
    assert cli.dump() == before


def test_deactivating_a_user_or_queue_deactivates_its_mailbox(cli: Cli):
    assert cli.json("user", "deactivate", "ann@corp.test")["active"] is False
    assert cli.json("queue", "deactivate", "sales@corp.test")["active"] is False
    rows = cli.query("SELECT email, active FROM mailbox ORDER BY email")
    assert [tuple(r) for r in rows] == [("ann@corp.test", 0), ("bob@corp.test", 1), ("sales@corp.test", 0)]
    assert cli.fails("mailbox", "activate", "ann@corp.test").startswith(
        "mbxtui: activate: the user or queue of a mailbox is inactive: activate it first")
    assert cli.json("queue", "activate", "sales@corp.test")["active"] is True
    assert cli.json("mailbox", "activate", "sales@corp.test") == {"selected": 1, "changed": 1}


def test_reject_records_who(cli: Cli):
    assert cli.json("mailbox", "reject", "bob@corp.test") == {"selected": 1, "changed": 1}
    row = cli.query("SELECT approval, approved_by, approved_on FROM mailbox WHERE email = 'bob@corp.test'")[0]
    assert (row["approval"], row["approved_by"]) == ("rejected", OS_LOGIN) and row["approved_on"]


def test_import_is_all_or_nothing_and_reports_every_bad_line(cli: Cli, tmp_path: Path):
    good = tmp_path / "good.csv"
    good.write_text("name,email\nCat,cat@corp.test\nDan,dan@corp.test\n")
    assert cli.json("import", "users", str(good)) == {"imported": 2, "kind": "users"}
    assert cli.scalar("SELECT count(*) FROM mailbox WHERE email IN ('cat@corp.test', 'dan@corp.test')") == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("name,email\nEve,eve@corp.test\nFay,fay@\nCat,cat@corp.test\n")
    before = cli.dump()
    stderr = cli.fails("import", "users", str(bad))
    assert stderr.startswith("mbxtui: import of bad.csv refused, nothing imported: 2 bad row(s): line 3: email: ")
    assert "; line 4: email: a user with email cat@corp.test already exists" in stderr
    latin = tmp_path / "latin.csv"
    latin.write_bytes("name,email,owner\nCaf\xe9,cafe@corp.test,ann@corp.test\n".encode("latin-1"))
    assert cli.fails("import", "queues", str(latin)) == (
        "mbxtui: import of latin.csv refused, nothing imported: 1 bad row(s): "
        "line 2: is not UTF-8 text (save the file as UTF-8 CSV)")
    assert cli.dump() == before


def test_alerts_and_audit_are_listed(cli: Cli):
    for level, code in (("error", "auth"), ("warning", "busy")):
        execute(cli, "INSERT INTO alert (level, code, text, mailbox_id, created_on, dismissed) "
                     "SELECT ?, ?, 'text of ' || ?, id, '2024-01-01 00:00:00', 0 FROM mailbox "
                     "WHERE email = 'ann@corp.test'", (level, code, code))
    alerts = cli.json("alerts", "list", "--level", "error")
    assert [(a["code"], a["mailbox"]) for a in alerts] == [("auth", "ann@corp.test")]
    cli.ok("mailbox", "edit", "ann@corp.test", "--name", "Ann Archer")
    entries = cli.json("audit", "list", "--mailbox", "ann@corp.test")
    assert [e["action"] for e in entries] == ["mailbox.edit", "mailbox.create"]
    assert (entries[0]["before"], entries[0]["after"]) == ({"name": "Ann"}, {"name": "Ann Archer"})
