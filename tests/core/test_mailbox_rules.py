"""The mailbox rules: R2 (Apply Default Email Settings), R3 (bulk edit), R5 (approval), R6
(Exchange Online approves at once), R7 (a new address starts over), R17 (forward mailboxes), R18
(delete after processing)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from mbxtui.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from mbxtui.core.models import AuditEntry, AuditRecord, EnablementJob
from mbxtui.core.permissions import Actor
from mbxtui.core.services import bulk, imports, mailbox_views, mailboxes, operators, profiles, settings, users
from mbxtui.core.services.profiles import ProfileRecord
from mbxtui.core.services.selection import Selection
from tests.core.conftest import Actors
from tests.core.support import audit_actions, count, last_audit_id, mailbox, profile_fields, set_test_results, snapshot

USERS = ("ann@corp.test", "bob@corp.test", "cat@corp.test")


@pytest.fixture
def org(admin: Actor, default_profile: ProfileRecord) -> None:
    """Three users, a queue and a forward mailbox on the default IMAP profile, and a POP3 profile."""
    for email in USERS:
        users.add_user(admin, email.split("@")[0].title(), email)
    users.add_queue(admin, "Sales", "sales@corp.test", "ann@corp.test")
    mailboxes.create_forward_mailbox(admin, name="Forwarder", email="fwd@corp.test", profile="imap")
    profiles.create(admin, **profile_fields(name="pop", type="pop3_smtp", incoming_port=995))


def emails(*names: str) -> Selection:
    return Selection.of_emails([f"{n}@corp.test" for n in names])


def methods(email: str) -> tuple[str, str, str]:
    box = mailbox(email)
    return box["incoming_method"], box["outgoing_method"], box["act_method"]


def recent(moment: str | datetime) -> bool:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return abs(datetime.now(timezone.utc).replace(tzinfo=None) - moment) < timedelta(minutes=1)


# --- R2 ----------------------------------------------------------------------------------------

def test_changed_defaults_apply_to_new_mailboxes_only(admin: Actor, org):
    before = [mailbox(e) for e in USERS]
    settings.update(admin, default_profile="pop", default_incoming="none", default_act="server_side_sync")
    assert [mailbox(e) for e in USERS] == before
    users.add_user(admin, "Dan", "dan@corp.test")
    assert mailbox("dan@corp.test")["profile_name"] == "pop"
    assert methods("dan@corp.test") == ("none", "server_side_sync", "server_side_sync")


def test_apply_defaults_changes_the_selected_mailboxes_and_schedules_their_test(admin: Actor, org):
    settings.update(admin, default_profile="pop", default_incoming="none", default_act="server_side_sync")
    set_test_results("ann@corp.test", incoming_status="success", outgoing_status="success", overall_status="success",
                     incoming_enabled=1, outgoing_enabled=1)
    untouched = mailbox("cat@corp.test")
    since = last_audit_id()
    result = bulk.apply_defaults(admin, emails("ann", "bob"))
    assert (result.selected, result.changed) == (2, 2) and result.test_batch is not None
    for email in ("ann@corp.test", "bob@corp.test"):
        box = mailbox(email)
        assert box["profile_name"] == "pop"
        assert methods(email) == ("none", "server_side_sync", "server_side_sync")
        assert box["test_scheduled"] == 1
        assert (box["incoming_status"], box["outgoing_status"], box["overall_status"]) == ("not_run",) * 3
        assert (box["incoming_enabled"], box["outgoing_enabled"]) == (0, 0)
    assert mailbox("cat@corp.test") == untouched
    jobs = [(j.mailbox.email, j.state, j.batch_id) for j in EnablementJob.select().order_by(EnablementJob.mailbox)]
    assert jobs == [("ann@corp.test", "queued", result.test_batch), ("bob@corp.test", "queued", result.test_batch)]
    assert audit_actions(since) == ["mailbox.apply_defaults"]
    entry = AuditEntry.select().order_by(AuditEntry.id.desc()).get()
    assert entry.record_count == 2


def test_apply_defaults_without_the_test(admin: Actor, org):
    settings.update(admin, default_profile="pop")
    result = bulk.apply_defaults(admin, emails("ann"), schedule_test=False)
    assert result.test_batch is None
    assert mailbox("ann@corp.test")["profile_name"] == "pop"
    assert mailbox("ann@corp.test")["test_scheduled"] == 0
    assert count("test_job") == 0 and count("test_batch") == 0


def test_apply_defaults_to_a_view(admin: Actor, org):
    settings.update(admin, default_profile="pop")
    result = bulk.apply_defaults(admin, Selection.of_view("all", "corp.test"), schedule_test=False)
    assert result.selected == 5
    assert count("mailbox", "profile_id = (SELECT id FROM profile WHERE name = 'pop')") == 5


def test_apply_defaults_keeps_a_forward_mailboxs_own_methods(admin: Actor, org):
    settings.update(admin, default_profile="pop", default_act="server_side_sync")
    bulk.apply_defaults(admin, emails("fwd"), schedule_test=False)
    assert mailbox("fwd@corp.test")["profile_name"] == "pop"
    assert methods("fwd@corp.test") == ("server_side_sync", "none", "none")


def test_apply_defaults_without_a_default_profile_is_refused_clearly(admin: Actor):
    users.add_user(admin, "Ann", "ann@corp.test")
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        bulk.apply_defaults(admin, emails("ann"))
    assert refused.value.field == "default_profile"
    assert "is not set" in str(refused.value) and "settings set --default-profile" in str(refused.value)
    assert snapshot() == before


def test_apply_defaults_with_an_unknown_mailbox_changes_nothing(admin: Actor, org):
    settings.update(admin, default_profile="pop")
    before = snapshot()
    with pytest.raises(NotFound, match="no mailbox with email ghost@corp.test"):
        bulk.apply_defaults(admin, emails("ann", "ghost"))
    assert snapshot() == before


def test_a_viewer_cannot_apply_defaults(actors: Actors, org):
    with pytest.raises(PermissionDenied, match="vic is viewer"):
        bulk.apply_defaults(actors.viewer, emails("ann"))
    assert bulk.apply_defaults(actors.system, emails("ann")).selected == 1


# --- R3 ----------------------------------------------------------------------------------------

def test_bulk_edit_sets_profile_and_methods_on_the_selection_in_one_audited_step(admin: Actor, org):
    untouched = mailbox("cat@corp.test")
    since = last_audit_id()
    result = bulk.bulk_edit(admin, emails("ann", "bob", "sales"), profile="pop", incoming="forward_mailbox",
                                 act="server_side_sync")
    assert result.as_dict() == {"selected": 3, "changed": 3}
    for email in ("ann@corp.test", "bob@corp.test", "sales@corp.test"):
        assert mailbox(email)["profile_name"] == "pop"
        assert methods(email) == ("forward_mailbox", "server_side_sync", "server_side_sync")
    assert mailbox("cat@corp.test") == untouched
    assert audit_actions(since) == ["mailbox.bulk_edit"]
    records = list(AuditRecord.select().where(AuditRecord.entry == AuditEntry.select().order_by(AuditEntry.id.desc()).get()))
    assert len(records) == 3
    assert json.loads(records[0].before)["incoming_method"] == "server_side_sync"
    assert json.loads(records[0].after) == {"profile": "pop", "incoming_method": "forward_mailbox",
                                            "act_method": "server_side_sync"}


def test_bulk_edit_of_a_method_resets_only_that_directions_test(admin: Actor, org):
    set_test_results("ann@corp.test", incoming_status="success", outgoing_status="success", overall_status="success",
                     incoming_enabled=1, outgoing_enabled=1)
    bulk.bulk_edit(admin, emails("ann"), outgoing="none")
    box = mailbox("ann@corp.test")
    assert (box["incoming_status"], box["incoming_enabled"]) == ("success", 1)
    assert (box["outgoing_status"], box["outgoing_enabled"]) == ("not_run", 0)
    assert box["overall_status"] == "success"  # the only direction in use passed


def test_bulk_edit_giving_a_forward_mailbox_outgoing_is_refused_and_changes_nothing(admin: Actor, org):
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        bulk.bulk_edit(admin, Selection.of_view("all"), profile="pop", outgoing="server_side_sync")
    assert refused.value.field == "outgoing"
    assert "fwd@corp.test" in str(refused.value) and "nothing was changed" in str(refused.value)
    assert snapshot() == before


def test_bulk_edit_serving_a_forward_mailbox_by_a_forward_mailbox_is_refused(admin: Actor, org):
    before = snapshot()
    with pytest.raises(InvalidInput, match="^incoming: a forward mailbox cannot itself be served"):
        bulk.bulk_edit(admin, emails("ann", "fwd"), incoming="forward_mailbox")
    assert snapshot() == before


@pytest.mark.parametrize("changes, message", [
    ({"profile": "ghost"}, "profile: no profile named 'ghost'"),
    ({"incoming": "imap"}, "incoming: 'imap' is not one of: none, server_side_sync, forward_mailbox"),
    ({"outgoing": "forward_mailbox"}, "outgoing: 'forward_mailbox' is not one of: none, server_side_sync"),
    ({"act": "yes"}, "act: 'yes' is not one of: none, server_side_sync"),
    ({}, "bulk edit: nothing to change: give a profile, a method or a tracking"),
])
def test_bad_bulk_edits_are_refused_naming_the_field(admin: Actor, org, changes: dict, message: str):
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        bulk.bulk_edit(admin, emails("ann", "bob"), **changes)
    assert str(refused.value) == message
    assert snapshot() == before


def test_bulk_edit_to_an_inactive_profile_is_refused(admin: Actor, org):
    profiles.update(admin, "pop", active="off")
    with pytest.raises(InvalidInput, match="^profile: profile 'pop' is inactive"):
        bulk.bulk_edit(admin, emails("ann"), profile="pop")


def test_bulk_edit_with_one_unknown_address_changes_nothing(admin: Actor, org):
    before = snapshot()
    with pytest.raises(NotFound, match="no mailbox with email ghost@corp.test"):
        bulk.bulk_edit(admin, emails("ann", "ghost", "bob"), profile="pop")
    assert snapshot() == before


def test_bulk_edit_of_an_empty_view_is_refused(admin: Actor, org):
    with pytest.raises(NotFound, match="no mailboxes selected"):
        bulk.bulk_edit(admin, Selection.of_view("failed"), profile="pop")


# --- R5 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["admin", "service"])
def test_global_and_service_admins_approve_recording_who_and_when(actors: Actors, org, role: str):
    approver = getattr(actors, role)
    result = bulk.approve(approver, emails("ann", "sales"))
    assert result.as_dict() == {"selected": 2, "changed": 2}
    for email in ("ann@corp.test", "sales@corp.test"):
        box = mailbox(email)
        assert (box["approval"], box["approved_by"]) == ("approved", approver.login)
        assert recent(box["approved_on"])
    assert mailbox("bob@corp.test")["approval"] == "pending"


@pytest.mark.parametrize("role, login", [("system", "syd"), ("viewer", "vic")])
def test_others_may_not_approve_or_reject_and_are_told_which_role_can(actors: Actors, org, role: str, login: str):
    before = snapshot()
    for action in (bulk.approve, bulk.reject):
        with pytest.raises(PermissionDenied) as refused:
            action(getattr(actors, role), emails("ann"))
        assert f"{login} is" in str(refused.value)
        assert "needs the role global_admin or service_admin" in str(refused.value)
    assert snapshot() == before


def test_reject_records_who_and_when_and_disables(actors: Actors, org):
    set_test_results("ann@corp.test", incoming_enabled=1, outgoing_enabled=1)
    bulk.reject(actors.service, emails("ann"))
    box = mailbox("ann@corp.test")
    assert (box["approval"], box["approved_by"]) == ("rejected", "sam")
    assert recent(box["approved_on"])
    assert (box["incoming_enabled"], box["outgoing_enabled"], box["act_enabled"]) == (0, 0, 0)


def test_approving_a_view_approves_every_pending_mailbox_once(admin: Actor, org):
    bulk.approve(admin, emails("ann"))
    assert count("mailbox", "approval = 'pending'") == 4
    result = bulk.approve(admin, Selection.of_view("pending"))
    assert result.as_dict() == {"selected": 4, "changed": 4}
    assert count("mailbox", "approval = 'approved'") == 5
    assert bulk.approve(admin, emails("ann")).as_dict() == {"selected": 1, "changed": 0}


def test_approving_a_mostly_approved_view_counts_the_view_and_audits_only_the_changes(admin: Actor, org):
    bulk.approve(admin, emails("ann", "bob"))
    in_view = count("mailbox", "active = 1")
    result = bulk.approve(admin, Selection.of_view("active"))
    assert result.as_dict() == {"selected": in_view, "changed": in_view - 2}
    entry = AuditEntry.select().order_by(AuditEntry.id.desc()).get()
    audited = {r.record_id for r in AuditRecord.select().where(AuditRecord.entry == entry.id)}
    assert entry.record_count == len(audited) == in_view - 2
    assert mailbox("ann@corp.test")["id"] not in audited
    assert bulk.approve(admin, Selection.of_view("active")).as_dict() == {"selected": in_view, "changed": 0}
    with pytest.raises(NotFound, match="no mailboxes selected"):
        bulk.approve(admin, Selection.of_view("pending"))


def test_approval_made_as_another_operator_records_both_logins(actors: Actors, org):
    as_sam = operators.current_actor(as_login="sam", login="alice")
    bulk.approve(as_sam, emails("bob"))
    assert mailbox("bob@corp.test")["approved_by"] == "sam"
    entry = AuditEntry.select().order_by(AuditEntry.id.desc()).get()
    assert (entry.action, entry.login, entry.by_login) == ("mailbox.approve", "sam", "alice")


# --- R6 ----------------------------------------------------------------------------------------

def test_new_mailboxes_on_an_exchange_online_profile_are_approved_at_once(admin: Actor, exchange_online_profile, tmp_path):
    settings.update(admin, default_profile="exo")
    users.add_user(admin, "Ann", "ann@corp.test")
    users.add_queue(admin, "Sales", "sales@corp.test", "ann@corp.test")
    mailboxes.create_forward_mailbox(admin, name="Forwarder", email="fwd@corp.test", profile="exo")
    csv = tmp_path / "users.csv"
    csv.write_text("name,email\nBob,bob@corp.test\n")
    imports.import_csv(admin, "users", csv)
    for email in ("ann@corp.test", "sales@corp.test", "fwd@corp.test", "bob@corp.test"):
        box = mailbox(email)
        assert (box["approval"], box["approved_by"]) == ("approved", "exchange_online"), email
        assert recent(box["approved_on"]), email


def test_other_profile_types_leave_new_mailboxes_pending(admin: Actor, org):
    assert {mailbox(e)["approval"] for e in (*USERS, "sales@corp.test", "fwd@corp.test")} == {"pending"}


# --- R7 ----------------------------------------------------------------------------------------

def test_a_new_address_resets_approval_and_tests_and_disables(admin: Actor, org):
    bulk.approve(admin, emails("ann"))
    set_test_results("ann@corp.test", incoming_status="success", outgoing_status="failure", act_status="success",
                     overall_status="failure", incoming_enabled=1, act_enabled=1, last_error_code="auth",
                     last_error_text="refused", transient_failures=2)
    shown = mailboxes.edit(admin, "ann@corp.test", email="Ann.Archer@corp.test")
    assert shown.email == "ann.archer@corp.test"
    box = mailbox("ann.archer@corp.test")
    assert (box["approval"], box["approved_by"], box["approved_on"]) == ("pending", None, None)
    assert (box["incoming_status"], box["outgoing_status"], box["act_status"], box["overall_status"]) == ("not_run",) * 4
    assert (box["incoming_enabled"], box["outgoing_enabled"], box["act_enabled"]) == (0, 0, 0)
    assert (box["last_error_code"], box["transient_failures"]) == (None, 0)
    entry = AuditEntry.select().order_by(AuditEntry.id.desc()).get()
    record = entry.records.get()
    assert (json.loads(record.before), json.loads(record.after)) == (
        {"email": "ann@corp.test"}, {"email": "ann.archer@corp.test"})


def test_a_new_address_is_not_pending_where_approval_is_not_required(admin: Actor, org):
    settings.update(admin, require_approval_users="off")
    bulk.approve(admin, emails("ann", "sales"))
    mailboxes.edit(admin, "ann@corp.test", email="ann2@corp.test")
    mailboxes.edit(admin, "sales@corp.test", email="sales2@corp.test")
    assert mailbox("ann2@corp.test")["approval"] == "empty"
    assert mailbox("sales2@corp.test")["approval"] == "pending"  # queues still need approval


def test_a_new_address_on_exchange_online_is_approved_again(admin: Actor, org, exchange_online_profile):
    mailboxes.edit(admin, "ann@corp.test", profile="exo")
    mailboxes.edit(admin, "ann@corp.test", email="ann2@corp.test")
    assert (mailbox("ann2@corp.test")["approval"], mailbox("ann2@corp.test")["approved_by"]) == (
        "approved", "exchange_online")


def test_other_edits_leave_approval_alone(admin: Actor, org):
    bulk.approve(admin, emails("ann"))
    set_test_results("ann@corp.test", incoming_status="success", incoming_enabled=1)
    mailboxes.edit(admin, "ann@corp.test", name="Ann Archer", username="ann.archer")
    box = mailbox("ann@corp.test")
    assert (box["name"], box["username"], box["approval"]) == ("Ann Archer", "ann.archer", "approved")
    assert (box["incoming_status"], box["incoming_enabled"]) == ("success", 1)


def test_an_address_in_use_is_refused_and_nothing_is_written(admin: Actor, org):
    before = snapshot()
    with pytest.raises(Conflict, match="email: bob@corp.test is already the address of mailbox 'Bob'"):
        mailboxes.edit(admin, "ann@corp.test", email="BOB@corp.test")
    with pytest.raises(InvalidInput, match="^email: 'bob@' is not a valid email address"):
        mailboxes.edit(admin, "ann@corp.test", email="bob@")
    with pytest.raises(InvalidInput, match="^profile: no profile named 'ghost'"):
        mailboxes.edit(admin, "ann@corp.test", profile="ghost")
    with pytest.raises(InvalidInput, match="^colour: is not a mailbox field"):
        mailboxes.edit(admin, "ann@corp.test", colour="blue")
    with pytest.raises(NotFound, match="no mailbox with email ghost@corp.test"):
        mailboxes.edit(admin, "ghost@corp.test", name="Ghost")
    assert snapshot() == before


def test_an_edit_to_the_values_already_there_writes_nothing(admin: Actor, org):
    mailboxes.edit(admin, "sales@corp.test", process_email_after="2024-01-01", delete_after_processing="on")
    before = snapshot()
    shown = mailboxes.edit(admin, "sales@corp.test", process_email_after="2024-01-01 00:00", email="SALES@corp.test",
                           delete_after_processing=True, profile="imap", incoming_method="server_side_sync")
    assert shown.process_email_after == "2024-01-01 00:00:00"
    assert snapshot() == before


def test_an_edit_with_a_stale_version_is_refused(admin: Actor, org):
    version = mailboxes.show(admin, "ann@corp.test").row_version
    mailboxes.edit(admin, "ann@corp.test", name="Ann A", expected_version=version)
    with pytest.raises(Conflict, match="changed by someone else"):
        mailboxes.edit(admin, "ann@corp.test", name="Ann B", expected_version=version)


# --- R17 ---------------------------------------------------------------------------------------

def test_a_forward_mailbox_has_no_user_or_queue_and_only_receives(admin: Actor, org):
    shown = mailboxes.create_forward_mailbox(admin, name="Inbound", email="inbound@corp.test", profile="pop",
                                             delete_after_processing=True, owner="bob@corp.test")
    assert (shown.regarding, shown.is_forward, shown.profile, shown.owner) == (
        "forward", True, "pop", "bob@corp.test")
    box = mailbox("inbound@corp.test")
    assert (box["user_id"], box["queue_id"]) == (None, None)
    assert methods("inbound@corp.test") == ("server_side_sync", "none", "none")
    assert box["delete_after_processing"] == 1
    assert box["approval"] == "pending"  # approved like any other mailbox
    assert bulk.approve(admin, Selection.of_emails(["inbound@corp.test"])).changed == 1
    forward_view = mailbox_views.list_mailboxes(admin, view="forward")
    assert [r["email"] for r in forward_view.rows] == ["fwd@corp.test", "inbound@corp.test"]


def test_a_forward_mailbox_cannot_be_given_an_outgoing_method(admin: Actor, org):
    before = snapshot()
    with pytest.raises(InvalidInput, match="^outgoing: a forward mailbox only receives"):
        mailboxes.edit(admin, "fwd@corp.test", outgoing_method="server_side_sync")
    with pytest.raises(InvalidInput, match="^incoming: a forward mailbox cannot itself be served"):
        mailboxes.edit(admin, "fwd@corp.test", incoming_method="forward_mailbox")
    assert snapshot() == before


def test_users_can_be_served_by_the_forward_mailbox(admin: Actor, org):
    mailboxes.edit(admin, "ann@corp.test", incoming_method="forward_mailbox")
    assert methods("ann@corp.test")[0] == "forward_mailbox"


@pytest.mark.parametrize("fields, error, message", [
    ({"profile": "ghost"}, InvalidInput, "profile: no profile named 'ghost'"),
    ({"email": "ann@corp.test"}, Conflict, "email: ann@corp.test is already the address of mailbox 'Ann'"),
    ({"email": "no-at-sign"}, InvalidInput, "email: 'no-at-sign' is not a valid email address"),
    ({"name": " "}, InvalidInput, "name: is required"),
    ({"owner": "ghost@corp.test"}, InvalidInput, "owner: no user with email ghost@corp.test"),
])
def test_bad_forward_mailboxes_are_refused(admin: Actor, org, fields: dict, error, message: str):
    before = snapshot()
    with pytest.raises(error) as refused:
        mailboxes.create_forward_mailbox(admin, **{"name": "In", "email": "in@corp.test", "profile": "imap", **fields})
    assert str(refused.value).startswith(message)
    assert snapshot() == before


# --- R18 ---------------------------------------------------------------------------------------

def test_delete_after_processing_is_refused_on_user_mailboxes(admin: Actor, org):
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        mailboxes.edit(admin, "ann@corp.test", delete_after_processing="on")
    assert str(refused.value) == "delete-after-processing: is allowed only on queue and forward mailboxes (R18)"
    assert snapshot() == before


@pytest.mark.parametrize("email", ["sales@corp.test", "fwd@corp.test"])
def test_delete_after_processing_is_allowed_on_queue_and_forward_mailboxes(admin: Actor, org, email: str):
    assert mailboxes.edit(admin, email, delete_after_processing="on").delete_after_processing is True
    assert mailboxes.edit(admin, email, delete_after_processing="off").delete_after_processing is False
