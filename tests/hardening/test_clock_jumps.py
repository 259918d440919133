"""The wall clock jumps by hours under running workers (libfaketime, its offset read from a file
the test rewrites while the worker runs; the monotonic clock left alone, as a real jump leaves it),
or under the core's own clock (core/clock.py, given a wall clock the test moves):

- a worker whose clock jumps 3 h forward takes over none of the jobs a live worker holds (before
  the fix it requeued them at once and tested every mailbox a second time);
- a worker whose clock jumps 3 h back still runs the retry and the poll that fall due a minute
  later (before, both waited for the 3 hours to come round again);
- R16's hour, R32's hour and the stale threshold are measured in time that passed: a forward jump
  neither hides the failures of the last minutes, nor sends a second email, nor makes every
  mailbox stale; a backward one leaves no success ahead of the clock;
- a worker starting after a jump back that no worker saw finds each moment it left ahead (a test,
  an attempt, a retry, R16's failure, the next poll) and brings it back: a mailbox tested and enabled
  just before, never synced, turns stale and is re-tested on time (before: 3 h late).
"""

from __future__ import annotations

import glob
import socket
import subprocess
import threading
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mbxtui.core import clock as core_clock
from mbxtui.core.db import write_transaction
from mbxtui.core.jobs import clock_jumps, failing_profiles, queue, retests
from mbxtui.core.models import Alert, OrgSettings, database
from mbxtui.core.services import mailbox_views, settings
from mbxtui.core.sync import notices
from tests.backends import ON_POSTGRES, query
from tests.integration.conftest import REPO_ROOT, Org, org, secret_store, secrets_dir  # noqa: F401  (fixtures)
from tests.integration.test_sync_incoming import deliver, message

# Debian's libfaketime (scripts/install-test-deps), the build for threaded programs.
LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))), "")
THREE_HOURS = timedelta(hours=3)
DEADLINE = 120.0



# -- a worker on a clock of its own -------------------------------------------------------------

class FakeTime:
    """The offset libfaketime gives a process's wall clock, read again at every reading."""

    def __init__(self, directory: Path) -> None:
        assert LIBFAKETIME, "libfaketime is not installed: run scripts/install-test-deps (Debian package faketime)"
        self.path = directory / "faketime-offset"
        self.set("+0")

    def set(self, offset: str) -> None:
        temporary = self.path.with_suffix(".new")
        temporary.write_text(offset + "\n")
        temporary.replace(self.path)

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": str(self.path),
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_DONT_RESET": "1"}


