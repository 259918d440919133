"""Queuing outgoing email and sending it again (R29) on the real database of the suite's backend:
what a queued activity holds, the thread of a reply (R27), each refusal in one sentence with nothing
written, and who may do it."""

from __future__ import annotations

import json

import pytest

from mbxtui.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from mbxtui.core.models import AuditEntry, AuditRecord, database
from mbxtui.core.services import activities, mailboxes, outgoing, users
from mbxtui.core.services.outgoing import queue_email, resend


@pytest.fixture
def sender(admin) -> str:
    users.add_user(admin, "Ann", "ann@corp.test")
    return "ann@corp.test"


def row(activity_id: int) -> dict:
    cursor = database.execute_sql("SELECT * FROM email_activity WHERE id = ?", [activity_id])
    names = [column[0] for column in cursor.description]
    return dict(zip(names, cursor.fetchone()))


def count() -> int:
    return database.execute_sql("SELECT count(*) FROM email_activity").fetchone()[0]


def test_a_queued_email_is_pending_with_its_message_id_and_who_queued_it(admin, sender):
    activity_id = queue_email(admin, "Ann@Corp.test", ["bob@outside.test", "Cy@outside.test"],
                              ["dee@outside.test", "bob@outside.test"], "Quarterly figures", "Hello Bob,\r\nsee below.")
    stored = row(activity_id)
    assert (stored["direction"], stored["state"], stored["sender"]) == ("outgoing", "pending", "ann@corp.test")
    assert stored["message_id"].startswith("<") and stored["message_id"].endswith("@corp.test>")
    assert json.loads(stored["to"]) == ["bob@outside.test", "cy@outside.test"]
    assert json.loads(stored["cc"]) == ["dee@outside.test"], "an address already in To is not copied again"
    assert stored["body"] == "Hello Bob,\nsee below." and stored["preview"] == stored["body"]
    assert (stored["created_by"], stored["attempts"], stored["next_attempt"]) == (admin.login, 0, None)
    assert stored["mailbox_id"] == mailboxes.get(sender).id
    assert (stored["in_reply_to"], stored["reference_ids"], stored["reply_to_activity_id"]) == ("", "", None)
    listed = activities.list_activities(admin, state="pending", direction="outgoing")
    assert [r["id"] for r in listed["rows"]] == [activity_id]
    assert listed["rows"][0]["parties"] == [sender], "it concerns the user it is sent for"
    entry = AuditEntry.select().order_by(AuditEntry.id.desc()).get()
    assert (entry.action, entry.record_kind, entry.login) == ("activity.queue", "activity", admin.login)
    assert AuditRecord.get(AuditRecord.entry == entry.id).record_id == activity_id
    other = queue_email(admin, sender, ["bob@outside.test"], [], "Again", "")
    assert row(other)["message_id"] != stored["message_id"], "each email its own Message-ID"


def test_a_reply_threads_on_the_activity_it_answers(admin, sender):
    database.execute_sql(
        "INSERT INTO email_activity (direction, state, message_id, sender, \"to\", cc, subject, size, attachments, "
        "preview, in_reply_to, created_on) VALUES ('incoming', 'received', '<q2@outside.test>', 'x@outside.test', "
        "'[]', '[]', 'Question', 0, '[]', '', '<q1@outside.test> <q0@outside.test> <q1@outside.test>', "
        "CURRENT_TIMESTAMP)")
    question = database.execute_sql(
        "SELECT id FROM email_activity WHERE message_id = '<q2@outside.test>'").fetchone()[0]
    answer = queue_email(admin, sender, ["x@outside.test"], [], "Re: Question", "Yes.", reply_to_activity_id=question)
    stored = row(answer)
    assert stored["in_reply_to"] == "<q2@outside.test>"
    assert stored["reference_ids"] == "<q0@outside.test> <q1@outside.test> <q2@outside.test>"
    assert stored["reply_to_activity_id"] == question
    # An answer to our own answer carries the whole chain.
    again = row(queue_email(admin, sender, ["x@outside.test"], [], "Re: Re: Question", "More.",
                            reply_to_activity_id=answer))
    assert again["in_reply_to"] == stored["message_id"]
    assert again["reference_ids"] == f"<q0@outside.test> <q1@outside.test> <q2@outside.test> {stored['message_id']}"


