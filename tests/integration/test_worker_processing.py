"""`mbxtui worker` processes the enabled mailboxes beside Test & Enable (issue 12, "who runs it"),
as child processes against the real mail lab: mail put into the lab's inboxes is recorded once,
however many workers run; SIGTERM in the middle of a pass leaves no mailbox claimed and no
connection slot held; `--no-process` reads nothing."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from datetime import timedelta

import pytest

from mbxtui.core.models import Mailbox, OrgSettings, Profile, utcnow
from tests.backends import query
from tests.integration.conftest import Org
from tests.integration.test_sync_incoming import deliver, message

pytestmark = pytest.mark.servers

DEADLINE = 90.0
STOP_TIMEOUT = 30.0
READ_LINE = re.compile(r"^(\S+): (\d+) read, (\d+) recorded", re.MULTILINE)


def receipts(org: Org) -> int:
    return query(org.db_path, "SELECT count(*) FROM activity_receipt")[0][0]


def wait_for(org: Org, condition, what: str, workers: list[subprocess.Popen], *, bound: int | None = None) -> None:
    """Poll ``condition`` while the workers run; ``bound``: meanwhile the connection slots leased
    in the database (tests and processing, every worker) never add up to more than it."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        for worker in workers:
            assert worker.poll() is None, f"a worker ended early: {worker.communicate()}"
        if bound is not None:
            leased = query(org.db_path, "SELECT coalesce(sum(slots), 0) FROM connection_lease")[0][0]
            assert leased <= bound, query(org.db_path, "SELECT * FROM connection_lease")
        assert time.monotonic() < deadline, f"not in time: {what}"
        time.sleep(0.2)


def terminate(workers: list[subprocess.Popen]) -> list[tuple[int, str, str, float]]:
    """SIGTERM each, then (exit status, stdout, stderr, seconds it took to end) of each."""
    started = time.monotonic()
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    ended = []
    for worker in workers:
        try:
            out, err = worker.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            out, err = worker.communicate(timeout=5)
        ended.append((worker.returncode, out, err, time.monotonic() - started))
    return ended


def assert_nothing_held(org: Org) -> None:
    assert query(org.db_path, "SELECT mailbox_id, worker FROM sync_status WHERE worker IS NOT NULL "
                              "OR lease_until IS NOT NULL OR state = 'processing'") == [], "no mailbox left claimed"
    assert query(org.db_path, "SELECT * FROM connection_lease") == [], "no connection slot left held"


def enabled_mailboxes(org: Org, count: int, prefix: str, **profile: object) -> list[str]:
    """``count`` lab users with enabled mailboxes on profile "proc" (profile credentials, receiving
    only), tested by the runner of this process; users' mail is tracked whole (R27)."""
    OrgSettings.update(tracking_users="all").execute()
    logins = org.lab.add_users(count, prefix=prefix)
    org.profile("proc", verify_delivery=False, incoming_auth="profile", outgoing_auth="profile",
                username=org.lab.master_login, **profile)
    org.bulk_mailboxes(logins, "proc", outgoing="none")
    summary = org.test_enable(*logins)
    assert summary.passed == count
    time.sleep(1.1)  # INTERNALDATE has whole seconds: the mail below arrives after enabling
    return logins


def read_per_mailbox(*stdouts: str) -> dict[str, int]:
    read: dict[str, int] = {}
    for stdout in stdouts:
        for email, messages, _ in READ_LINE.findall(stdout):
            read[email] = read.get(email, 0) + int(messages)
    return read


def test_the_worker_processes_new_mail_while_it_runs_and_logs_one_line_per_mailbox_that_read(org):
    [login] = enabled_mailboxes(org, 1, "wproc")
    deliver(org, login, message("ann@outside.test", login, "Before the worker"))

    worker = org.cli_start("worker", "--poll", "0.2")
    try:
        wait_for(org, lambda: receipts(org) == 1, "the first message recorded", [worker])
        deliver(org, login, message("bob@outside.test", login, "While it runs"))
        wait_for(org, lambda: receipts(org) == 2, "the second message recorded", [worker])
    finally:
        [(status, out, err, seconds)] = terminate([worker])

    assert status == 0, err
    assert read_per_mailbox(out) == {login: 2}
    assert f"{login}: 1 read, 1 recorded" in out
    subjects = sorted(row[0] for row in query(org.db_path, "SELECT subject FROM email_activity"))
    assert subjects == ["Before the worker", "While it runs"]
    assert "processed" in err and "2 message(s) read" in err, err
    assert_nothing_held(org)


def test_no_process_runs_tests_but_reads_no_mailbox(org):
    [login] = enabled_mailboxes(org, 1, "wnoproc")
    deliver(org, login, message("ann@outside.test", login, "Left unread"))

    done = org.cli("worker", "--once", "--no-process")
    assert done.returncode == 0, done.stderr
    assert receipts(org) == 0
    assert query(org.db_path, "SELECT count(*) FROM sync_status WHERE last_cycle_started IS NOT NULL")[0][0] == 0, \
        "no cycle even started"

    done = org.cli("worker", "--once")
    assert done.returncode == 0, done.stderr
    assert receipts(org) == 1, "the same worker without --no-process reads it"
    assert done.stdout.strip() == f"{login}: 1 read, 1 recorded"


