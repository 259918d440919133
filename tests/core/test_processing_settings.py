"""The settings of processing: tracking defaults and a mailbox's own tracking (R27), the stale
threshold (R31), the notification mailbox (R32), a profile's re-test interval (R33) and processed
folder (R28). Each refusal names its field and writes nothing; each change is audited."""

from __future__ import annotations

import json

import pytest

from mbxtui.core.errors import Conflict, InvalidInput, PermissionDenied
from mbxtui.core.models import AuditRecord
from mbxtui.core.permissions import Actor
from mbxtui.core.services import bulk, mailboxes, operators, profiles, settings, users
from mbxtui.core.services.profiles import ProfileRecord
from mbxtui.core.services.selection import Selection
from tests.core.conftest import Actors
from tests.core.support import audit_actions, last_audit_id, mailbox, profile_fields, set_test_results, snapshot


@pytest.fixture
def org(admin: Actor, default_profile: ProfileRecord) -> None:
    """User ann and queue sales on the default IMAP profile (both set up to send), a forward mailbox."""
    users.add_user(admin, "Ann", "ann@corp.test")
    users.add_queue(admin, "Sales", "sales@corp.test", "ann@corp.test")
    mailboxes.create_forward_mailbox(admin, name="Forwarder", email="fwd@corp.test", profile="imap")


def last_record() -> tuple[dict, dict]:
    record = AuditRecord.select().order_by(AuditRecord.id.desc()).get()
    return json.loads(record.before), json.loads(record.after)


# --- organisation settings (R27, R31, R32) -----------------------------------------------------

def test_processing_settings_are_changed_shown_and_audited(admin: Actor, org):
    set_test_results("sales@corp.test", outgoing_enabled=True)
    since = last_audit_id()
    after = settings.update(admin, tracking_users="ALL", tracking_queues="none", stale_hours="48",
                            notification_mailbox=" Sales@corp.test ")
    assert settings.show(admin) == after
    assert (after.tracking_users, after.tracking_queues, after.stale_hours) == ("all", "none", 48)
    assert after.notification_mailbox == "sales@corp.test" and after.notification_warning is None
    assert audit_actions(since) == ["settings.update"]
    before, changed = last_record()
    assert before == {"tracking_users": "replies", "tracking_queues": "all", "stale_hours": 24,
                      "notification_mailbox": None}
    assert changed["notification_mailbox"] == "sales@corp.test" and changed["stale_hours"] == 48


def test_the_notification_mailbox_is_cleared_with_none_or_empty(admin: Actor, org):
    settings.update(admin, notification_mailbox="ann@corp.test")
    assert settings.update(admin, notification_mailbox="NONE").notification_mailbox is None
    settings.update(admin, notification_mailbox="ann@corp.test")
    assert settings.update(admin, notification_mailbox="").notification_mailbox is None
    assert mailbox("ann@corp.test")["active"]  # clearing it touches only the settings


@pytest.mark.parametrize("changes, message", [
    ({"tracking_users": "some"}, "tracking_users: 'some' is not one of: all, replies, none"),
    ({"tracking_queues": "default"}, "tracking_queues: 'default' is not one of: all, replies, none"),
    ({"stale_hours": 0}, "stale_hours: 0 hours is out of range 1–8760"),
    ({"stale_hours": 8761}, "stale_hours: 8761 hours is out of range 1–8760"),
    ({"stale_hours": "1.5"}, "stale_hours: '1.5' is not a whole number"),
    ({"notification_mailbox": "not an address"}, "notification_mailbox: 'not an address' is not a valid email "
                                                 "address"),
    ({"notification_mailbox": "ghost@corp.test"}, "notification_mailbox: no mailbox with email ghost@corp.test: "
                                                  "give an existing mailbox, or none to clear it"),
    ({"notification_mailbox": "fwd@corp.test"}, "notification_mailbox: mailbox fwd@corp.test is a forward mailbox, "
                                                "which only receives, so it cannot send the owners' emails: choose "
                                                "a mailbox that sends (outgoing method server_side_sync)"),
    ({"stale_hours": 12, "tracking_users": "x"}, "tracking_users: 'x' is not one of: all, replies, none"),
])
def test_bad_processing_settings_are_refused_and_nothing_is_written(admin: Actor, org, changes: dict, message: str):
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        settings.update(admin, **changes)
    assert str(refused.value).startswith(message)
    assert snapshot() == before


