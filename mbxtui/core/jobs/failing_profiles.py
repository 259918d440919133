"""R16, kept in one place for Test & Enable and processing (R30) alike: when more than half of a
profile's active mailboxes failed within the last hour, its owner gets one error alert about the
profile (and, with notify-owners on, one email, R32).

What counts is ``mailbox_failure``: one row per direction of a mailbox that failed, in its test or
while being processed, and has not passed since (``failed``, ``passed``), with when it last failed.
The writers call ``alert_failing_profiles`` once per batch or pass for the profiles that had a
failure in it. Every function here writes; the caller holds the write transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from mbxtui.core import clock
from mbxtui.core.jobs.outcome import PROFILE_FAILING_CODE, profile_failing, profile_failing_alert
from mbxtui.core.models import Alert, Profile, database
from mbxtui.core.services.alerts import raise_alert
from mbxtui.core.sql_lists import placeholders
from mbxtui.core.sync import notices

TEST = "test"
PROCESSING = "processing"


def failed(mailbox_id: int, profile_id: int | None, directions: Iterable[str], activity: str, now: datetime) -> None:
    """These directions of the mailbox failed ``now`` (``activity``: ``test`` or ``processing``)."""
    if profile_id is None:
        return
    for direction in directions:
        database.execute_sql(
            "INSERT INTO mailbox_failure (mailbox_id, profile_id, direction, activity, failed_on) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (mailbox_id, direction) DO UPDATE SET profile_id = excluded.profile_id, "
            "activity = excluded.activity, failed_on = excluded.failed_on",
            [mailbox_id, profile_id, direction, activity, now])


def passed(mailbox_id: int, directions: Iterable[str]) -> None:
    """These directions of the mailbox work again: they no longer count as failing."""
    listed = list(directions)
    if listed:
        database.execute_sql(
            f"DELETE FROM mailbox_failure WHERE mailbox_id = ? AND direction IN ({placeholders(listed)})",
            [mailbox_id, *listed])


def passed_together(mailbox_ids: list[int], direction: str) -> None:
    """``passed(id, [direction])`` for each of these mailboxes, in one statement."""
    if mailbox_ids:
        database.execute_sql(
            f"DELETE FROM mailbox_failure WHERE direction = ? AND mailbox_id IN ({placeholders(mailbox_ids)})",
            [direction, *mailbox_ids])


def alert_failing_profiles(profile_ids: Iterable[int], now: datetime) -> None:
    """R16 for each of these profiles: one error alert to its owner when more than half of its
    active mailboxes failed within the last hour, at most one an hour."""
    hour_ago = clock.current().ago(now, 3600)  # after a forward jump, an hour of time that passed
    for profile_id in sorted(set(profile_ids)):
        recent = Alert.select().where((Alert.profile == profile_id) & (Alert.code == PROFILE_FAILING_CODE)
                                      & (Alert.mailbox.is_null()) & (Alert.created_on >= hour_ago))
        if recent.exists():  # first: once alerted, the counts are not needed for an hour
            continue
        failing, in_test, in_processing = database.execute_sql(
            "SELECT count(DISTINCT f.mailbox_id), count(DISTINCT CASE WHEN f.activity = ? THEN f.mailbox_id END), "
            "count(DISTINCT CASE WHEN f.activity = ? THEN f.mailbox_id END) FROM mailbox_failure f "
            "JOIN mailbox m ON m.id = f.mailbox_id AND m.profile_id = f.profile_id "
            "WHERE f.profile_id = ? AND f.failed_on >= ? AND m.active = 1",
            [TEST, PROCESSING, profile_id, hour_ago]).fetchone()
        if not failing:
            continue
        mailboxes = database.execute_sql(
            "SELECT count(*) FROM mailbox WHERE profile_id = ? AND active = 1", [profile_id]).fetchone()[0]
        if not profile_failing(mailboxes, failing):
            continue
        profile = Profile.get_by_id(profile_id)
        notice = profile_failing_alert(profile.name, mailboxes, failing, in_test=in_test, in_processing=in_processing)
        raise_alert(notice.level, notice.code, notice.text, profile=profile)
        notices.profile_failing(profile.id, profile.name, profile.owner_id, notice.code, notice.text, now)  # R32
