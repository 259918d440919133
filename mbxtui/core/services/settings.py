"""Organisation email settings: defaults for new mailboxes, approval, alert levels, retry policy."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from mbxtui.core import validation
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import ActMethod, AlertLevel, IncomingMethod, OutgoingMethod
from mbxtui.core.errors import Conflict, InvalidInput, NotInitialised
from mbxtui.core.models import OrgSettings, Profile
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services import audit

SETTABLE = (
    "default_profile", "default_incoming", "default_outgoing", "default_act",
    "require_approval_users", "require_approval_queues",
    "record_error_alerts", "record_warning_alerts", "record_information_alerts",
    "notify_owners_of_profile_alerts", "retry_attempts", "retry_interval_minutes",
)


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
    row_version: int

    @classmethod
    def of(cls, settings: OrgSettings) -> EmailSettings:
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
            row_version=settings.row_version,
        )

    def as_dict(self) -> dict[str, Any]:
        """As ``mbxtui settings show --json`` prints it (the fields in this order)."""
        return asdict(self)


def show(actor: Actor) -> EmailSettings:
    require(actor, Permission.READ)
    return EmailSettings.of(load())


def _clean(changes: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        if value is None:
            continue
        if key == "default_profile":
            if str(value).strip().lower() in ("", "none"):
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
            setattr(settings, "default_profile_id" if key == "default_profile" else key, value)
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
