"""Organisation email settings: defaults for new mailboxes, approval, alert levels, retry policy."""

from __future__ import annotations

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


def to_dict(settings: OrgSettings) -> dict[str, Any]:
    return {
        "default_profile": settings.default_profile.name if settings.default_profile_id else None,
        "default_incoming": settings.default_incoming,
        "default_outgoing": settings.default_outgoing,
        "default_act": settings.default_act,
        "require_approval_users": settings.require_approval_users,
        "require_approval_queues": settings.require_approval_queues,
        "record_error_alerts": settings.record_error_alerts,
        "record_warning_alerts": settings.record_warning_alerts,
        "record_information_alerts": settings.record_information_alerts,
        "notify_owners_of_profile_alerts": settings.notify_owners_of_profile_alerts,
        "retry_attempts": settings.retry_attempts,
        "retry_interval_minutes": settings.retry_interval_minutes,
        "row_version": settings.row_version,
    }


def show(actor: Actor) -> dict[str, Any]:
    require(actor, Permission.READ)
    return to_dict(load())


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


def update(actor: Actor, expected_version: int | None = None, **changes: Any) -> dict[str, Any]:
    """Change any of ``SETTABLE``; ``None`` values are left as they are."""
    require(actor, Permission.CONFIGURE)
    clean = _clean(changes)
    if not clean:
        raise InvalidInput("settings", "nothing to change")
    with write_transaction():
        settings = load()
        if expected_version is not None and settings.row_version != expected_version:
            raise Conflict("the email settings were changed by someone else since you opened them; reload and try again")
        before = to_dict(settings)
        for key, value in clean.items():
            setattr(settings, "default_profile_id" if key == "default_profile" else key, value)
        after = to_dict(settings)
        changed = {k: after[k] for k in after if after[k] != before[k]}
        if not changed:
            return before
        settings.row_version += 1
        settings.save()
        after["row_version"] = settings.row_version
        audit.record(actor, "settings.update", "settings",
                     "changed email settings: " + ", ".join(sorted(changed)),
                     [(1, {k: before[k] for k in changed}, changed)])
    return after


def records_level(settings: OrgSettings, level: AlertLevel) -> bool:
    return {
        AlertLevel.ERROR: settings.record_error_alerts,
        AlertLevel.WARNING: settings.record_warning_alerts,
        AlertLevel.INFORMATION: settings.record_information_alerts,
    }[level]
