"""Outgoing email (R29) as the faces ask for it: queue a new email from a mailbox, and send an
``uncertain`` or ``failed`` one again. Queuing only writes the activity, ``pending``, with its
Message-ID set now; processing (core/sync/outgoing.py) sends it once its mailbox is enabled for
outgoing."""

from __future__ import annotations

import json
import unicodedata
import uuid

from mbxtui.core import validation
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import ActivityDirection, ActivityState, OutgoingMethod
from mbxtui.core.errors import Conflict, InvalidInput, NotFound
from mbxtui.core.jobs.queue import row_by_name
from mbxtui.core.models import Mailbox, database, utcnow
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services import audit

MOST_RECIPIENTS = 100  # To and Cc together
MOST_SUBJECT_CHARACTERS = 900  # one header line, within RFC 5322's 998 octets with its name
MOST_BODY_CHARACTERS = 1_000_000
MOST_REFERENCES = 50
PREVIEW_CHARACTERS = 4000  # as an incoming activity's preview (core/sync/messages.py)
# What a text/plain body may hold besides printable text.
_BODY_CONTROLS = frozenset("\t\n\f")
RESENDABLE = (ActivityState.UNCERTAIN.value, ActivityState.FAILED.value)


def queue_email(actor: Actor, sender_email: str, to: list[str], cc: list[str], subject: str, body: str,
                reply_to_activity_id: int | None = None) -> int:
    """The id of a new outgoing email activity, ``pending``, sent from the mailbox ``sender_email``.
    With ``reply_to_activity_id`` it answers that activity: In-Reply-To is its Message-ID and
    References its references followed by its Message-ID (R27 threads the answers)."""
    require(actor, Permission.SEND_EMAIL)
    return create_pending(actor, sender_email, to, cc, subject, body, reply_to_activity_id)


def create_pending(actor: Actor, sender_email: str, to: list[str], cc: list[str], subject: str, body: str,
                   reply_to_activity_id: int | None = None) -> int:
    """``queue_email`` without the permission check, for email mbxtui sends of its own accord
    (R32's notices to owners, as ``permissions.SYSTEM``); inside the caller's transaction if any."""
    sender = validation.email("from", sender_email)
    to_addresses = _addresses("to", to)
    cc_addresses = [address for address in _addresses("cc", cc) if address not in to_addresses]
    if not to_addresses:
        raise InvalidInput("to", "at least one recipient is required")
    if len(to_addresses) + len(cc_addresses) > MOST_RECIPIENTS:
        raise InvalidInput("to", f"{len(to_addresses) + len(cc_addresses)} recipients is too many; the limit is "
                                 f"{MOST_RECIPIENTS} (To and Cc together)")
    subject = validation.text("subject", subject, max_length=MOST_SUBJECT_CHARACTERS)
    body = _body(body)
    if reply_to_activity_id is not None:
        reply_to_activity_id = validation.integer("reply to activity", reply_to_activity_id, 1, 2**63 - 1)
    with write_transaction():
        mailbox = _sending_mailbox(sender)
        in_reply_to, references = _thread(reply_to_activity_id)
        message_id = new_message_id(sender)
        now = utcnow()
        activity_id = database.execute_sql(
            "INSERT INTO email_activity (direction, state, message_id, sender, \"to\", cc, subject, size, attachments, "
            "preview, in_reply_to, mailbox_id, created_on, body, reference_ids, reply_to_activity_id, created_by, "
            "attempts) VALUES (?, ?, ?, ?, ?, ?, ?, 0, '[]', ?, ?, ?, ?, ?, ?, ?, ?, 0) RETURNING id",
            [ActivityDirection.OUTGOING.value, ActivityState.PENDING.value, message_id, sender,
             json.dumps(to_addresses), json.dumps(cc_addresses), subject, body[:PREVIEW_CHARACTERS], in_reply_to,
             mailbox.id, now, body, " ".join(references), reply_to_activity_id, actor.login]).fetchone()[0]
        if mailbox.user_id is not None or mailbox.queue_id is not None:  # the user or queue it is sent for
            database.execute_sql("INSERT INTO activity_party (activity_id, user_id, queue_id) VALUES (?, ?, ?)",
                                 [activity_id, mailbox.user_id, mailbox.queue_id])
        audit.record(actor, "activity.queue", "activity",
                     f"queued an email from {sender} to {len(to_addresses) + len(cc_addresses)} recipient(s)",
                     [(activity_id, None, {"message_id": message_id, "sender": sender, "to": to_addresses,
                                           "cc": cc_addresses, "subject": subject, "in_reply_to": in_reply_to,
                                           "state": ActivityState.PENDING.value})])
    return activity_id


