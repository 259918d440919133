"""Organisation email settings: defaults for new mailboxes, approval, alert levels, retry policy,
and the settings of processing: tracking defaults (R27), the stale threshold (R31) and the mailbox
that sends owners' emails (R32)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mbxtui.core import validation
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import ActMethod, AlertLevel, IncomingMethod, OutgoingMethod, Tracking
from mbxtui.core.errors import Conflict, InvalidInput, NotInitialised
from mbxtui.core.models import Mailbox, OrgSettings, Profile
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services import audit

SETTABLE = (
    "default_profile", "default_incoming", "default_outgoing", "default_act",
    "require_approval_users", "require_approval_queues",
    "record_error_alerts", "record_warning_alerts", "record_information_alerts",
    "notify_owners_of_profile_alerts", "retry_attempts", "retry_interval_minutes",
    "tracking_users", "tracking_queues", "stale_hours", "notification_mailbox",
    "oauth_refresh_days", "oauth_expiry_warning_days",
)
STALE_HOURS = (1, 8760)  # an hour to a year
CLEARED = ("", "none")  # what clears the default profile or the notification mailbox


def load() -> OrgSettings:
    settings = OrgSettings.find(1)
    if settings is None:
        raise NotInitialised("this database has no organisation settings: run `mbxtui init` first")
    return settings


@dataclass(frozen=True)
class EmailSettings:
    """The organisation's email settings as shown (the default profile by name)."""

    default_profile: str | None
    default_incoming: str
    default_outgoing: str
    default_act: str
    require_approval_users: bool
    require_approval_queues: bool
    record_error_alerts: bool
    record_warning_alerts: bool
    record_information_alerts: bool
    notify_owners_of_profile_alerts: bool
    retry_attempts: int
    retry_interval_minutes: int
    tracking_users: str
    tracking_queues: str
    stale_hours: int
    notification_mailbox: str | None
    oauth_refresh_days: int  # a mailbox's own refresh token's life when its provider does not say
    oauth_expiry_warning_days: int  # how long before that the warning alert comes
    row_version: int
    # Why owners' emails (R32) cannot be sent as the settings are now; not part of ``as_dict``.
    notification_warning: str | None = field(default=None, compare=False)

    @classmethod
    def of(cls, settings: OrgSettings) -> EmailSettings:
        sender = settings.notification_mailbox if settings.notification_mailbox_id else None
        return cls(
            default_profile=settings.default_profile.name if settings.default_profile_id else None,
            default_incoming=settings.default_incoming,
            default_outgoing=settings.default_outgoing,
            default_act=settings.default_act,
            require_approval_users=settings.require_approval_users,
            require_approval_queues=settings.require_approval_queues,
            record_error_alerts=settings.record_error_alerts,
            record_warning_alerts=settings.record_warning_alerts,
            record_information_alerts=settings.record_information_alerts,
            notify_owners_of_profile_alerts=settings.notify_owners_of_profile_alerts,
            retry_attempts=settings.retry_attempts,
            retry_interval_minutes=settings.retry_interval_minutes,
            tracking_users=settings.tracking_users,
            tracking_queues=settings.tracking_queues,
            stale_hours=settings.stale_hours,
            notification_mailbox=sender.email if sender is not None else None,
            oauth_refresh_days=settings.oauth_refresh_days,
            oauth_expiry_warning_days=settings.oauth_expiry_warning_days,
            row_version=settings.row_version,
            notification_warning=notification_warning(settings.notify_owners_of_profile_alerts, sender),
        )

    def as_dict(self) -> dict[str, Any]:
        """As ``mbxtui settings show --json`` prints it (the fields in this order)."""
        data = asdict(self)
        del data["notification_warning"]
        return data


def notification_warning(notify_owners: bool, sender: Mailbox | None) -> str | None:
    """Why the owners' emails of R32 would not be sent now, in a sentence; None when they would be
    (or when nobody asked for them and no mailbox is set)."""
    if sender is None:
        if notify_owners:
            return ("owners are to be told of alerts by email, but no notification mailbox is set: "
                    "set one with `mbxtui settings set --notification-mailbox EMAIL`")
        return None
    cannot = _cannot_send(sender)
    if cannot is not None:
        return f"{cannot}, so owners' emails cannot be sent through it: fix it or choose another notification mailbox"
    if not sender.outgoing_enabled:
        return (f"mailbox {sender.email} is not enabled for outgoing yet: owners' emails wait until "
                "Test & Enable passes for it")
    return None


