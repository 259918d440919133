"""R33: which enabled mailboxes a profile's re-test interval makes due for Test & Enable again, and
queuing them at most once, without a duplicate job (on both backends, see tests/backends.py)."""

from __future__ import annotations

from datetime import timedelta

from mbxtui.core.jobs import queue
from mbxtui.core.jobs.retests import DESCRIPTION, due_for_retest, schedule_retests
from mbxtui.core.models import EnablementBatch, EnablementJob, Mailbox, Profile, SyncStatus, utcnow
from mbxtui.core.permissions import Actor
from mbxtui.core.services import profiles, users
from tests.core.support import IMAP_PROFILE

HOURS = 24


def enabled(admin: Actor, email: str, profile: str, *, tested_hours_ago: float, **fields: object) -> int:
    """A user's mailbox on ``profile``, enabled for incoming by a test ``tested_hours_ago``."""
    users.add_user(admin, email.split("@")[0], email)
    tested = utcnow() - timedelta(hours=tested_hours_ago)
    values = {"profile": Profile.get(Profile.name == profile).id, "incoming_enabled": True,
              "test_completed_on": tested, "test_last_attempted_on": tested, **fields}
    Mailbox.update(**values).where(Mailbox.email == email).execute()
    return Mailbox.get(Mailbox.email == email).id


def synced(mailbox_id: int, *, incoming_hours_ago: float | None = None, outgoing_hours_ago: float | None = None) -> None:
    now = utcnow()
    SyncStatus.create(
        mailbox=mailbox_id,
        last_incoming_success=None if incoming_hours_ago is None else now - timedelta(hours=incoming_hours_ago),
        last_outgoing_success=None if outgoing_hours_ago is None else now - timedelta(hours=outgoing_hours_ago))


def test_due_are_the_enabled_mailboxes_not_proven_within_their_profiles_interval(admin, imap_profile):
    profiles.create(admin, **{**IMAP_PROFILE, "name": "never"})  # no interval: never re-tested
    Profile.update(retest_hours=HOURS).where(Profile.name == "imap").execute()

    stale = enabled(admin, "stale@corp.test", "imap", tested_hours_ago=30)
    recent_test = enabled(admin, "recent@corp.test", "imap", tested_hours_ago=2)
    recent_in = enabled(admin, "in@corp.test", "imap", tested_hours_ago=30)
    synced(recent_in, incoming_hours_ago=1)
    recent_out = enabled(admin, "out@corp.test", "imap", tested_hours_ago=30)
    synced(recent_out, incoming_hours_ago=40, outgoing_hours_ago=3)
    old_sync = enabled(admin, "oldsync@corp.test", "imap", tested_hours_ago=30)
    synced(old_sync, incoming_hours_ago=26, outgoing_hours_ago=25)
    enabled(admin, "disabled@corp.test", "imap", tested_hours_ago=30, incoming_enabled=False)
    enabled(admin, "inactive@corp.test", "imap", tested_hours_ago=30, active=False)
    enabled(admin, "noprofile-interval@corp.test", "never", tested_hours_ago=300)
    attempted = enabled(admin, "attempted@corp.test", "imap", tested_hours_ago=30,
                        test_last_attempted_on=utcnow() - timedelta(hours=1))  # a re-test failed an hour ago
    assert Mailbox.get_by_id(attempted).test_completed_on < utcnow() - timedelta(hours=HOURS)

    assert due_for_retest(utcnow()) == [stale, old_sync]
    assert due_for_retest(utcnow() + timedelta(hours=HOURS)) == sorted(
        [stale, recent_test, recent_in, recent_out, old_sync, attempted]), "a day later all of them"

    Profile.update(active=False).where(Profile.name == "imap").execute()
    assert due_for_retest(utcnow()) == [], "an inactive profile's mailboxes are not re-tested"


def test_scheduling_queues_one_job_each_once_and_never_beside_a_queued_one(admin, imap_profile):
    Profile.update(retest_hours=HOURS).where(Profile.name == "imap").execute()
    stale = enabled(admin, "stale@corp.test", "imap", tested_hours_ago=30)
    waiting = enabled(admin, "waiting@corp.test", "imap", tested_hours_ago=30)
    queue.enqueue_retry(EnablementBatch.create(requested_by="alice", requested_on=utcnow(), description="x").id,
                        waiting, "alice", 2, utcnow() + timedelta(minutes=5))
    enabled(admin, "fresh@corp.test", "imap", tested_hours_ago=1)

    assert schedule_retests("worker", utcnow()) == 1
    jobs = list(EnablementJob.select().where(EnablementJob.mailbox == stale))
    assert [(job.state, job.requested_by, job.batch.description) for job in jobs] == [("queued", "worker", DESCRIPTION)]
    assert Mailbox.get_by_id(stale).test_scheduled
    retry = list(EnablementJob.select().where(EnablementJob.mailbox == waiting))
    assert [(job.state, job.attempt) for job in retry] == [("queued", 2)], "the waiting retry is left as it was"

    batches = EnablementBatch.select().count()
    assert schedule_retests("worker", utcnow()) == 0, "already queued: no duplicate"
    assert EnablementBatch.select().count() == batches, "and no empty batch"
    assert EnablementJob.select().where(EnablementJob.mailbox == stale).count() == 1