def test_a_notification_mailbox_that_cannot_send_is_refused(admin: Actor, org):
    mailboxes.edit(admin, "ann@corp.test", outgoing_method="none")
    with pytest.raises(InvalidInput, match="^notification_mailbox: mailbox ann@corp.test has outgoing method none, "
                                           "so it cannot send"):
        settings.update(admin, notification_mailbox="ann@corp.test")
    bulk.deactivate(admin, Selection.of_emails(["sales@corp.test"]))
    with pytest.raises(InvalidInput, match="^notification_mailbox: mailbox sales@corp.test is inactive"):
        settings.update(admin, notification_mailbox="sales@corp.test")
    assert settings.show(admin).notification_mailbox is None


def test_a_notification_mailbox_not_yet_enabled_for_outgoing_is_accepted_with_a_warning(admin: Actor, org):
    saved = settings.update(admin, notification_mailbox="ann@corp.test")
    assert saved.notification_mailbox == "ann@corp.test"
    assert saved.notification_warning == ("mailbox ann@corp.test is not enabled for outgoing yet: owners' emails "
                                          "wait until Test & Enable passes for it")
    assert "notification_warning" not in saved.as_dict()
    set_test_results("ann@corp.test", outgoing_enabled=True)
    assert settings.show(admin).notification_warning is None
    # a mailbox changed after it was chosen: the settings say so when shown
    mailboxes.edit(admin, "ann@corp.test", outgoing_method="none")
    assert settings.show(admin).notification_warning == (
        "mailbox ann@corp.test has outgoing method none, so owners' emails cannot be sent through it: fix it or "
        "choose another notification mailbox")


def test_notify_owners_without_a_notification_mailbox_is_warned_of(admin: Actor):
    assert settings.show(admin).notification_warning is None
    assert "no notification mailbox is set" in settings.update(admin, notify_owners_of_profile_alerts="on") \
        .notification_warning


def test_a_stale_version_of_the_settings_is_refused(admin: Actor):
    settings.update(admin, stale_hours=12, expected_version=1)
    with pytest.raises(Conflict, match="changed by someone else"):
        settings.update(admin, tracking_users="none", expected_version=1)
    assert settings.show(admin).tracking_users == "replies"


def test_a_viewer_cannot_change_processing_settings(actors: Actors, org):
    before = snapshot()
    for changes in ({"tracking_users": "all"}, {"stale_hours": 5}, {"notification_mailbox": "ann@corp.test"}):
        with pytest.raises(PermissionDenied, match="vic is viewer"):
            settings.update(actors.viewer, **changes)
    assert snapshot() == before


# --- a mailbox's own tracking (R27) ------------------------------------------------------------

def test_a_mailbox_tracking_is_set_shown_audited_and_set_back_to_default(admin: Actor, org):
    assert mailboxes.show(admin, "ann@corp.test").tracking == "default"
    since = last_audit_id()
    shown = mailboxes.edit(admin, "ann@corp.test", tracking="All")
    assert shown.tracking == "all" and mailbox("ann@corp.test")["tracking"] == "all"
    assert shown.incoming_status == "not_run" and shown.row_version == 2
    assert audit_actions(since) == ["mailbox.edit"]
    assert last_record() == ({"tracking": None}, {"tracking": "all"})
    assert mailboxes.edit(admin, "ann@corp.test", tracking="DEFAULT").tracking == "default"
    assert mailbox("ann@corp.test")["tracking"] is None
    assert mailboxes.show(admin, "ann@corp.test").as_dict()["tracking"] == "default"