def test_sigterm_in_the_middle_of_a_pass_ends_it_soon_leaving_nothing_claimed_and_losing_nothing(org):
    # One connection at a time and a few messages each: the pass lasts long enough to stop inside it.
    logins = enabled_mailboxes(org, 30, "wterm", max_connections=1)
    for login in logins:
        for number in range(3):
            deliver(org, login, message("ann@outside.test", login, f"Message {number}"))

    worker = org.cli_start("worker", "--poll", "0.2")
    try:
        wait_for(org, lambda: 0 < receipts(org), "the pass under way", [worker])
        claimed = query(org.db_path, "SELECT count(*) FROM sync_status WHERE worker IS NOT NULL")[0][0]
    finally:
        [(status, out, err, seconds)] = terminate([worker])

    assert claimed > 1, "stopped too late to prove anything"
    assert status == 0, err
    assert seconds < 15, f"took {seconds:.1f} s to stop"
    assert_nothing_held(org)
    recorded_before = receipts(org)
    assert recorded_before < len(logins) * 3, "the pass was stopped before its end"

    done = org.cli("worker", "--once")
    assert done.returncode == 0, done.stderr
    assert receipts(org) == len(logins) * 3, "what was not read is read by the next worker"
    assert read_per_mailbox(out, done.stdout) == {login: 3 for login in logins}, "each message read once"
    assert_nothing_held(org)


def test_two_workers_never_cycle_one_mailbox_at_once_and_stay_within_the_bound_with_tests(org):
    bound = 3
    with contextlib.ExitStack() as stack:
        imaps = stack.enter_context(org.lab.connection_counter("imaps"))
        logins = enabled_mailboxes(org, 40, "wtwo", incoming_port=imaps.port, max_connections=bound)
        for login in logins:
            deliver(org, login, message("ann@outside.test", login, "One"))
            deliver(org, login, message("bob@outside.test", login, "Two"))
        # Tests for the same profile at the same time: they share its bound with processing (R23).
        testing = org.lab.add_users(10, prefix="wtwotest")
        org.bulk_mailboxes(testing, "proc", outgoing="none")
        org.schedule(*testing)

        workers = [org.cli_start("worker", "--poll", "0.2", "--sync-threads", "4", "--threads", "4")
                   for _ in range(2)]
        try:
            wait_for(org, lambda: receipts(org) == len(logins) * 2, "every message recorded", workers, bound=bound)
            wait_for(org, lambda: query(org.db_path, "SELECT count(*) FROM test_job WHERE state <> 'done'")[0][0] == 0,
                     "the tests done", workers, bound=bound)
        finally:
            ended = terminate(workers)

    assert [status for status, *_ in ended] == [0, 0], ended
    read = read_per_mailbox(*(out for _, out, _, _ in ended))
    assert read == {login: 2 for login in logins}, "each message read by one worker, once"
    assert imaps.max_concurrent <= bound, imaps
    assert_nothing_held(org)


def test_the_worker_retests_mailboxes_not_proven_within_their_profiles_interval_once(org):
    logins = enabled_mailboxes(org, 2, "wretest")
    long_ago = utcnow() - timedelta(hours=5)
    Profile.update(retest_hours=4).where(Profile.name == "proc").execute()
    Mailbox.update(test_completed_on=long_ago, test_last_attempted_on=long_ago).where(
        Mailbox.email == logins[0]).execute()

    done = org.cli("worker", "--once", "--no-process")
    assert done.returncode == 0, done.stderr
    assert "re-test queued for 1 mailbox(es)" in done.stderr
    assert done.stdout.splitlines() == [f"{logins[0]}: passed"]
    assert Mailbox.get(Mailbox.email == logins[0]).test_completed_on > long_ago

    again = org.cli("worker", "--once", "--no-process")
    assert "re-test" not in again.stderr and again.stdout == "", "proven again: not re-tested before the interval"


def test_the_worker_sends_queued_email_once_and_logs_it(org):
    from mbxtui.core.services.outgoing import queue_email
    from tests.integration.test_sync_outgoing import from_outside, sender_mailbox

    org.profile("lab", verify_delivery=False)
    sender, recipient = org.lab.add_users(2, "wsend")
    sender_mailbox(org, sender)
    activity_id = queue_email(org.admin, sender, [recipient], [], "Sent by the worker", "Body")

    def state() -> str:
        return query(org.db_path, "SELECT state FROM email_activity WHERE id = ?", [activity_id])[0][0]

    worker = org.cli_start("worker", "--poll", "0.2")
    try:
        wait_for(org, lambda: state() == "sent", "the queued email sent", [worker])
    finally:
        [(status, out, err, seconds)] = terminate([worker])

    assert status == 0, err
    assert f"{sender}: 1 sent, 0 refused, 0 uncertain" in out, out
    assert [m["Subject"] for m in from_outside(org, recipient)] == ["Sent by the worker"]
    assert_nothing_held(org)