@pytest.mark.parametrize("call, error, words", [
    (dict(to=["not an address"]), InvalidInput, "to: 'not an address' is not a valid email address"),
    (dict(cc=["bob@"]), InvalidInput, "cc: 'bob@' is not a valid email address"),
    (dict(to=[]), InvalidInput, "to: at least one recipient is required"),
    (dict(to=[f"r{n}@outside.test" for n in range(101)]), InvalidInput, "101 recipients is too many"),
    (dict(subject=""), InvalidInput, "subject: is required"),
    (dict(subject="x" * 901), InvalidInput, "subject: is 901 characters long; the limit is 900"),
    (dict(subject="Hi\nBcc: evil@outside.test"), InvalidInput, "subject: contains a control character"),
    (dict(body="x" * 1_000_001), InvalidInput, "body: is 1000001 characters long"),
    (dict(body="line one\nbad \x00 byte"), InvalidInput, "body: line 2 contains a control character (U+0000)"),
    (dict(sender_email="nobody@corp.test"), NotFound, "no mailbox has the address nobody@corp.test"),
    (dict(sender_email="ann@"), InvalidInput, "from: 'ann@' is not a valid email address"),
    (dict(reply_to_activity_id=999), NotFound, "no email activity has the id 999 to reply to"),
])
def test_bad_input_is_refused_in_one_sentence_and_nothing_is_written(admin, sender, call, error, words):
    values = dict(sender_email=sender, to=["bob@outside.test"], cc=[], subject="Hello", body="Body")
    values.update(call)
    entries = AuditEntry.select().count()
    with pytest.raises(error) as refused:
        queue_email(admin, **values)
    assert words in str(refused.value)
    assert "\n" not in str(refused.value)
    assert count() == 0 and AuditEntry.select().count() == entries


def test_an_inactive_mailbox_or_one_that_never_sends_is_refused(admin, sender):
    mailboxes.edit(admin, sender, outgoing_method="none")
    with pytest.raises(InvalidInput, match="does not send email .its outgoing method is none."):
        queue_email(admin, sender, ["bob@outside.test"], [], "Hello", "Body")
    users.add_user(admin, "Gone", "gone@corp.test")
    users.deactivate_user(admin, "gone@corp.test")
    with pytest.raises(InvalidInput, match="the mailbox gone@corp.test is inactive"):
        queue_email(admin, "gone@corp.test", ["bob@outside.test"], [], "Hello", "Body")
    assert count() == 0


def test_an_internationalised_sender_gets_an_ascii_message_id():
    assert outgoing.new_message_id("jörg@bücher.test").endswith("@xn--bcher-kva.test>")


def test_only_uncertain_or_failed_outgoing_email_is_sent_again(admin, sender):
    activity_id = queue_email(admin, sender, ["bob@outside.test"], [], "Hello", "Body")
    with pytest.raises(Conflict) as refused:
        resend(admin, activity_id)
    assert str(refused.value) == (f"the email activity {activity_id} is pending: only an uncertain or failed email "
                                  "can be sent again")
    for state in ("uncertain", "failed"):
        database.execute_sql("UPDATE email_activity SET state = ?, attempts = 4, next_attempt = CURRENT_TIMESTAMP, "
                             "last_error_code = 'TIMEOUT', last_error_text = 'timed out' WHERE id = ?",
                             [state, activity_id])
        resend(admin, activity_id)
        stored = row(activity_id)
        assert (stored["state"], stored["attempts"], stored["next_attempt"]) == ("pending", 0, None)
        assert stored["last_error_code"] is None
    entry = AuditEntry.select().order_by(AuditEntry.id.desc()).get()
    assert (entry.action, entry.summary) == ("activity.resend", f"queued the failed email {activity_id} again")
    database.execute_sql("UPDATE email_activity SET state = 'sent' WHERE id = ?", [activity_id])
    with pytest.raises(Conflict, match="is sent: only an uncertain or failed"):
        resend(admin, activity_id)
    with pytest.raises(NotFound, match="no email activity has the id 424242"):
        resend(admin, 424242)


def test_an_incoming_activity_is_never_sent(admin, sender):
    database.execute_sql(
        "INSERT INTO email_activity (direction, state, message_id, sender, \"to\", cc, subject, size, attachments, "
        "preview, in_reply_to, created_on) VALUES ('incoming', 'received', '<in@outside.test>', 'x@outside.test', "
        "'[]', '[]', 'In', 0, '[]', '', '', CURRENT_TIMESTAMP)")
    incoming = database.execute_sql("SELECT id FROM email_activity").fetchone()[0]
    with pytest.raises(Conflict, match=f"the email activity {incoming} is incoming"):
        resend(admin, incoming)


def test_a_viewer_may_neither_queue_nor_resend(actors, sender):
    with pytest.raises(PermissionDenied) as refused:
        queue_email(actors.viewer, sender, ["bob@outside.test"], [], "Hello", "Body")
    assert "is viewer and may not send email from a mailbox" in str(refused.value)
    activity_id = queue_email(actors.system, sender, ["bob@outside.test"], [], "Hello", "Body")
    database.execute_sql("UPDATE email_activity SET state = 'failed' WHERE id = ?", [activity_id])
    with pytest.raises(PermissionDenied):
        resend(actors.viewer, activity_id)
    assert row(activity_id)["state"] == "failed" and count() == 1