def _cannot_send(mailbox: Mailbox) -> str | None:
    """What keeps ``mailbox`` from ever sending as it is configured, or None."""
    if mailbox.is_forward:
        return f"mailbox {mailbox.email} is a forward mailbox, which only receives"
    if not mailbox.active:
        return f"mailbox {mailbox.email} is inactive"
    if mailbox.outgoing_method == OutgoingMethod.NONE:
        return f"mailbox {mailbox.email} has outgoing method none"
    return None


def _notification_mailbox(value: object) -> int | None:
    """R32 sends through this mailbox: it must exist, be active and be set up for outgoing. One not
    yet enabled for outgoing (not tested yet) is accepted, with ``notification_warning`` saying so."""
    if isinstance(value, str) and value.strip().lower() in CLEARED:
        return None
    address = validation.email("notification_mailbox", value)
    mailbox = Mailbox.get_or_none(Mailbox.email == address)
    if mailbox is None:
        raise InvalidInput("notification_mailbox",
                           f"no mailbox with email {address}: give an existing mailbox, or none to clear it")
    cannot = _cannot_send(mailbox)
    if cannot is not None:
        raise InvalidInput("notification_mailbox",
                           f"{cannot}, so it cannot send the owners' emails: choose a mailbox that sends "
                           "(outgoing method server_side_sync)")
    return mailbox.id


def show(actor: Actor) -> EmailSettings:
    require(actor, Permission.READ)
    return EmailSettings.of(load())


def _clean(changes: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        if value is None:
            continue
        if key == "default_profile":
            if str(value).strip().lower() in CLEARED:
                clean["default_profile"] = None
                continue
            name = validation.text("default_profile", value)
            profile = Profile.get_or_none(Profile.name == name)
            if profile is None:
                raise InvalidInput("default_profile", f"no profile named {name!r}")
            if not profile.active:
                raise InvalidInput("default_profile", f"profile {name!r} is inactive")
            clean["default_profile"] = profile.id
        elif key == "default_incoming":
            clean[key] = validation.choice(key, value, IncomingMethod).value
        elif key == "default_outgoing":
            clean[key] = validation.choice(key, value, OutgoingMethod).value
        elif key == "default_act":
            clean[key] = validation.choice(key, value, ActMethod).value
        elif key == "retry_attempts":
            clean[key] = validation.integer(key, value, 0, 100)
        elif key == "retry_interval_minutes":
            clean[key] = validation.integer(key, value, 1, 1440, "minutes")
        elif key in ("tracking_users", "tracking_queues"):
            clean[key] = validation.choice(key, value, Tracking).value
        elif key == "stale_hours":
            clean[key] = validation.integer(key, value, *STALE_HOURS, "hours")
        elif key == "notification_mailbox":
            clean[key] = _notification_mailbox(value)
        elif key in ("oauth_refresh_days", "oauth_expiry_warning_days"):
            clean[key] = validation.integer(key, value, 1, 3650, "days")
        elif key in SETTABLE:
            clean[key] = validation.on_off(key, value)
        else:
            raise InvalidInput(key, "is not an email setting")
    return clean


def update(actor: Actor, expected_version: int | None = None, **changes: Any) -> EmailSettings:
    """Change any of ``SETTABLE``; ``None`` values are left as they are."""
    require(actor, Permission.CONFIGURE)
    clean = _clean(changes)
    if not clean:
        raise InvalidInput("settings", "nothing to change")
    with write_transaction():
        settings = load()
        if expected_version is not None and settings.row_version != expected_version:
            raise Conflict("the email settings were changed by someone else since you opened them; reload and try again")
        before = EmailSettings.of(settings)
        for key, value in clean.items():
            setattr(settings, f"{key}_id" if key in ("default_profile", "notification_mailbox") else key, value)
        after = EmailSettings.of(settings)
        before_values, after_values = before.as_dict(), after.as_dict()
        changed = {k: v for k, v in after_values.items() if v != before_values[k]}
        if not changed:
            return before
        settings.row_version += 1
        settings.save()
        after = replace(after, row_version=settings.row_version)
        audit.record(actor, "settings.update", "settings",
                     "changed email settings: " + ", ".join(sorted(changed)),
                     [(1, {k: before_values[k] for k in changed}, changed)])
    return after


def records_level(settings: OrgSettings, level: AlertLevel) -> bool:
    return {
        AlertLevel.ERROR: settings.record_error_alerts,
        AlertLevel.WARNING: settings.record_warning_alerts,
        AlertLevel.INFORMATION: settings.record_information_alerts,
    }[level]
