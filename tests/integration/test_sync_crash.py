"""A worker killed (SIGKILL: no goodbye, no cleanup) at each point of an IMAP cycle, then a restart
once its lease has run out: no message lost, none recorded twice, none deleted before its commit.
The worker is a real ``mbxtui sync --once`` process; the lab's IMAP front in front of Dovecot holds
one chosen command unanswered, so the process is stopped exactly there (tests/lab/proxies.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mbxtui.core.db import write_transaction
from mbxtui.core.models import Profile
from mbxtui.core.sync.runner import DEFAULT_LEASE_SECONDS
from tests.backends import query
from tests.integration.conftest import Org
from tests.integration.test_sync_incoming import (
    deliver, enable, imap, listed, message, queue_mailbox, server_message_ids, sync,
)

pytestmark = pytest.mark.servers

HELD_WITHIN_SECONDS = 30
MESSAGES = 3


def kill_when_held(org: Org, front, login: str, *, commit_held: bool = False) -> None:
    """Run ``sync --once`` for ``login`` and SIGKILL it as soon as the front holds its command; with
    ``commit_held``, only once the server has answered that command, while the test holds the
    database's write lock (the worker has read everything and waits to commit)."""
    worker = org.cli_start("sync", "--once", "--now", login)
    try:
        held = front.held.wait(HELD_WITHIN_SECONDS)
        assert held, f"the cycle never sent {front.hold} (sent {front.commands}): {worker.poll()}"
        assert worker.poll() is None, "the worker ended by itself"
        if commit_held:
            with write_transaction():
                front.release()
                assert front.answered.wait(HELD_WITHIN_SECONDS), "the server never answered the released command"
                worker.kill()
                worker.wait(10)
        worker.kill()
    finally:
        worker.wait(10)
        worker.stdout.close()
        worker.stderr.close()


def restart_after_the_lease(org: Org):
    """Another cycle, first while the dead worker's lease still runs (it must not take the mailbox
    over), then once it has run out."""
    assert sync(org).mailboxes == [], "the dead worker's lease has not run out: nobody takes its mailbox"
    org.clock.advance(seconds=DEFAULT_LEASE_SECONDS + 60)
    [cycled] = sync(org).mailboxes
    assert cycled.ok, cycled
    return cycled


# (command held, how many of that command pass first, the commit held too, activities committed when killed)
POINTS = {
    "before fetch": ("UID SEARCH", 0, False, 0),
    "mid-fetch, the headers read": ("UID FETCH", 1, False, 0),
    "after the fetch, before the commit": ("UID FETCH", 1, True, 0),
    "after the commit, before delete": ("UID STORE", 0, False, MESSAGES),
    "mid-delete, flagged but not expunged": ("UID EXPUNGE", 0, False, MESSAGES),
    "mid-move to the processed folder": ("UID MOVE", 0, False, MESSAGES),
}


@pytest.mark.parametrize("point", list(POINTS))
def test_an_imap_worker_killed_at_any_point_loses_nothing_records_nothing_twice_deletes_nothing_early(org, point):
    held_command, passing, commit_held, committed = POINTS[point]
    front = org.lab.imap_front()
    moves_to = "Processed" if held_command == "UID MOVE" else None
    org.profile("held", incoming_port=front.port, verify_delivery=False, timeout_seconds=30)
    Profile.update(processed_folder=moves_to).where(Profile.name == "held").execute()
    [login] = org.lab.add_users(1, "imapkill")
    enable(org, queue_mailbox(org, login, profile="held", delete_after_processing=True))
    ids = [f"<imap-kill-{number}@lab.test>" for number in range(MESSAGES)]
    for number, message_id in enumerate(ids):
        deliver(org, login, message("k@outside.test", login, f"Kill {number}", message_id=message_id))

    front.holding(held_command, after=passing)
    kill_when_held(org, front, login, commit_held=commit_held)
    assert listed(org)["total"] == committed
    assert sorted(server_message_ids(org, login)) == ids, "nothing deleted by the killed worker"

    front.hold = None
    cycled = restart_after_the_lease(org)
    assert cycled.messages == MESSAGES - committed
    assert sorted(row["message_id"] for row in listed(org)["rows"]) == ids, "every message recorded"
    assert query(org.db_path, "SELECT count(*) FROM activity_receipt")[0][0] == MESSAGES, "none twice"
    assert query(org.db_path, "SELECT items_total FROM sync_status")[0][0] == MESSAGES
    assert server_message_ids(org, login) == [], "deleted once committed, by the cycle after the restart"
    if moves_to:
        with imap(org, login) as client:
            client.select_folder(moves_to, readonly=True)
            assert len(client.search(["ALL"])) == MESSAGES, "moved there once each"
    assert tuple(query(org.db_path, "SELECT worker, state FROM sync_status")[0]) == (None, "idle")

    org.clock.advance(minutes=1)
    [again] = sync(org).mailboxes
    assert (again.ok, again.messages, again.deleted) == (True, 0, 0), again
    assert listed(org)["total"] == MESSAGES
