"""The alerts wall: alerts go to the mailbox and profile owners, only at the recorded levels, and
can be listed by level, mailbox or profile and dismissed."""

from __future__ import annotations

import pytest

from mbxtui.core.db import write_transaction
from mbxtui.core.enums import AlertLevel
from mbxtui.core.errors import InvalidInput, NotFound, PermissionDenied
from mbxtui.core.models import Alert, Mailbox, Profile
from mbxtui.core.permissions import Actor
from mbxtui.core.services import alerts, profiles, settings, users
from tests.core.conftest import Actors
from tests.core.support import count


@pytest.fixture
def ann(admin: Actor, default_profile) -> Mailbox:
    users.add_user(admin, "Ann", "ann@corp.test")
    users.add_user(admin, "Olive", "olive@corp.test")
    profiles.update(admin, "imap", owner="olive@corp.test")
    return Mailbox.get(Mailbox.email == "ann@corp.test")


def raise_alert(level: AlertLevel, code: str, **regarding) -> Alert | None:
    with write_transaction():
        return alerts.raise_alert(level, code, f"{code} happened", **regarding)


def test_an_alert_reaches_the_mailbox_owner_and_the_profile_owner(ann: Mailbox):
    alert = raise_alert(AlertLevel.ERROR, "auth", mailbox=ann)
    assert alert.mailbox_owner_id == ann.owner_id
    assert alert.profile_id == ann.profile_id
    assert alert.profile_owner.email == "olive@corp.test"


def test_levels_that_are_not_recorded_are_dropped(admin: Actor, ann: Mailbox):
    settings.update(admin, record_information_alerts="off")
    assert raise_alert(AlertLevel.INFORMATION, "connected", mailbox=ann) is None
    assert raise_alert(AlertLevel.WARNING, "busy", mailbox=ann) is not None
    assert count("alert") == 1


def test_alerts_are_listed_newest_first_and_filtered(actors: Actors, ann: Mailbox):
    profile = Profile.get(Profile.name == "imap")
    raise_alert(AlertLevel.WARNING, "busy", mailbox=ann)
    raise_alert(AlertLevel.ERROR, "auth", mailbox=ann)
    raise_alert(AlertLevel.ERROR, "profile-failing", profile=profile)
    viewer = actors.viewer
    assert [a["code"] for a in alerts.list_alerts(viewer)] == ["profile-failing", "auth", "busy"]
    assert [a["code"] for a in alerts.list_alerts(viewer, level="ERROR")] == ["profile-failing", "auth"]
    assert [a["code"] for a in alerts.list_alerts(viewer, mailbox="ann@corp.test")] == ["auth", "busy"]
    assert [a["mailbox"] for a in alerts.list_alerts(viewer, profile="imap")] == [None, "ann@corp.test",
                                                                                 "ann@corp.test"]
    assert alerts.count_alerts(viewer, level="warning") == 1
    with pytest.raises(InvalidInput, match="^level: 'fatal' is not one of: error, warning, information"):
        alerts.list_alerts(viewer, level="fatal")
    with pytest.raises(NotFound, match="no mailbox with email ghost@corp.test"):
        alerts.list_alerts(viewer, mailbox="ghost@corp.test")
    with pytest.raises(NotFound, match="no profile named 'ghost'"):
        alerts.list_alerts(viewer, profile="ghost")


def test_dismissed_alerts_leave_the_wall(actors: Actors, ann: Mailbox):
    first = raise_alert(AlertLevel.ERROR, "auth", mailbox=ann)
    raise_alert(AlertLevel.WARNING, "busy", mailbox=ann)
    raise_alert(AlertLevel.WARNING, "slow", mailbox=ann)
    with pytest.raises(PermissionDenied, match="vic is viewer"):
        alerts.dismiss(actors.viewer, [first.id])
    assert alerts.dismiss(actors.system, [first.id]) == 1
    assert [a["code"] for a in alerts.list_alerts(actors.viewer)] == ["slow", "busy"]
    assert alerts.dismiss_matching(actors.system, level="warning") == 2
    assert alerts.list_alerts(actors.viewer) == []
    shown = alerts.list_alerts(actors.viewer, include_dismissed=True)
    assert [a["dismissed"] for a in shown] == [True, True, True]
    assert Alert.get_by_id(first.id).dismissed_by == "syd"
