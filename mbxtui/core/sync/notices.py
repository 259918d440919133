"""R32: with notify-owners on, the alerts that matter most also go out as email to an owner, from
the organisation's notification mailbox: to a profile's owner when R16 fires for the profile, to a
mailbox's owner when processing disables a direction of the mailbox. At most one such email per
profile or mailbox an hour (``owner_notice``).

Each function runs inside the caller's write transaction and only queues the email: an outgoing
activity, ``pending``, that the outgoing pass sends once the notification mailbox is enabled for
outgoing. When an owner cannot be emailed (no notification mailbox set, no owner, an owner without
a usable address, a notification mailbox that cannot send) a warning alert says why, at most once
an hour for that profile or mailbox. Notify-owners off: nothing at all.

Names, addresses and error sentences read from the database are not trusted: every control
character in them is shown as a visible escape (``core/display.py``), so a subject stays one header
line and a body holds only the lines written here."""

from __future__ import annotations

import shlex
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from mbxtui.core import clock
from mbxtui.core.display import safe
from mbxtui.core.enums import AlertLevel
from mbxtui.core.errors import MbxError
from mbxtui.core.models import Mailbox, Profile, database
from mbxtui.core.permissions import SYSTEM
from mbxtui.core.services.alerts import raise_alert
from mbxtui.core.services.outgoing import MOST_SUBJECT_CHARACTERS, create_pending

NOTICE_INTERVAL = timedelta(hours=1)
PROFILE = "profile"
MAILBOX = "mailbox"
# owner_notice's record kind for the warning that an owner could not be emailed (its own hour).
UNSENT = "unsent_"
NOT_EMAILED_CODE = "OWNER_NOT_EMAILED"
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


@dataclass(frozen=True)
class Notice:
    """One email to the owner of a profile or mailbox: ``what`` names the record in sentences."""

    record_kind: str
    record_id: int
    owner_id: int | None
    what: str
    code: str
    subject: str
    body: str


def profile_failing(profile_id: int, profile_name: str, owner_id: int | None, code: str, sentence: str,
                    now: datetime) -> int | None:
    """R16 fired for the profile (``sentence``: its alert's text). The id of the email queued to the
    profile's owner, or None when none was."""
    name = safe(profile_name)
    fix = f"mbxtui profile test {shlex.quote(name)}"
    again = f"mbxtui test-enable --profile {shlex.quote(name)}"
    body = (f"Most mailboxes of the profile {name} are failing.\n\n"
            f"Error code: {code}\n{safe(sentence)}.\n\n"
            f"To fix it, check the profile's servers and settings:\n    {fix}\n"
            f"then run Test & Enable for its mailboxes again:\n    {again}\n")
    notice = Notice(PROFILE, profile_id, owner_id, f"the profile {name}", code,
                    f"mbxtui: profile {name} is failing ({code})", body)
    return send(notice, now)


def mailbox_disabled(mailbox_id: int, email: str, owner_id: int | None, direction: str, code: str, sentence: str,
                     now: datetime) -> int | None:
    """Processing disabled ``direction`` of the mailbox (``sentence``: its alert's text). The id of
    the email queued to the mailbox's owner, or None when none was."""
    address = safe(email)
    body = (f"{direction.capitalize()} processing of the mailbox {address} is disabled.\n\n"
            f"Error code: {code}\n{safe(sentence)}.\n\n"
            f"To fix it, remove the cause, then run Test & Enable for the mailbox again:\n"
            f"    mbxtui test-enable {shlex.quote(address)}\n")
    notice = Notice(MAILBOX, mailbox_id, owner_id, f"the mailbox {address}", code,
                    f"mbxtui: {direction} processing of {address} is disabled ({code})", body)
    return send(notice, now)


def send(notice: Notice, now: datetime) -> int | None:
    """Queue ``notice`` to its owner unless notify-owners is off or the owner was emailed about the
    same record within the hour; warn (once an hour) when the owner cannot be emailed."""
    row = database.execute_sql(
        "SELECT s.notify_owners_of_profile_alerts, m.email FROM org_settings s "
        "LEFT JOIN mailbox m ON m.id = s.notification_mailbox_id WHERE s.id = 1").fetchone()
    if row is None or not row[0]:
        return None
    sender = row[1]
    owner = None if notice.owner_id is None else database.execute_sql(
        'SELECT name, email FROM "user" WHERE id = ?', [notice.owner_id]).fetchone()
    if sender is None:
        return _not_emailed(notice, "no notification mailbox is set (mbxtui settings set --notification-mailbox "
                                    "EMAIL)", now)
    if owner is None:
        return _not_emailed(notice, f"{notice.what} has no owner", now)
    if not owner[1]:
        return _not_emailed(notice, f"its owner {safe(owner[0])} has no email address", now)
    body = (f"Hello {safe(owner[0])},\n\n{notice.body}\n"
            f"You receive this as the owner of {notice.what}; mbxtui emails you about it at most once an hour.\n")
    try:
        with database.atomic():  # a savepoint: a refused email takes its claim back with it
            if not claim(notice.record_kind, notice.record_id, now):
                return None
            return create_pending(SYSTEM, sender, [owner[1]], [], _subject(notice.subject), body)
    except MbxError as refused:
        return _not_emailed(notice, f"the email was refused: {refused}", now)


def claim(record_kind: str, record_id: int, now: datetime) -> bool:
    """Whether this caller may email about the record now: its ``owner_notice`` row is created, or
    moved to ``now`` when its last email is at least an hour old, in one statement. Of two
    transactions at once the second waits for the first's row (the unique index) and then finds it
    recent: one email, never two."""
    return database.execute_sql(
        "INSERT INTO owner_notice (record_kind, record_id, sent_on) VALUES (?, ?, ?) "
        "ON CONFLICT (record_kind, record_id) DO UPDATE SET sent_on = excluded.sent_on "
        "WHERE owner_notice.sent_on <= ? RETURNING id",
        [record_kind, record_id, now, clock.current().ago(now, NOTICE_INTERVAL.total_seconds())]).fetchone() is not None


def _subject(text: str) -> str:
    """One header line within the outgoing service's limit: ``safe`` escaped the line breaks, and
    any other invisible character the service refuses in a subject is escaped here."""
    text = "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in _INVISIBLE_CATEGORIES else c for c in text)
    if len(text) <= MOST_SUBJECT_CHARACTERS:
        return text
    return text[:MOST_SUBJECT_CHARACTERS - 3] + "..."


def _not_emailed(notice: Notice, reason: str, now: datetime) -> None:
    if not claim(UNSENT + notice.record_kind, notice.record_id, now):
        return None
    text = (f"The owner of {notice.what} was not emailed about {notice.code} (notify-owners is on): {reason}")
    if notice.record_kind == PROFILE:
        raise_alert(AlertLevel.WARNING, NOT_EMAILED_CODE, text, profile=Profile.get_by_id(notice.record_id))
    else:
        raise_alert(AlertLevel.WARNING, NOT_EMAILED_CODE, text, mailbox=Mailbox.get_by_id(notice.record_id))
    return None
