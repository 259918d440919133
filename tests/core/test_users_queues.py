"""R1 (a user or queue is created with exactly one mailbox carrying the defaults) and R19
(deactivating a user or queue deactivates its mailbox)."""

from __future__ import annotations

import pytest

from mbxtui.core.errors import Conflict, InvalidInput, NotFound
from mbxtui.core.models import EnablementJob
from mbxtui.core.permissions import Actor
from mbxtui.core.services import bulk, settings, users
from mbxtui.core.services.profiles import ProfileRecord
from mbxtui.core.services.selection import Selection
from tests.core.support import audit_actions, count, last_audit_id, mailbox, set_test_results, snapshot


def test_a_new_user_gets_one_mailbox_with_the_default_profile_and_methods(admin: Actor, default_profile: ProfileRecord):
    settings.update(admin, default_incoming="none", default_outgoing="server_side_sync", default_act="server_side_sync")
    since = last_audit_id()
    created = users.add_user(admin, "Ann Archer", "Ann@Corp.test")
    assert created.as_dict() == {"name": "Ann Archer", "email": "ann@corp.test", "active": True, "mailbox": "ann@corp.test"}
    assert count("mailbox") == 1
    box = mailbox("ann@corp.test")
    assert box["profile_name"] == "imap"
    assert (box["incoming_method"], box["outgoing_method"], box["act_method"]) == ("none", "server_side_sync",
                                                                                  "server_side_sync")
    assert box["regarding"] == "user" and box["is_forward"] == 0 and box["queue_id"] is None
    assert box["user_id"] == box["owner_id"] is not None
    assert box["approval"] == "pending"
    assert (box["incoming_status"], box["outgoing_status"], box["act_status"]) == ("not_run",) * 3
    assert audit_actions(since) == ["user.add", "mailbox.create"]


def test_a_new_queue_gets_one_mailbox_owned_by_the_queue_owner(admin: Actor, default_profile: ProfileRecord):
    users.add_user(admin, "Ann", "ann@corp.test")
    created = users.add_queue(admin, "Sales", "sales@corp.test", "ANN@corp.test")
    assert created.owner == "ann@corp.test" and created.mailbox == "sales@corp.test"
    box = mailbox("sales@corp.test")
    ann = mailbox("ann@corp.test")
    assert box["regarding"] == "queue" and box["queue_id"] is not None and box["user_id"] is None
    assert box["owner_id"] == ann["user_id"]
    assert box["profile_name"] == "imap"
    assert (box["incoming_method"], box["outgoing_method"], box["act_method"]) == (
        "server_side_sync", "server_side_sync", "none")
    assert count("mailbox") == 2


def test_without_a_default_profile_the_mailbox_has_none_but_still_the_default_methods(admin: Actor):
    users.add_user(admin, "Ann", "ann@corp.test")
    box = mailbox("ann@corp.test")
    assert box["profile_id"] is None
    assert (box["incoming_method"], box["outgoing_method"], box["act_method"]) == (
        "server_side_sync", "server_side_sync", "none")


def test_a_duplicate_user_email_is_refused_and_nothing_is_written(admin: Actor):
    users.add_user(admin, "Ann", "ann@corp.test")
    before = snapshot()
    with pytest.raises(Conflict, match="email: a user with email ann@corp.test already exists"):
        users.add_user(admin, "Another Ann", " ANN@corp.TEST ")
    assert snapshot() == before


def test_a_queue_cannot_take_the_address_of_an_existing_mailbox(admin: Actor):
    users.add_user(admin, "Ann", "ann@corp.test")
    before = snapshot()
    with pytest.raises(Conflict, match="ann@corp.test is already the address of mailbox 'Ann'"):
        users.add_queue(admin, "Ann's queue", "ann@corp.test", "ann@corp.test")
    assert snapshot() == before  # the queue row made before the clash was rolled back


def test_a_user_cannot_take_the_address_of_a_queue(admin: Actor):
    users.add_user(admin, "Ann", "ann@corp.test")
    users.add_queue(admin, "Sales", "sales@corp.test", "ann@corp.test")
    before = snapshot()
    with pytest.raises(Conflict, match="sales@corp.test is already the address of mailbox 'Sales'"):
        users.add_user(admin, "Sales person", "sales@corp.test")
    assert snapshot() == before


def test_a_duplicate_queue_email_is_refused(admin: Actor):
    users.add_user(admin, "Ann", "ann@corp.test")
    users.add_queue(admin, "Sales", "sales@corp.test", "ann@corp.test")
    with pytest.raises(Conflict, match="email: a queue with email sales@corp.test already exists"):
        users.add_queue(admin, "Sales 2", "sales@corp.test", "ann@corp.test")
    assert count("queue") == 1


@pytest.mark.parametrize("name, email, field", [
    ("", "ann@corp.test", "name"),
    ("Ann", "not-an-address", "email"),
    ("Ann", "ann@", "email"),
    ("Ann\x1b[31m", "ann@corp.test", "name"),
    ("A" * 161, "ann@corp.test", "name"),
])
def test_bad_user_input_is_refused_naming_the_field(admin: Actor, name: str, email: str, field: str):
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        users.add_user(admin, name, email)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")
    assert snapshot() == before


def test_a_queue_needs_an_existing_owner(admin: Actor):
    before = snapshot()
    with pytest.raises(NotFound, match="no user with email ghost@corp.test"):
        users.add_queue(admin, "Sales", "sales@corp.test", "ghost@corp.test")
    with pytest.raises(InvalidInput, match="^owner: "):
        users.add_queue(admin, "Sales", "sales@corp.test", "ghost")
    assert snapshot() == before