def test_a_tracking_change_leaves_the_tests_and_enabling_alone(admin: Actor, org):
    set_test_results("sales@corp.test", incoming_status="success", incoming_enabled=True)
    mailboxes.edit(admin, "sales@corp.test", tracking="replies")
    row = mailbox("sales@corp.test")
    assert (row["incoming_status"], row["incoming_enabled"]) == ("success", 1)


@pytest.mark.parametrize("email, value, message", [
    ("ann@corp.test", "sometimes", "tracking: 'sometimes' is not one of: all, replies, none, default"),
    ("ann@corp.test", "", "tracking: '' is not one of: all, replies, none, default"),
    ("fwd@corp.test", "all", "tracking: a forward mailbox has no tracking of its own: each user and queue it serves "
                             "follows theirs, so leave it at default"),
])
def test_bad_mailbox_tracking_is_refused_and_nothing_is_written(admin: Actor, org, email: str, value: str,
                                                                message: str):
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        mailboxes.edit(admin, email, tracking=value)
    assert str(refused.value) == message
    assert snapshot() == before


def test_a_viewer_cannot_change_a_mailbox_tracking(actors: Actors, org):
    with pytest.raises(PermissionDenied, match="vic is viewer"):
        mailboxes.edit(actors.viewer, "ann@corp.test", tracking="none")
    assert mailbox("ann@corp.test")["tracking"] is None


def test_bulk_edit_sets_tracking_on_the_selection_in_one_audited_step(admin: Actor, org):
    users.add_user(admin, "Bob", "bob@corp.test")
    set_test_results("ann@corp.test", incoming_status="success", incoming_enabled=True)
    since = last_audit_id()
    result = bulk.bulk_edit(admin, Selection.of_emails(["ann@corp.test", "bob@corp.test"]), tracking="None")
    assert (result.selected, result.changed) == (2, 2)
    assert [mailbox(e)["tracking"] for e in ("ann@corp.test", "bob@corp.test", "sales@corp.test")] == [
        "none", "none", None]
    assert (mailbox("ann@corp.test")["incoming_status"], mailbox("ann@corp.test")["incoming_enabled"]) == ("success", 1)
    assert audit_actions(since) == ["mailbox.bulk_edit"]
    before, after = last_record()
    assert before["tracking"] is None and after == {"tracking": "none"}
    bulk.bulk_edit(admin, Selection.of_emails(["ann@corp.test"]), tracking="default", act="none")
    assert mailbox("ann@corp.test")["tracking"] is None and mailbox("bob@corp.test")["tracking"] == "none"


def test_bulk_edit_refuses_tracking_on_a_forward_mailbox_and_bad_values_whole(admin: Actor, org):
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        bulk.bulk_edit(admin, Selection.of_emails(["ann@corp.test", "fwd@corp.test"]), tracking="all")
    assert str(refused.value) == ("tracking: a forward mailbox has no tracking of its own: leave it at default "
                                  "(1 selected mailbox(es): fwd@corp.test); nothing was changed")
    with pytest.raises(InvalidInput, match="^tracking: 'most' is not one of: all, replies, none, default$"):
        bulk.bulk_edit(admin, Selection.of_emails(["ann@corp.test"]), tracking="most")
    with pytest.raises(PermissionDenied):
        bulk.bulk_edit(operators.current_actor(login="vic"), Selection.of_emails(["ann@corp.test"]), tracking="all")
    assert snapshot() == before
    assert bulk.bulk_edit(admin, Selection.of_emails(["fwd@corp.test"]), tracking="default").changed == 1


# --- a profile's re-test interval (R33) and processed folder (R28) ------------------------------

