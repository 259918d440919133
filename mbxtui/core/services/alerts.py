"""The alerts wall: errors, warnings and information about mailboxes and profiles (R14–R16)."""

from __future__ import annotations

from typing import Any

from peewee import JOIN

from mbxtui.core import validation
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import AlertLevel
from mbxtui.core.errors import NotFound
from mbxtui.core.models import Alert, Mailbox, OrgSettings, Profile, database, utcnow
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services import audit
from mbxtui.core.services import settings as settings_service


def raise_alert(level: AlertLevel, code: str, text: str, *, mailbox: Mailbox | None = None,
                profile: Profile | None = None, settings: OrgSettings | None = None) -> Alert | None:
    """Record an alert for the mailbox owner and the profile owner, if the organisation records
    alerts of this level (``settings``: the organisation's, when the caller has read them).
    Caller holds the transaction."""
    settings = settings or settings_service.load()
    if not settings_service.records_level(settings, level):
        return None
    if profile is None and mailbox is not None and mailbox.profile_id:
        profile = Profile.find(mailbox.profile_id)
    alert = Alert(
        level=level.value, code=code, text=text,
        mailbox=mailbox.id if mailbox else None, profile=profile.id if profile else None,
        mailbox_owner=mailbox.owner_id if mailbox else None,
        profile_owner=profile.owner_id if profile else None,
        created_on=utcnow(), dismissed=False,
    )
    # Plain SQL: Test & Enable raises an alert for every mailbox it tests, and peewee's building
    # of the same INSERT cost more than the rest of writing the result.
    alert.id = database.execute_sql(
        "INSERT INTO alert (level, code, text, mailbox_id, profile_id, mailbox_owner_id, profile_owner_id, "
        "created_on, dismissed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0) RETURNING id",
        [alert.level, code, text, alert.mailbox_id, alert.profile_id, alert.mailbox_owner_id,
         alert.profile_owner_id, alert.created_on]).fetchone()[0]
    return alert


def _query(*, level: str | None, mailbox: str | None, profile: str | None, include_dismissed: bool):
    query = Alert.select(Alert, Mailbox.email.alias("mailbox_email"), Profile.name.alias("profile_name")).join(
        Mailbox, join_type=JOIN.LEFT_OUTER, on=(Alert.mailbox == Mailbox.id)).switch(Alert).join(
        Profile, join_type=JOIN.LEFT_OUTER, on=(Alert.profile == Profile.id))
    if level:
        query = query.where(Alert.level == validation.choice("level", level, AlertLevel).value)
    if mailbox:
        address = validation.email("mailbox", mailbox)
        box = Mailbox.get_or_none(Mailbox.email == address)
        if box is None:
            raise NotFound(f"no mailbox with email {address}")
        query = query.where(Alert.mailbox == box.id)
    if profile:
        profile = validation.lookup("profile", profile)
        target = Profile.get_or_none(Profile.name == profile)
        if target is None:
            raise NotFound(f"no profile named {validation.shown(profile)}")
        query = query.where(Alert.profile == target.id)
    if not include_dismissed:
        query = query.where(Alert.dismissed == False)  # noqa: E712
    return query


def to_dict(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id, "level": alert.level, "code": alert.code, "text": alert.text,
        "mailbox": getattr(alert, "mailbox_email", None),
        "profile": getattr(alert, "profile_name", None),
        "created_on": alert.created_on.isoformat(sep=" "), "dismissed": alert.dismissed,
    }


def list_alerts(actor: Actor, *, level: str | None = None, mailbox: str | None = None, profile: str | None = None,
                include_dismissed: bool = False, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    require(actor, Permission.READ)
    limit, offset = validation.paging(limit, offset)
    query = _query(level=level, mailbox=mailbox, profile=profile, include_dismissed=include_dismissed)
    query = query.order_by(Alert.created_on.desc(), Alert.id.desc()).limit(limit).offset(offset)
    return [to_dict(a) for a in query.objects()]


def count_alerts(actor: Actor, *, level: str | None = None, mailbox: str | None = None,
                 profile: str | None = None) -> int:
    require(actor, Permission.READ)
    return _query(level=level, mailbox=mailbox, profile=profile, include_dismissed=False).count()


def dismiss(actor: Actor, alert_ids: list[int]) -> int:
    require(actor, Permission.DISMISS_ALERTS)
    alert_ids = [validation.integer("id", alert_id, 1, 2**63 - 1) for alert_id in alert_ids]
    with write_transaction():
        count = Alert.update(dismissed=True, dismissed_by=actor.login, dismissed_on=utcnow()).where(
            Alert.id.in_(alert_ids) & (Alert.dismissed == False)).execute()  # noqa: E712
        audit.record(actor, "alert.dismiss", "alert", f"dismissed {count} alert(s)",
                     [(i, {"dismissed": False}, {"dismissed": True}) for i in alert_ids])
    return count


def dismiss_matching(actor: Actor, *, level: str | None = None, mailbox: str | None = None,
                     profile: str | None = None) -> int:
    """Dismiss every alert the same filters would show."""
    require(actor, Permission.DISMISS_ALERTS)
    with write_transaction():
        ids = [a.id for a in _query(level=level, mailbox=mailbox, profile=profile, include_dismissed=False)]
        if not ids:
            return 0
        Alert.update(dismissed=True, dismissed_by=actor.login, dismissed_on=utcnow()).where(Alert.id.in_(ids)).execute()
        audit.record(actor, "alert.dismiss", "alert", f"dismissed {len(ids)} alert(s)",
                     [(i, {"dismissed": False}, {"dismissed": True}) for i in ids])
    return len(ids)
