"""Organisation email settings: the documented defaults, changes, refusals."""

from __future__ import annotations

import json

import pytest

from mbxtui.core.errors import Conflict, InvalidInput, PermissionDenied
from mbxtui.core.models import AuditRecord
from mbxtui.core.permissions import Actor
from mbxtui.core.services import profiles, settings
from mbxtui.core.services.profiles import ProfileRecord
from tests.core.conftest import Actors
from tests.core.support import audit_actions, last_audit_id, profile_fields, snapshot


def test_the_defaults_are_those_of_the_domain(actors: Actors):
    assert settings.show(actors.viewer).as_dict() == {
        "default_profile": None,
        "default_incoming": "server_side_sync",
        "default_outgoing": "server_side_sync",
        "default_act": "none",
        "require_approval_users": True,
        "require_approval_queues": True,
        "record_error_alerts": True,
        "record_warning_alerts": True,
        "record_information_alerts": True,
        "notify_owners_of_profile_alerts": False,
        "retry_attempts": 10,
        "retry_interval_minutes": 5,
        "tracking_users": "replies",
        "tracking_queues": "all",
        "stale_hours": 24,
        "notification_mailbox": None,
        "oauth_refresh_days": 90,
        "oauth_expiry_warning_days": 7,
        "row_version": 1,
    }


def test_settings_are_changed_shown_and_audited(admin: Actor, imap_profile: ProfileRecord):
    since = last_audit_id()
    after = settings.update(admin, default_profile="imap", default_incoming="forward_mailbox", default_act="SERVER_SIDE_SYNC",
                            require_approval_users="off", notify_owners_of_profile_alerts="on", retry_attempts="3",
                            retry_interval_minutes=15, record_information_alerts=False,
                            default_outgoing=None).as_dict()
    assert settings.show(admin).as_dict() == after
    assert after["default_profile"] == "imap"
    assert (after["default_incoming"], after["default_outgoing"], after["default_act"]) == (
        "forward_mailbox", "server_side_sync", "server_side_sync")
    assert after["require_approval_users"] is False and after["require_approval_queues"] is True
    assert after["notify_owners_of_profile_alerts"] is True and after["record_information_alerts"] is False
    assert (after["retry_attempts"], after["retry_interval_minutes"], after["row_version"]) == (3, 15, 2)
    assert audit_actions(since) == ["settings.update"]
    record = AuditRecord.select().order_by(AuditRecord.id.desc()).get()
    assert json.loads(record.before)["default_profile"] is None
    assert json.loads(record.after)["default_profile"] == "imap"
    assert "default_outgoing" not in json.loads(record.after)


@pytest.mark.parametrize("changes, message", [
    ({"default_profile": "ghost"}, "default_profile: no profile named 'ghost'"),
    ({"default_incoming": "pop3"}, "default_incoming: 'pop3' is not one of: none, server_side_sync, forward_mailbox"),
    ({"default_outgoing": "forward_mailbox"}, "default_outgoing: 'forward_mailbox' is not one of: none, server_side_sync"),
    ({"default_act": "sometimes"}, "default_act: 'sometimes' is not one of: none, server_side_sync"),
    ({"require_approval_queues": "maybe"}, "require_approval_queues: 'maybe' is not on or off"),
    ({"retry_attempts": 101}, "retry_attempts: 101 is out of range 0–100"),
    ({"retry_interval_minutes": 0}, "retry_interval_minutes: 0 minutes is out of range 1–1440"),
    ({"colour": "blue"}, "colour: is not an email setting"),
    ({}, "settings: nothing to change"),
    ({"default_incoming": "none", "retry_attempts": -1}, "retry_attempts: -1 is out of range 0–100"),
])
def test_bad_settings_are_refused_naming_the_field_and_nothing_is_written(admin: Actor, changes: dict, message: str):
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        settings.update(admin, **changes)
    assert str(refused.value) == message
    assert snapshot() == before


def test_an_inactive_profile_cannot_become_the_default(admin: Actor):
    profiles.create(admin, **profile_fields(active="off"))
    with pytest.raises(InvalidInput, match="default_profile: profile 'imap' is inactive"):
        settings.update(admin, default_profile="imap")


def test_a_stale_version_is_refused(admin: Actor):
    settings.update(admin, retry_attempts=3, expected_version=1)
    with pytest.raises(Conflict, match="changed by someone else"):
        settings.update(admin, retry_attempts=4, expected_version=1)
    assert settings.show(admin).retry_attempts == 3


def test_a_viewer_cannot_change_settings(actors: Actors):
    with pytest.raises(PermissionDenied, match="vic is viewer"):
        settings.update(actors.viewer, retry_attempts=3)
    assert settings.update(actors.system, retry_attempts=3).retry_attempts == 3


def test_setting_the_values_already_there_writes_nothing(admin: Actor):
    before = snapshot()
    assert settings.update(admin, retry_attempts=10, default_act="none").row_version == 1
    assert snapshot() == before