def test_retest_hours_and_processed_folder_are_created_changed_cleared_and_audited(admin: Actor):
    created = profiles.create(admin, **profile_fields(retest_hours="24", processed_folder=" Archive/Processed "))
    assert (created.retest_hours, created.processed_folder) == (24, "Archive/Processed")
    shown = profiles.show(admin, "imap").as_dict()
    assert (shown["retest_hours"], shown["processed_folder"]) == (24, "Archive/Processed")
    since = last_audit_id()
    changed = profiles.update(admin, "imap", retest_hours=8760, processed_folder="Traité")
    assert (changed.retest_hours, changed.processed_folder, changed.row_version) == (8760, "Traité", 2)
    assert audit_actions(since) == ["profile.update"]
    assert last_record() == ({"processed_folder": "Archive/Processed", "retest_hours": 24},
                             {"processed_folder": "Traité", "retest_hours": 8760})
    cleared = profiles.update(admin, "imap", retest_hours="none", processed_folder="")
    assert (cleared.retest_hours, cleared.processed_folder) == (None, None)
    assert profiles.update(admin, "imap", processed_folder="x").processed_folder == "x"
    assert profiles.update(admin, "imap", processed_folder="None").processed_folder is None


def test_a_new_profile_has_no_retest_interval_and_no_processed_folder(admin: Actor):
    created = profiles.create(admin, **profile_fields())
    assert (created.retest_hours, created.processed_folder) == (None, None)


@pytest.mark.parametrize("changes, message", [
    ({"retest_hours": 0}, "retest-hours: 0 hours is out of range 1–8760"),
    ({"retest_hours": 8761}, "retest-hours: 8761 hours is out of range 1–8760"),
    ({"retest_hours": "daily"}, "retest-hours: 'daily' is not a whole number"),
    ({"processed_folder": "Done\x1b[31m"}, "processed-folder: contains a control character (U+001B)"),
    ({"processed_folder": "x" * 201}, "processed-folder: is 201 characters long; the limit is 200"),
    ({"processed_folder": "Done*"}, "processed-folder: 'Done*' holds * or %, which IMAP reads as wildcards: choose "
                                    "a folder name without them"),
    ({"processed_folder": "inbox"}, "processed-folder: INBOX is where processed mail is read from: choose another "
                                    "folder"),
])
def test_bad_retest_hours_or_processed_folders_are_refused_and_nothing_is_written(admin: Actor, changes: dict,
                                                                                  message: str):
    profiles.create(admin, **profile_fields())
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        profiles.update(admin, "imap", **changes)
    assert str(refused.value) == message
    assert snapshot() == before
    with pytest.raises(InvalidInput) as refused:
        profiles.create(admin, **profile_fields(name="new", **changes))
    assert str(refused.value) == message
    assert snapshot() == before


@pytest.mark.parametrize("profile_type", ["pop3_smtp", "exchange_online", "exchange_server"])
def test_a_processed_folder_is_refused_on_profiles_that_are_not_imap(admin: Actor, profile_type: str):
    message = (f"processed-folder: only an imap_smtp profile moves processed mail to a folder; this profile is "
               f"{profile_type}: leave it empty (processed mail is deleted from the server)")
    with pytest.raises(InvalidInput) as refused:
        profiles.create(admin, **profile_fields(type=profile_type, processed_folder="Done"))
    assert str(refused.value) == message
    profiles.create(admin, **profile_fields(type=profile_type))
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        profiles.update(admin, "imap", processed_folder="Done")
    assert str(refused.value) == message
    assert snapshot() == before
    assert profiles.update(admin, "imap", processed_folder="none", retest_hours=6).retest_hours == 6


def test_an_imap_profile_with_a_processed_folder_cannot_become_pop3(admin: Actor):
    profiles.create(admin, **profile_fields(processed_folder="Done"))
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        profiles.update(admin, "imap", type="pop3_smtp", incoming_port=995)
    assert str(refused.value) == ("type: a pop3_smtp profile cannot move processed mail to folder 'Done': clear the "
                                  "processed folder first (processed folder none)")
    assert snapshot() == before
    assert profiles.update(admin, "imap", type="pop3_smtp", processed_folder="none").type == "pop3_smtp"


def test_a_viewer_cannot_set_retest_hours_or_a_processed_folder(actors: Actors):
    profiles.create(actors.admin, **profile_fields())
    before = snapshot()
    for changes in ({"retest_hours": 4}, {"processed_folder": "Done"}):
        with pytest.raises(PermissionDenied, match="vic is viewer"):
            profiles.update(actors.viewer, "imap", **changes)
    assert snapshot() == before