def resend(actor: Actor, activity_id: int) -> None:
    """Send an ``uncertain`` or ``failed`` outgoing email again: it is ``pending`` once more, with
    its attempts counted from zero. An operator's decision: an ``uncertain`` email may have gone
    out already (R29)."""
    require(actor, Permission.SEND_EMAIL)
    activity_id = validation.integer("id", activity_id, 1, 2**63 - 1)
    with write_transaction():
        row = row_by_name(database.execute_sql(
            "SELECT direction, state, attempts, last_error_code FROM email_activity WHERE id = ?", [activity_id]))
        if row is None:
            raise NotFound(f"no email activity has the id {activity_id}: see mbxtui activity list")
        if row["direction"] != ActivityDirection.OUTGOING.value:
            raise Conflict(f"the email activity {activity_id} is incoming: only outgoing email can be sent again")
        if row["state"] not in RESENDABLE:
            raise Conflict(f"the email activity {activity_id} is {row['state']}: only an uncertain or failed email "
                           "can be sent again")
        database.execute_sql(
            "UPDATE email_activity SET state = ?, attempts = 0, next_attempt = NULL, last_error_code = NULL, "
            "last_error_text = NULL WHERE id = ?", [ActivityState.PENDING.value, activity_id])
        audit.record(actor, "activity.resend", "activity", f"queued the {row['state']} email {activity_id} again",
                     [(activity_id, {"state": row["state"], "attempts": row["attempts"],
                                     "last_error_code": row["last_error_code"]},
                       {"state": ActivityState.PENDING.value, "attempts": 0})])


def new_message_id(sender: str) -> str:
    """A Message-ID in the sender's domain (ASCII: an internationalised domain in its IDNA form)."""
    domain = sender.rsplit("@", 1)[-1]
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        domain = "mbxtui.invalid"
    return f"<{uuid.uuid4().hex}@{domain}>"


def _addresses(field: str, values: list[str] | None) -> list[str]:
    found: list[str] = []
    for value in values or []:
        address = validation.email(field, value)
        if address not in found:
            found.append(address)
    return found


def _body(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput("body", "is not text")
    text = value.replace("\r\n", "\n").replace("\r", "\n")
    if len(text) > MOST_BODY_CHARACTERS:
        raise InvalidInput("body", f"is {len(text)} characters long; the limit is {MOST_BODY_CHARACTERS}")
    for line_number, line in enumerate(text.split("\n"), start=1):
        for character in line:
            if character in _BODY_CONTROLS:
                continue
            category = unicodedata.category(character)
            if category == "Cs":
                raise InvalidInput("body", f"is not valid text: line {line_number} holds U+{ord(character):04X}, "
                                           "a lone surrogate (not UTF-8?)")
            if category == "Cc":
                raise InvalidInput("body", f"line {line_number} contains a control character "
                                           f"(U+{ord(character):04X}): remove it")
    return text


def _sending_mailbox(sender: str) -> Mailbox:
    mailbox = Mailbox.get_or_none(Mailbox.email == sender)
    if mailbox is None:
        raise NotFound(f"no mailbox has the address {sender}: send from a mailbox of mbxtui mailbox list")
    if not mailbox.active:
        raise InvalidInput("from", f"the mailbox {sender} is inactive: activate it, or send from another mailbox")
    if mailbox.outgoing_method == OutgoingMethod.NONE.value:
        raise InvalidInput("from", f"the mailbox {sender} does not send email (its outgoing method is none): set it "
                                   "to server_side_sync and Test & Enable it, or send from another mailbox")
    return mailbox


def _thread(reply_to_activity_id: int | None) -> tuple[str, list[str]]:
    """In-Reply-To and References of an answer to that activity (both empty for a new email)."""
    if reply_to_activity_id is None:
        return "", []
    row = row_by_name(database.execute_sql(
        "SELECT direction, message_id, in_reply_to, reference_ids FROM email_activity WHERE id = ?",
        [reply_to_activity_id]))
    if row is None:
        raise NotFound(f"no email activity has the id {reply_to_activity_id} to reply to: see mbxtui activity list")
    # An incoming activity keeps its In-Reply-To and References together; an outgoing one its References.
    earlier = (row["reference_ids"] if row["direction"] == ActivityDirection.OUTGOING.value
               else row["in_reply_to"]).split()
    chain = _last_occurrences([*earlier, row["message_id"]])
    return row["message_id"], chain[-MOST_REFERENCES:]


def _last_occurrences(message_ids: list[str]) -> list[str]:
    """Each Message-ID once, where it last appears: a parent's own id ends the chain."""
    seen: set[str] = set()
    kept: list[str] = []
    for message_id in reversed(message_ids):
        if message_id not in seen:
            seen.add(message_id)
            kept.append(message_id)
    return kept[::-1]

