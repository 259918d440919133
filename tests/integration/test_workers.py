"""Several `mbxtui worker` processes on one database at once, against the real mail lab: every job
runs exactly once, the connection bound of a profile holds across all of them together (counted
at the servers), and a worker killed with SIGKILL loses nothing: its jobs and its connection
slots go to the others once its lease has run out."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from datetime import datetime

import pytest

from mbxtui.core.sql_lists import placeholders
from tests.backends import query
from tests.integration.conftest import Org, job_states

pytestmark = pytest.mark.servers

LEASE_SECONDS = 2.0
RUN_DEADLINE = 90.0
STOP_TIMEOUT = 20.0
DOOMED_THREADS = 2  # the threads of each worker in the takeover test


def start_workers(org: Org, count: int, *, threads: int = 4) -> list[subprocess.Popen]:
    """Workers that only test: the counters here count test connections (processing beside the
    tests is in test_worker_processing.py)."""
    return [org.cli_start("worker", "--no-process", "--threads", str(threads), "--poll", "0.2",
                          "--lease", str(LEASE_SECONDS)) for _ in range(count)]


def assert_slots_within(org: Org, bound: int) -> None:
    """The slots leased in the database, expired leases included, never add up to more than the bound."""
    leased = query(org.db_path, "SELECT coalesce(sum(slots), 0) FROM connection_lease")[0][0]
    assert leased <= bound, query(org.db_path, "SELECT * FROM connection_lease")


def wait_until_all_done(org: Org, total: int, workers: list[subprocess.Popen], bound: int) -> None:
    # Polled gently: the counting relays run in this process, and a busy poll would delay their
    # seeing a connection close (counting it open beside the next one).
    deadline = time.monotonic() + RUN_DEADLINE
    while job_states(org.db_path).get("done", 0) < total:
        for worker in workers:
            assert worker.poll() is None, f"a worker ended early: {worker.communicate()}"
        assert_slots_within(org, bound)
        assert time.monotonic() < deadline, f"not done in time: {job_states(org.db_path)}"
        time.sleep(0.25)


def stop(workers: list[subprocess.Popen]) -> list[tuple[int, str]]:
    """SIGTERM each worker still running, then its exit status and what it printed on stderr."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    ended = []
    for worker in workers:
        try:
            _, stderr = worker.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, stderr = worker.communicate(timeout=5)
        ended.append((worker.returncode, stderr))
    return ended


def worker_of(pid: int) -> str:
    """The LIKE pattern of a worker process's identity (host:pid:token)."""
    return f"%:{pid}:%"


def timestamp(text: str) -> datetime:
    return datetime.fromisoformat(str(text))


def bounded_profile(org: Org, stack: contextlib.ExitStack, bound: int) -> tuple:
    """Profile "shared" acting for every mailbox with the lab's master user, behind connection
    counters; returns the (IMAPS, SMTP) counters."""
    imaps = stack.enter_context(org.lab.connection_counter("imaps"))
    smtp = stack.enter_context(org.lab.connection_counter("smtp"))
    org.profile("shared", incoming_port=imaps.port, outgoing_port=smtp.port, max_connections=bound,
                incoming_auth="profile", outgoing_auth="profile", username=org.lab.master_login)
    return imaps, smtp


def assert_each_tested_once(org: Org, logins: list[str]) -> None:
    jobs = query(org.db_path, "SELECT mailbox_id, state, outcome, attempt FROM test_job")
    assert len(jobs) == len(logins), "one job per mailbox, none duplicated"
    assert {(job["state"], job["outcome"], job["attempt"]) for job in jobs} == {("done", "passed", 1)}
    assert len({job["mailbox_id"] for job in jobs}) == len(logins)
    connected = [row[0] for row in query(org.db_path, "SELECT mailbox_id FROM alert WHERE code = 'CONNECTED'")]
    assert len(connected) == len(set(connected)) == len(logins), "one alert per mailbox"
    statuses = query(org.db_path, "SELECT overall_status, test_scheduled, count(*) FROM mailbox "
                                  "WHERE profile_id IS NOT NULL GROUP BY overall_status, test_scheduled")
    assert [tuple(row) for row in statuses] == [("success", 0, len(logins))]


