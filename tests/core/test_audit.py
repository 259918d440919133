"""R22: every change is in the audit log, with who (and who acted for them) and before/after
values; bad input is refused with a message naming the field, and nothing is half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from mbxtui.core.db import write_transaction
from mbxtui.core.enums import AlertLevel
from mbxtui.core.errors import MbxError
from mbxtui.core.models import AuditEntry, Mailbox, database
from mbxtui.core.permissions import Actor
from mbxtui.core.services import alerts, audit, bulk, imports, mailboxes, operators, profiles, settings, users
from mbxtui.core.services.selection import Selection
from tests.core.conftest import Actors
from tests.core.support import IMAP_PROFILE, audit_actions, last_audit_id, snapshot


def one(*emails: str) -> Selection:
    return Selection.of_emails(emails)


def raise_an_alert() -> None:
    with write_transaction():
        alerts.raise_alert(AlertLevel.ERROR, "auth", "authentication refused",
                           mailbox=Mailbox.get(Mailbox.email == "ann@corp.test"))


def test_every_change_writes_its_audit_entry(actors: Actors, tmp_path: Path):
    admin = actors.admin
    csv = tmp_path / "users.csv"
    csv.write_text("name,email\nCat,cat@corp.test\nDan,dan@corp.test\n")
    steps = [
        (lambda: operators.add(admin, "olga", "viewer"), ["operator.add"]),
        (lambda: operators.set_role(admin, "olga", "system_admin"), ["operator.role"]),
        (lambda: operators.remove(admin, "olga"), ["operator.remove"]),
        (lambda: profiles.create(admin, **IMAP_PROFILE), ["profile.create"]),
        (lambda: profiles.update(admin, "imap", max_connections=20), ["profile.update"]),
        (lambda: settings.update(admin, default_profile="imap"), ["settings.update"]),
        (lambda: users.add_user(admin, "Ann", "ann@corp.test"), ["user.add", "mailbox.create"]),
        (lambda: users.add_user(admin, "Bob", "bob@corp.test"), ["user.add", "mailbox.create"]),
        (lambda: users.add_queue(admin, "Sales", "sales@corp.test", "ann@corp.test"), ["queue.add", "mailbox.create"]),
        (lambda: imports.import_csv(admin, "users", csv), ["user.import"]),
        (lambda: mailboxes.create_forward_mailbox(admin, name="F", email="f@corp.test", profile="imap"),
         ["mailbox.create_forward"]),
        (lambda: mailboxes.edit(admin, "ann@corp.test", name="Ann A"), ["mailbox.edit"]),
        (lambda: bulk.approve(admin, one("ann@corp.test")), ["mailbox.approve"]),
        (lambda: bulk.reject(admin, one("bob@corp.test")), ["mailbox.reject"]),
        (lambda: bulk.bulk_edit(admin, one("ann@corp.test"), act="server_side_sync"), ["mailbox.bulk_edit"]),
        (lambda: bulk.apply_defaults(admin, one("ann@corp.test")), ["mailbox.apply_defaults"]),
        (lambda: bulk.deactivate(admin, one("sales@corp.test")), ["mailbox.deactivate"]),
        (lambda: bulk.activate(admin, one("sales@corp.test")), ["mailbox.activate"]),
        (lambda: users.deactivate_queue(admin, "sales@corp.test"), ["queue.deactivate", "mailbox.deactivate"]),
        (lambda: users.deactivate_user(admin, "bob@corp.test"), ["user.deactivate", "mailbox.deactivate"]),
        (lambda: users.activate_user(admin, "bob@corp.test"), ["user.activate"]),
        (lambda: alerts.dismiss(admin, [1]), ["alert.dismiss"]),
    ]
    for number, (change, expected) in enumerate(steps):
        if number == len(steps) - 1:
            raise_an_alert()
        since = last_audit_id()
        change()
        assert audit_actions(since) == expected, expected
    logins = {row[0] for row in database.execute_sql("SELECT DISTINCT login FROM audit_entry WHERE id > 4")}
    assert logins == {"alice"}


def test_an_entry_records_the_before_and_after_of_each_record(admin: Actor, tmp_path: Path):
    profiles.create(admin, **IMAP_PROFILE)
    users.add_user(admin, "Ann", "ann@corp.test")
    mailboxes.edit(admin, "ann@corp.test", profile="imap", username="ann")
    box = mailboxes.get("ann@corp.test")
    entries = audit.list_entries(admin, record_kind="mailbox", record_id=box.id)
    assert [e["action"] for e in entries] == ["mailbox.edit", "mailbox.create"]
    latest = entries[0]
    assert latest["login"] == "alice" and latest["by_login"] is None
    assert latest["before"] == {"profile": None, "username": ""}
    assert latest["after"] == {"profile": box.profile_id, "username": "ann"}
    assert latest["summary"] == "changed mailbox ann@corp.test: profile, username"


def test_a_change_made_with_as_records_both_logins(actors: Actors):
    as_syd = operators.current_actor(as_login="syd", login="alice")
    since = last_audit_id()
    users.add_user(as_syd, "Ann", "ann@corp.test")
    rows = database.execute_sql("SELECT action, login, by_login FROM audit_entry WHERE id > ? ORDER BY id",
                                (since,)).fetchall()
    assert rows == [("user.add", "syd", "alice"), ("mailbox.create", "syd", "alice")]
    listed = audit.list_entries(actors.viewer, limit=1)[0]
    assert (listed["login"], listed["by_login"]) == ("syd", "alice")


def test_the_audit_log_is_readable_by_every_role_and_paged(actors: Actors):
    for n in range(5):
        users.add_user(actors.admin, f"U{n}", f"u{n}@corp.test")
    everything = audit.list_entries(actors.viewer, limit=1000)
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    assert audit.list_entries(actors.viewer, limit=2, offset=1) == everything[1:3]
    assert {e["record_kind"] for e in audit.list_entries(actors.viewer, record_kind="user")} == {"user"}


BAD_CALLS = [
    ("user email", lambda a: users.add_user(a, "Ann", "ann@@corp.test"), "email"),
    ("queue owner", lambda a: users.add_queue(a, "Q", "q@corp.test", "nobody"), "owner"),
    ("profile port", lambda a: profiles.create(a, **{**IMAP_PROFILE, "outgoing_port": 99999}), "outgoing-port"),
    ("profile host", lambda a: profiles.create(a, **{**IMAP_PROFILE, "incoming_host": "bad host"}), "incoming-host"),
    ("settings profile", lambda a: settings.update(a, default_profile="nope"), "default_profile"),
    ("mailbox method", lambda a: mailboxes.edit(a, "ann@corp.test", act_method="always"), "act"),
    ("mailbox profile", lambda a: mailboxes.edit(a, "ann@corp.test", profile="nope"), "profile"),
    ("mailbox date", lambda a: mailboxes.edit(a, "ann@corp.test", process_email_after="soon"), "process-email-after"),
    ("mailbox flag", lambda a: mailboxes.edit(a, "ann@corp.test", use_own_credentials="perhaps"),
     "use-own-credentials"),
    ("bulk method", lambda a: bulk.bulk_edit(a, Selection.of_view("all"), outgoing="sometimes"), "outgoing"),
    ("bulk profile", lambda a: bulk.bulk_edit(a, Selection.of_view("all"), profile="nope"), "profile"),
    ("operator role", lambda a: operators.add(a, "olga", "boss"), "role"),
    ("forward email", lambda a: mailboxes.create_forward_mailbox(a, name="F", email="f", profile="imap"), "email"),
]


@pytest.mark.parametrize("what, call, field", BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(admin: Actor, what, call, field: str):
    profiles.create(admin, **IMAP_PROFILE)
    users.add_user(admin, "Ann", "ann@corp.test")
    before = snapshot()
    with pytest.raises(MbxError) as refused:
        call(admin)
    assert str(refused.value).startswith(f"{field}: ")
    assert snapshot() == before


def test_a_failing_bulk_operation_changes_nothing(admin: Actor):
    profiles.create(admin, **IMAP_PROFILE)
    users.add_user(admin, "Ann", "ann@corp.test")
    users.add_user(admin, "Bob", "bob@corp.test")
    mailboxes.create_forward_mailbox(admin, name="F", email="f@corp.test", profile="imap")
    before = snapshot()
    with pytest.raises(MbxError):
        bulk.approve(admin, one("ann@corp.test", "ghost@corp.test"))
    with pytest.raises(MbxError):
        bulk.bulk_edit(admin, Selection.of_view("all"), profile="imap", outgoing="server_side_sync")
    with pytest.raises(MbxError):
        bulk.deactivate(admin, one("bob@corp.test", "nobody@corp.test"))
    assert snapshot() == before
    assert AuditEntry.select().count() == len(before["audit_entry"])