def start_worker(org: Org, *args: str, fake: FakeTime | None = None) -> subprocess.Popen:
    env = org.cli_env() if fake is None else fake.env(org.cli_env())
    return subprocess.Popen(org.cli_command("worker", *args), env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def end(workers: list[subprocess.Popen]) -> list[str]:
    """Kill the workers (what they were doing is not under test any more); their stderr."""
    errors = []
    for worker in workers:
        worker.kill()
        errors.append(worker.communicate(timeout=10)[1])
    return errors


class SilentServer:
    """Accepts connections on 127.0.0.1 and never says a word: a test on it lasts its profile's
    timeout. Counts the connections (one per test run)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.listener.close()
        self._thread.join(timeout=5)
        for connection in self.accepted:
            connection.close()


def wait_until(condition, what: str, workers: list[subprocess.Popen], deadline: float = DEADLINE) -> None:
    ends = time.monotonic() + deadline
    while not condition():
        for worker in workers:
            assert worker.poll() is None, f"a worker ended early: {worker.communicate()}"
        assert time.monotonic() < ends, f"not in time: {what}"
        time.sleep(0.2)


# -- real workers ---------------------------------------------------------------------------------

@pytest.mark.servers
def test_a_worker_whose_clock_jumps_forward_takes_over_none_of_a_live_workers_jobs(org, tmp_path):
    """On SQLite every process shares the host's clock: a jump reaches the live worker's next
    renewal within a second, and what is checked is the lease meanwhile. On PostgreSQL the workers go
    by the server's clock: the jumping worker is watched for two leases and more."""
    count = 6
    lease = "5" if ON_POSTGRES else "30"
    server = SilentServer()
    try:
        org.profile("silent", incoming_host="127.0.0.1", incoming_port=server.port, incoming_tls="implicit",
                    timeout_seconds=30, max_connections=count, incoming_auth="profile", outgoing_auth="profile",
                    username=org.lab.master_login)
        logins = [f"held{number}@corp.test" for number in range(count)]
        org.bulk_mailboxes(logins, "silent", outgoing="none")
        org.schedule(*logins)
        fake = FakeTime(tmp_path)
        holder = start_worker(org, "--no-process", "--threads", str(count), "--poll", "0.2", "--lease", lease)
        jumper = None
        try:
            wait_until(lambda: len(server.accepted) == count, "the holder's tests in flight", [holder])
            health = _closed_port()
            jumper = start_worker(org, "--no-process", "--threads", str(count), "--poll", "0.2", "--lease", lease,
                                  "--health-port", str(health), fake=fake)
            wait_until(lambda: _healthy(health), "the second worker running", [holder, jumper])
            time.sleep(1.0)  # it renews and looks for expired leases every second, by its clock before the jump
            fake.set("+3h")
            time.sleep(12.0 if ON_POSTGRES else 5.0)  # it renews and looks for expired leases every second
            running = query(org.db_path, "SELECT worker FROM test_job WHERE state = 'running'")
            runs = len(server.accepted)
        finally:
            errors = end([holder] + ([jumper] if jumper else []))
    finally:
        server.close()

    assert runs == count, f"tests run twice: {runs} connections for {count} mailboxes; {errors}"
    assert len(running) == count and {f":{holder.pid}:" in row[0] for row in running} == {True}, \
        "every job still the holder's"
    if ON_POSTGRES:
        assert "jumped" not in errors[1], "the worker went by the server's clock, not its own"
    else:
        assert "the system clock jumped forward by 3:00:00" in errors[1], errors[1]


@pytest.mark.servers
def test_a_worker_whose_clock_jumps_back_runs_the_retry_and_the_poll_due_a_minute_later(org, tmp_path):
    settings.update(org.admin, retry_interval_minutes=1)
    OrgSettings.update(tracking_users="all").execute()
    [login] = org.lab.add_users(1, prefix="jumpback")
    org.profile("polled", verify_delivery=False, incoming_auth="profile", outgoing_auth="profile",
                username=org.lab.master_login, min_polling_minutes=1)
    org.bulk_mailboxes([login], "polled", outgoing="none")
    assert org.test_enable(login).passed == 1
    refused = _closed_port()
    org.profile("refused", incoming_host="127.0.0.1", incoming_port=refused, incoming_auth="profile",
                outgoing_auth="profile", username=org.lab.master_login)
    org.bulk_mailboxes(["retried@corp.test"], "refused", outgoing="none")
    org.schedule("retried@corp.test")
    time.sleep(1.1)  # INTERNALDATE has whole seconds: the mail below arrives after enabling

    fake = FakeTime(tmp_path)
    worker = start_worker(org, "--poll", "0.5", "--lease", "10", fake=fake)
    try:
        attempts = "SELECT count(*) FROM test_job j JOIN mailbox m ON m.id = j.mailbox_id " \
                   "WHERE m.email = 'retried@corp.test' AND j.state = 'done'"
        wait_until(lambda: query(org.db_path, attempts)[0][0] == 1, "the first attempt, refused", [worker])
        wait_until(lambda: query(org.db_path, "SELECT count(*) FROM sync_status WHERE last_incoming_success "
                                              "IS NOT NULL")[0][0] == 1, "the first poll", [worker])
        # The refused attempt raised R16's alert (the profile's only mailbox failing); a mailbox enabled
        # and never synced yet: both dated by the clock before the jump, so 3 h ahead after it.
        database.execute_sql(
            "INSERT INTO sync_status (mailbox_id, state, items_last_cycle, items_total, unresolved_total, "
            "enabled_since) VALUES (?, 'idle', 0, 0, 0, ?)", [org.row("retried@corp.test").id, core_clock.now()])
        assert query(org.db_path, "SELECT count(*) FROM alert WHERE code = 'PROFILE_FAILING'")[0][0] == 1
        fake.set("-3h")
        jumped = time.monotonic()
        deliver(org, login, message("ann@outside.test", login, "After the jump"))
        wait_until(lambda: query(org.db_path, attempts)[0][0] == 2, "the retry due a minute later", [worker], 90.0)
        retried_after = time.monotonic() - jumped
        wait_until(lambda: query(org.db_path, "SELECT count(*) FROM activity_receipt")[0][0] == 1,
                   "the message, read by the poll due a minute later", [worker], 90.0)
        polled_after = time.monotonic() - jumped
    finally:
        [errors] = end([worker])

    assert retried_after < 75 and polled_after < 75, (retried_after, polled_after)
    if not ON_POSTGRES:  # on PostgreSQL the worker goes by the server's clock: nothing jumped
        assert "the system clock jumped back by 3:00:00" in errors, errors
        ahead = (core_clock.now() - THREE_HOURS + timedelta(minutes=1)).isoformat(sep=" ")
        assert query(org.db_path, "SELECT CAST(created_on AS text) FROM alert WHERE created_on > ?", [ahead]) == [], \
            "R16's alert left 3 h ahead: no other for 4 h"
        assert query(org.db_path, "SELECT count(*) FROM sync_status WHERE enabled_since > ?", [ahead])[0][0] == 0, \
            "a mailbox enabled 3 h ahead: not stale for 27 h"


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _healthy(port: int) -> bool:
    """The worker's runner is renewing its leases (its /healthz says ok)."""
    try:
        with _NO_PROXY.open(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


# -- the core's clock -----------------------------------------------------------------------------

class MovableWall:
    """A wall clock the test moves; the monotonic clock moves with it unless it jumps."""

    def __init__(self) -> None:
        self.wall = time.time()
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    def jump(self, seconds: float) -> None:
        self.wall += seconds


@pytest.fixture
def movable():
    wall = MovableWall()
    previous = core_clock.use(core_clock.Clock(lambda: wall.wall, lambda: wall.mono))
    try:
        yield wall
    finally:
        core_clock.use(previous)


def _mailboxes(org: Org, count: int, prefix: str) -> list[int]:
    org.profile(prefix, verify_delivery=False, incoming_auth="profile", outgoing_auth="profile",
                username=org.lab.master_login)
    logins = [f"{prefix}{number}@corp.test" for number in range(count)]
    org.bulk_mailboxes(logins, prefix, outgoing="none")
    ids = [org.row(login).id for login in logins]
    database.execute_sql(f"UPDATE mailbox SET incoming_enabled = 1 WHERE id IN ({','.join('?' * count)})", ids)
    return ids


@pytest.mark.servers
def test_r16_counts_the_failures_of_the_last_hour_across_a_forward_jump_and_alerts_once(org, movable):
    ids = _mailboxes(org, 4, "r16")
    profile_id = database.execute_sql("SELECT profile_id FROM mailbox WHERE id = ?", [ids[0]]).fetchone()[0]
    with write_transaction():
        for mailbox_id in ids[:2]:
            failing_profiles.failed(mailbox_id, profile_id, ["incoming"], failing_profiles.TEST, core_clock.now())
    movable.advance(60)
    movable.jump(THREE_HOURS.total_seconds())
    movable.advance(60)
    now = core_clock.now()
    with write_transaction():
        failing_profiles.failed(ids[2], profile_id, ["incoming"], failing_profiles.TEST, now)
        failing_profiles.alert_failing_profiles([profile_id], now)
    alerts = list(Alert.select().where(Alert.code == "PROFILE_FAILING"))
    assert len(alerts) == 1, "3 of 4 failed within two minutes of time that passed"

    movable.advance(60)
    movable.jump(THREE_HOURS.total_seconds())
    movable.advance(60)
    now = core_clock.now()
    with write_transaction():
        failing_profiles.failed(ids[3], profile_id, ["incoming"], failing_profiles.TEST, now)
        failing_profiles.alert_failing_profiles([profile_id], now)
    assert Alert.select().where(Alert.code == "PROFILE_FAILING").count() == 1, "one alert an hour"


@pytest.mark.servers
def test_a_forward_jump_makes_no_fresh_mailbox_stale_and_a_backward_one_leaves_no_success_ahead(org, movable):
    fresh, old = _mailboxes(org, 2, "stale")
    start = core_clock.now()
    for mailbox_id, age in ((fresh, timedelta(hours=23)), (old, timedelta(hours=25))):
        database.execute_sql(
            "INSERT INTO sync_status (mailbox_id, state, items_last_cycle, items_total, unresolved_total, "
            "enabled_since, last_incoming_success) VALUES (?, 'idle', 0, 0, 0, ?, ?)",
            [mailbox_id, start - timedelta(days=2), start - age])

    def stale() -> set[int]:
        sql, params = mailbox_views.stale_ids(core_clock.now())
        return {row[0] for row in database.execute_sql(sql, params).fetchall()}

    assert stale() == {old}
    movable.advance(60)
    movable.jump(THREE_HOURS.total_seconds())
    movable.advance(60)
    assert stale() == {old}, "a forward jump of 3 h makes the mailbox synced 23 h ago stale"

    database.execute_sql("UPDATE sync_status SET last_incoming_success = ? WHERE mailbox_id = ?",
                         [core_clock.now(), fresh])
    movable.jump(-2 * THREE_HOURS.total_seconds())
    movable.advance(1)
    now = core_clock.now()
    assert core_clock.current().backward_jump() == pytest.approx(2 * THREE_HOURS.total_seconds())
    assert clock_jumps.left_ahead(now), "what a worker starting now would find"
    with write_transaction():
        assert clock_jumps.bring_back(now, 60) >= 1
    assert not clock_jumps.left_ahead(now)
    ahead = query(org.db_path, "SELECT count(*) FROM sync_status WHERE last_incoming_success > ?",
                  [now.isoformat(sep=" ")])
    assert ahead[0][0] == 0, "a success left hours ahead of the clock"


@pytest.mark.servers
def test_after_a_backward_jump_r16_alerts_an_hour_on_and_a_mailbox_never_synced_turns_stale(org, movable):
    ids = _mailboxes(org, 2, "backr16")
    profile_id = database.execute_sql("SELECT profile_id FROM mailbox WHERE id = ?", [ids[0]]).fetchone()[0]
    database.execute_sql(
        "INSERT INTO sync_status (mailbox_id, state, items_last_cycle, items_total, unresolved_total, "
        "enabled_since) VALUES (?, 'idle', 0, 0, 0, ?)", [ids[0], core_clock.now()])

    def fail_all() -> int:
        now = core_clock.now()
        with write_transaction():
            for mailbox_id in ids:
                failing_profiles.failed(mailbox_id, profile_id, ["incoming"], failing_profiles.TEST, now)
            failing_profiles.alert_failing_profiles([profile_id], now)
        return Alert.select().where(Alert.code == "PROFILE_FAILING").count()

    assert fail_all() == 1
    movable.jump(-THREE_HOURS.total_seconds())
    movable.advance(1)
    now = core_clock.now()
    assert core_clock.current().backward_jump() == pytest.approx(THREE_HOURS.total_seconds())
    assert clock_jumps.left_ahead(now), "the alert ahead, as a worker starting now would find it"
    with write_transaction():
        clock_jumps.bring_back(now, 60)
    assert not clock_jumps.left_ahead(now)
    movable.advance(3601)
    assert fail_all() == 2, "R16's next alert an hour on (the first, left 3 h ahead, held it back 4 h)"

    def stale() -> set[int]:
        sql, params = mailbox_views.stale_ids(core_clock.now())
        return {row[0] for row in database.execute_sql(sql, params).fetchall()}

    movable.advance(23 * 3600)
    assert stale() == {ids[0]}, "never synced 24 h after it was enabled (enabled 3 h ahead, it looked fresh)"


@pytest.mark.servers
def test_r33_retests_a_day_after_the_last_test_across_a_jump_either_way(org, movable):
    [mailbox_id] = _mailboxes(org, 1, "retest")
    database.execute_sql("UPDATE profile SET retest_hours = 24 WHERE name = 'retest'")

    def tested(ago: timedelta) -> None:
        moment = core_clock.now() - ago
        database.execute_sql("UPDATE mailbox SET test_completed_on = ?, test_last_attempted_on = ? WHERE id = ?",
                             [moment, moment, mailbox_id])

    tested(timedelta(hours=22))
    movable.advance(60)
    movable.jump(THREE_HOURS.total_seconds())
    movable.advance(60)
    assert retests.due_for_retest(core_clock.now()) == [], "tested 22 h ago: a 3 h forward jump made it due"

    movable.advance(24 * 3600)  # the forward jump long past
    tested(timedelta(0))
    movable.jump(-THREE_HOURS.total_seconds())
    movable.advance(1)
    now = core_clock.now()
    assert core_clock.current().backward_jump() == pytest.approx(THREE_HOURS.total_seconds())
    with write_transaction():
        clock_jumps.bring_back(now, 60)
    movable.advance(24 * 3600 + 60)
    assert retests.due_for_retest(core_clock.now()) == [mailbox_id], "tested a day ago (its test left 3 h ahead)"


@pytest.mark.servers
def test_a_worker_starting_after_a_jump_back_it_did_not_see_brings_back_what_the_jump_left(org, movable):
    [mailbox_id] = _mailboxes(org, 1, "unseen")
    database.execute_sql("UPDATE profile SET retest_hours = 24 WHERE name = 'unseen'")
    tested = core_clock.now()  # tested and enabled just before the jump, never synced; nothing else written
    database.execute_sql("UPDATE mailbox SET test_completed_on = ?, test_last_attempted_on = ? WHERE id = ?",
                         [tested, tested, mailbox_id])
    database.execute_sql(
        "INSERT INTO sync_status (mailbox_id, state, items_last_cycle, items_total, unresolved_total, "
        "enabled_since) VALUES (?, 'idle', 0, 0, 0, ?)", [mailbox_id, tested])
    movable.jump(-THREE_HOURS.total_seconds())
    core_clock.use(core_clock.Clock(lambda: movable.wall, lambda: movable.mono))  # a worker started after it
    now = core_clock.now()
    queue.recover("unseen-worker", now)  # as a worker starts
    assert not clock_jumps.left_ahead(now)
    movable.advance(24 * 3600 + 60)
    sql, params = mailbox_views.stale_ids(core_clock.now())
    assert [row[0] for row in database.execute_sql(sql, params)] == [mailbox_id], (
        "never synced 24 h after it was enabled (left 3 h ahead, it looked fresh)")
    assert retests.due_for_retest(core_clock.now()) == [mailbox_id], "tested a day ago (left 3 h ahead)"

    # Each other moment a jump back leaves ahead, alone, is found by a worker starting, and brought back.
    now = core_clock.now()
    ahead = now + THREE_HOURS
    profile_id = database.execute_sql("SELECT profile_id FROM mailbox WHERE id = ?", [mailbox_id]).fetchone()[0]
    left = {
        "a failed test's attempt": lambda: database.execute_sql(
            "UPDATE mailbox SET test_last_attempted_on = ? WHERE id = ?", [ahead, mailbox_id]),
        "a retry": lambda: database.execute_sql(
            "UPDATE mailbox SET postponed_until = ? WHERE id = ?", [ahead, mailbox_id]),
        "R16's failure": lambda: failing_profiles.failed(mailbox_id, profile_id, ["incoming"],
                                                         failing_profiles.TEST, ahead),
        "the next poll": lambda: database.execute_sql(
            "UPDATE sync_status SET next_due = ? WHERE mailbox_id = ?", [ahead, mailbox_id]),
        "an owner's notice": lambda: notices.claim(notices.MAILBOX, mailbox_id, ahead),
        "an alert's dismissal": lambda: Alert.create(level="information", code="CONNECTED", text="connected",
                                                     created_on=now, dismissed=True, dismissed_on=ahead),
    }
    for what, write in left.items():
        with write_transaction():
            write()
        assert clock_jumps.left_ahead(now), f"{what} left 3 h ahead"
        with write_transaction():
            assert clock_jumps.bring_back(now, 60) >= 1, what
        assert not clock_jumps.left_ahead(now), what
    # A claim's end and the sync status's other moments, each found from an index (schema step 18).
    moments = ("lease_until", "last_cycle_started", "last_cycle_finished", "last_outgoing_success",
               "stale_alerted_on", "enabled_since")
    with write_transaction():
        database.execute_sql(f"UPDATE sync_status SET worker = 'gone', {', '.join(f'{m} = ?' for m in moments)} "
                             "WHERE mailbox_id = ?", [ahead] * len(moments) + [mailbox_id])
    with write_transaction():
        assert clock_jumps.bring_back(now, 60) == 2, "the claim's end, and the other moments in one statement"
    brought = database.execute_sql(f"SELECT {', '.join(moments)} FROM sync_status WHERE mailbox_id = ?",
                                   [mailbox_id]).fetchone()
    assert [clock_jumps._moment(value) for value in brought] == [now + timedelta(seconds=60)] + [now] * 5, brought
    # A job's retry while it waits, and its lease while it runs, each found by its state.
    email = database.execute_sql("SELECT email FROM mailbox WHERE id = ?", [mailbox_id]).fetchone()[0]
    org.schedule(email)
    retry_minutes = database.execute_sql("SELECT retry_interval_minutes FROM org_settings").fetchone()[0]
    for state, column, until in (("queued", "not_before", now + timedelta(minutes=retry_minutes)),
                                 ("running", "lease_until", now + timedelta(seconds=60))):
        with write_transaction():
            database.execute_sql(f"UPDATE test_job SET state = ?, worker = 'gone', {column} = ? WHERE mailbox_id = ?",
                                 [state, ahead, mailbox_id])
        with write_transaction():
            assert clock_jumps.bring_back(now, 60) == 1, column
        [value] = database.execute_sql(f"SELECT {column} FROM test_job WHERE mailbox_id = ?", [mailbox_id]).fetchone()
        assert clock_jumps._moment(value) == until, (column, value)


@pytest.mark.servers
def test_an_owners_email_stays_once_an_hour_across_a_forward_jump(org, movable):
    [mailbox_id] = _mailboxes(org, 1, "notice")
    with write_transaction():
        assert notices.claim(notices.MAILBOX, mailbox_id, core_clock.now())
    movable.advance(60)
    movable.jump(THREE_HOURS.total_seconds())
    movable.advance(60)
    with write_transaction():
        assert not notices.claim(notices.MAILBOX, mailbox_id, core_clock.now()), "a second email two minutes later"
    movable.advance(3600)
    with write_transaction():
        assert notices.claim(notices.MAILBOX, mailbox_id, core_clock.now()), "the next one an hour later"


# -- a console or the CLI on a host whose clock is wrong ------------------------------------------

def _synced_ago(org: Org, ages: dict[int, timedelta]) -> None:
    start = core_clock.now()
    for mailbox_id, age in ages.items():
        database.execute_sql(
            "INSERT INTO sync_status (mailbox_id, state, items_last_cycle, items_total, unresolved_total, "
            "enabled_since, last_incoming_success) VALUES (?, 'idle', 0, 0, 0, ?, ?)",
            [mailbox_id, start - timedelta(days=2), start - age])


@pytest.mark.skipif(not ON_POSTGRES, reason="on SQLite every process shares the host's clock")
def test_the_cli_on_a_host_whose_clock_is_hours_off_goes_by_the_servers_clock(org, tmp_path):
    """Before the fix, a CLI 3 h ahead saw a mailbox synced 23 h ago as stale, one 3 h behind saw
    none synced 25 h ago as stale, and an email it queued was dated 3 h off."""
    fresh, old = _mailboxes(org, 2, "hostclock")
    _synced_ago(org, {fresh: timedelta(hours=23), old: timedelta(hours=25)})
    database.execute_sql("UPDATE mailbox SET outgoing_method = 'server_side_sync' WHERE id = ?", [fresh])
    fake = FakeTime(tmp_path)
    env = fake.env(org.cli_env())

    def cli(*args: str) -> str:
        done = subprocess.run(org.cli_command(*args), env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        assert "jumped" not in done.stderr, done.stderr
        return done.stdout

    for offset in ("+3h", "-3h"):
        fake.set(offset)
        listed = cli("mailbox", "list", "--view", "stale")
        assert "hostclock1@corp.test" in listed and "hostclock0@corp.test" not in listed, (offset, listed)
    cli("email", "send", "--from", "hostclock0@corp.test", "--to", "ann@outside.test", "--subject", "Dated",
        "--body", "by the server")
    [(created,)] = query(org.db_path, "SELECT CAST(created_on AS text) FROM email_activity WHERE subject = 'Dated'")
    off = abs(datetime.fromisoformat(created) - core_clock.now())
    assert off < timedelta(minutes=1), f"an email queued by a host 3 h behind is dated {off} off the server's clock"