def test_three_workers_test_each_mailbox_once_within_the_profiles_bound_together(org):
    bound = 3
    logins = org.lab.add_users(90, prefix="shared")
    with contextlib.ExitStack() as stack:
        imaps, smtp = bounded_profile(org, stack, bound)
        org.bulk_mailboxes(logins, "shared")
        org.schedule(*logins)

        workers = start_workers(org, 3, threads=4)
        try:
            wait_until_all_done(org, len(logins), workers, bound)
        finally:
            ended = stop(workers)

    assert [status for status, _ in ended] == [0, 0, 0], ended
    assert_each_tested_once(org, logins)
    assert [len(org.lab.messages(login)) for login in logins] == [1] * len(logins), \
        "exactly one test message delivered to each mailbox"
    assert imaps.total == smtp.total == len(logins)
    assert max(imaps.max_concurrent, smtp.max_concurrent) <= bound, (imaps, smtp)
    pids = {row[0].split(":")[1] for row in query(org.db_path, "SELECT DISTINCT worker FROM test_job")}
    assert len(pids) >= 2, f"the workers did not share the queue: {pids}"
    assert query(org.db_path, "SELECT * FROM connection_lease") == [], "stopped workers give their slots back"


def test_a_killed_workers_jobs_and_slots_are_taken_over_after_its_lease_without_losing_any(org):
    bound = 2
    logins = org.lab.add_users(200, prefix="takeover")
    with contextlib.ExitStack() as stack:
        imaps, smtp = bounded_profile(org, stack, bound)
        org.bulk_mailboxes(logins, "shared")
        org.schedule(*logins)

        doomed, *survivors = start_workers(org, 3, threads=DOOMED_THREADS)
        try:
            pattern = worker_of(doomed.pid)
            deadline = time.monotonic() + RUN_DEADLINE
            while query(org.db_path, "SELECT count(*) FROM test_job WHERE state = 'done' AND worker LIKE ?",
                        [pattern])[0][0] < 5:
                assert doomed.poll() is None, f"the worker ended early: {doomed.communicate()}"
                assert time.monotonic() < deadline, f"the worker wrote too few results in time: {job_states(org.db_path)}"
                assert_slots_within(org, bound)
                time.sleep(0.1)
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
            held_jobs = query(org.db_path, "SELECT id, lease_until FROM test_job WHERE state = 'running' AND worker LIKE ?",
                              [pattern])
            held_slots = query(org.db_path, "SELECT slots, lease_until FROM connection_lease WHERE worker LIKE ?", [pattern])
            wait_until_all_done(org, len(logins), survivors, bound)
        finally:
            doomed.kill()
            doomed.communicate(timeout=10)
            ended = stop(survivors)

    assert doomed.returncode == -signal.SIGKILL
    assert [status for status, _ in ended] == [0, 0], ended
    assert held_jobs, "the killed worker held no job: nothing to take over"
    assert_each_tested_once(org, logins)
    taken_over = {row["id"]: row for row in query(
        org.db_path, f"SELECT id, worker, started_on FROM test_job WHERE id IN ({placeholders(held_jobs)})",
        [row["id"] for row in held_jobs])}
    # A survivor that waited out a database fault started its run again, and a run's start requeues
    # at once the jobs of a process gone from this host (R21, queue.recover): then earlier is right.
    restarted = any("Test & Enable waits:" in stderr for _, stderr in ended)
    for job_id, lease_until in held_jobs:
        job = taken_over[job_id]
        assert f":{doomed.pid}:" not in job["worker"], "finished by another worker"
        assert restarted or timestamp(job["started_on"]) >= timestamp(lease_until), \
            "taken over only once its lease ran out"
    # The tests the killed worker had started and not yet written ran again elsewhere, and only
    # those: up to its threads in flight, and as many finished ones whose results it was writing
    # (a runner puts the connections it frees back to work before it writes their results, see
    # jobs/runner.py). Each run sends its test message before it opens its IMAP connection.
    held_mailboxes = {row[0] for row in query(
        org.db_path, f"SELECT m.email FROM test_job j JOIN mailbox m ON m.id = j.mailbox_id "
                     f"WHERE j.id IN ({placeholders(held_jobs)})", [row["id"] for row in held_jobs])}
    delivered = {login: len(org.lab.messages(login)) for login in logins}
    ran_again = {login for login, count in delivered.items() if count > 1}
    assert ran_again <= held_mailboxes and max(delivered.values()) <= 2, (ran_again, held_mailboxes)
    runs = sum(delivered.values())
    assert runs - len(logins) <= 2 * DOOMED_THREADS, delivered
    assert len(logins) <= imaps.total <= runs, imaps
    assert runs <= smtp.total <= len(logins) + 2 * DOOMED_THREADS, smtp
    assert max(imaps.max_concurrent, smtp.max_concurrent) <= bound, (imaps, smtp)
    assert query(org.db_path, "SELECT * FROM connection_lease") == [], \
        f"the dead worker's slots ({held_slots}) expired, the others gave theirs back"