def test_the_user_list_sorts_by_name_ignoring_case_and_filters_literally(admin: Actor, actors):
    for name, email in (("bob", "bob@corp.test"), ("Carl", "carl_x@corp.test"), ("ann", "ann@corp.test"),
                        ("Dora 100%", "dora@corp.test")):
        users.add_user(admin, name, email)
    assert [u.name for u in users.list_users(actors.viewer)] == ["ann", "bob", "Carl", "Dora 100%"]
    assert [u.name for u in users.list_users(actors.viewer, filter_text="_")] == ["Carl"]
    assert [u.name for u in users.list_users(actors.viewer, filter_text="%")] == ["Dora 100%"]
    assert [u.name for u in users.list_users(actors.viewer, filter_text="CAR")] == ["Carl"]


def test_users_and_queues_are_listed_with_their_mailboxes(admin: Actor, actors):
    users.add_user(admin, "Bob", "bob@corp.test")
    users.add_user(admin, "Ann", "ann@corp.test")
    users.add_queue(admin, "Sales", "sales@corp.test", "ann@corp.test")
    assert [(u.name, u.mailbox) for u in users.list_users(actors.viewer)] == [
        ("Ann", "ann@corp.test"), ("Bob", "bob@corp.test")]
    assert [u.email for u in users.list_users(actors.viewer, filter_text="bo")] == ["bob@corp.test"]
    assert [u.email for u in users.list_users(actors.viewer, limit=1, offset=1)] == ["bob@corp.test"]
    assert [q.as_dict() for q in users.list_queues(actors.viewer)] == [
        {"name": "Sales", "email": "sales@corp.test", "owner": "ann@corp.test", "active": True,
         "mailbox": "sales@corp.test"}]


# --- R19 ---------------------------------------------------------------------------------------

@pytest.fixture
def ann_and_bob_scheduled(admin: Actor, default_profile: ProfileRecord) -> None:
    """Two users whose mailboxes were enabled once and now have a Test & Enable queued."""
    users.add_user(admin, "Ann", "ann@corp.test")
    users.add_user(admin, "Bob", "bob@corp.test")
    for email in ("ann@corp.test", "bob@corp.test"):
        set_test_results(email, incoming_enabled=1, outgoing_enabled=1, incoming_status="success")
    bulk.apply_defaults(admin, Selection.of_emails(["ann@corp.test", "bob@corp.test"]))


def test_deactivating_a_user_deactivates_its_mailbox_and_cancels_its_queued_test(admin: Actor, ann_and_bob_scheduled):
    since = last_audit_id()
    result = users.deactivate_user(admin, "ann@corp.test")
    assert result.active is False
    ann = mailbox("ann@corp.test")
    assert ann["active"] == 0
    assert (ann["incoming_enabled"], ann["outgoing_enabled"], ann["act_enabled"], ann["test_scheduled"]) == (0, 0, 0, 0)
    jobs = {job.mailbox.email: job.state for job in EnablementJob.select()}
    assert jobs == {"ann@corp.test": "cancelled", "bob@corp.test": "queued"}
    bob = mailbox("bob@corp.test")
    assert (bob["active"], bob["incoming_enabled"], bob["test_scheduled"]) == (1, 1, 1)
    assert audit_actions(since) == ["user.deactivate", "mailbox.deactivate"]


def test_an_inactive_users_mailbox_cannot_be_activated(admin: Actor, ann_and_bob_scheduled):
    users.deactivate_user(admin, "ann@corp.test")
    before = snapshot()
    with pytest.raises(InvalidInput, match="the user or queue of a mailbox is inactive: activate it first"):
        bulk.activate(admin, Selection.of_emails(["ann@corp.test"]))
    assert snapshot() == before
    users.activate_user(admin, "ann@corp.test")
    assert mailbox("ann@corp.test")["active"] == 0  # the user came back; its mailbox waits to be activated
    assert bulk.activate(admin, Selection.of_emails(["ann@corp.test"])).changed == 1
    ann = mailbox("ann@corp.test")
    assert ann["active"] == 1 and ann["incoming_enabled"] == 0


def test_deactivating_a_queue_deactivates_its_mailbox(admin: Actor, default_profile: ProfileRecord):
    users.add_user(admin, "Ann", "ann@corp.test")
    users.add_queue(admin, "Sales", "sales@corp.test", "ann@corp.test")
    users.deactivate_queue(admin, "sales@corp.test")
    assert mailbox("sales@corp.test")["active"] == 0
    assert mailbox("ann@corp.test")["active"] == 1
    with pytest.raises(InvalidInput, match="activate it first"):
        bulk.activate(admin, Selection.of_emails(["sales@corp.test"]))


def test_a_queue_can_be_activated_again_and_then_its_mailbox(admin: Actor, default_profile: ProfileRecord):
    users.add_user(admin, "Ann", "ann@corp.test")
    users.add_queue(admin, "Sales", "sales@corp.test", "ann@corp.test")
    users.deactivate_queue(admin, "sales@corp.test")
    since = last_audit_id()
    assert users.activate_queue(admin, "sales@corp.test").active is True
    assert audit_actions(since) == ["queue.activate"]
    assert mailbox("sales@corp.test")["active"] == 0
    assert bulk.activate(admin, Selection.of_emails(["sales@corp.test"])).changed == 1


def test_deactivating_twice_writes_nothing_the_second_time(admin: Actor):
    users.add_user(admin, "Ann", "ann@corp.test")
    users.deactivate_user(admin, "ann@corp.test")
    before = snapshot()
    users.deactivate_user(admin, "ann@corp.test")
    assert snapshot() == before


def test_deactivating_an_unknown_user_is_refused(admin: Actor):
    with pytest.raises(NotFound, match="no user with email ghost@corp.test"):
        users.deactivate_user(admin, "ghost@corp.test")
