"""`mbxtui worker --health-port` (issue 14, readiness for operators), as child processes against the
real mail lab, scraped over HTTP on 127.0.0.1: /metrics moves with real tests and real mail,
/healthz answers 503 with the reason when the database goes away or the worker is stopping, and
SIGTERM in the middle of a batch finishes what is in flight, hands back the rest and exits 0, so
that the next worker tests each mailbox once."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mbxtui.core.models import Alert, EnablementJob, OrgSettings, Profile
from tests.backends import ON_POSTGRES, query
from tests.integration.conftest import Org, job_states
from tests.integration.test_sync_incoming import deliver, message
from tests.integration.test_worker_processing import assert_nothing_held, receipts, terminate, wait_for

pytestmark = pytest.mark.servers

READY_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str]:
    """The status and body of GET http://127.0.0.1:PORT/PATH."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def healthz(port: int) -> tuple[int, dict]:
    status, body = get(port, "/healthz")
    return status, json.loads(body)


def metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed as Prometheus parses it: (name, labels) -> value."""
    status, body = get(port, "/metrics")
    assert status == 200, body
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body) for sample in family.samples}


def serving(port: int, worker) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        assert worker.poll() is None, f"the worker ended early: {worker.communicate()}"
        try:
            get(port, "/healthz")
            return
        except OSError:
            assert time.monotonic() < deadline, "the health endpoints never answered"
            time.sleep(0.1)


def test_metrics_move_with_real_tests_and_mail_and_healthz_says_the_worker_is_fit(org):
    OrgSettings.update(tracking_users="all").execute()
    logins = org.lab.add_users(3, prefix="hmetrics")
    org.profile("proc", verify_delivery=False, incoming_auth="profile", outgoing_auth="profile",
                username=org.lab.master_login)
    org.bulk_mailboxes(logins, "proc", outgoing="none")
    org.schedule(*logins)
    profile_id = Profile.get(Profile.name == "proc").id
    port = free_port()

    worker = org.cli_start("worker", "--poll", "0.2", "--health-port", str(port))
    try:
        serving(port, worker)
        wait_for(org, lambda: job_states(org.db_path) == {"done": 3}, "the tests done", [worker])
        time.sleep(1.1)  # INTERNALDATE has whole seconds: the mail below arrives after enabling
        for number, login in enumerate(logins):
            for copy in range(number + 1):
                deliver(org, login, message("ann@outside.test", login, f"Message {copy}"))
        wait_for(org, lambda: receipts(org) == 6, "every message recorded", [worker])
        # The pass that recorded the last message may still be ending: its counts arrive with its end.
        deadline = time.monotonic() + READY_TIMEOUT
        while (seen := metrics(port))[("mbxtui_messages_recorded_total", ())] < 6:
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
        time.sleep(1.5)
        later = metrics(port)
        status, health = healthz(port)
    finally:
        [(stopped, out, err, _)] = terminate([worker])

    assert stopped == 0, err
    assert seen[("mbxtui_test_jobs_total", (("outcome", "passed"),))] == 3
    assert seen[("mbxtui_test_jobs_total", (("outcome", "failed"),))] == 0
    assert seen[("mbxtui_messages_read_total", ())] == seen[("mbxtui_messages_recorded_total", ())] == 6
    assert seen[("mbxtui_cycles_total", (("result", "ok"),))] >= 3
    assert seen[("mbxtui_cycles_total", (("result", "failed"),))] == 0
    assert ("mbxtui_connections_in_use", (("profile_id", str(profile_id)),)) in seen, "the profile's connections"
    assert later[("mbxtui_lease_renewals_total", ())] > seen[("mbxtui_lease_renewals_total", ())] > 0, \
        "a live worker renews its leases"
    assert 0 <= later[("mbxtui_cycle_lag_seconds", ())] < 5, "passes keep coming every --poll"
    assert later[("mbxtui_lease_age_seconds", ())] < 5
    assert status == 200, health
    assert health["status"] == "ok" and health["lease_age_seconds"] < 5
    assert "health: http://127.0.0.1:" in err
    assert_nothing_held(org)


def test_healthz_is_503_naming_the_database_while_it_is_away_and_200_again_after(org, databases, tmp_path):
    port = free_port()
    worker = org.cli_start("worker", "--no-process", "--poll", "0.2", "--health-port", str(port))
    away = tmp_path.with_name(tmp_path.name + "-away")
    try:
        serving(port, worker)
        assert healthz(port)[0] == 200
        if ON_POSTGRES:  # new connections refused, as by a server that stopped
            name = str(org.db_path).rsplit("/", 1)[-1]
            databases.server.admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        else:  # the file's directory gone (root reads an unreadable one all the same)
            tmp_path.rename(away)
        try:
            status, health = healthz(port)
        finally:
            if ON_POSTGRES:
                databases.server.admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            else:
                away.rename(tmp_path)
        again, _ = healthz(port)
    finally:
        if away.exists():
            shutil.move(away, tmp_path)
        [(stopped, out, err, _)] = terminate([worker])

    assert status == 503, health
    assert health["status"] == "unavailable"
    assert health["reason"].startswith("the database cannot be read: "), health
    assert ("not currently accepting connections" if ON_POSTGRES else "unable to open database file") \
        in health["reason"], health
    assert again == 200
    assert stopped == 0, err


def test_a_port_in_use_is_refused_in_one_sentence(org):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = org.cli("worker", "--once", "--health-port", str(port))

    assert done.returncode == 1
    assert done.stderr.strip() == (f"mbxtui: --health-port: port {port} on 127.0.0.1 is already in use: "
                                   "choose another port or stop what listens there")


BATCH = 40


def test_sigterm_mid_batch_finishes_what_is_in_flight_hands_back_the_rest_and_exits_0(org):
    logins = org.lab.add_users(BATCH, prefix="hterm")
    front = org.lab.imap_front()
    # One test is held at the server after a few have passed; two connections at a time keep most
    # of the batch queued. A timeout above the hold: the held test must finish, not time out.
    org.profile("term", max_connections=2, incoming_auth="profile", outgoing_auth="profile",
                username=org.lab.master_login, incoming_port=front.port, verify_delivery=False,
                timeout_seconds=30)
    org.bulk_mailboxes(logins, "term", outgoing="none")
    front.holding("EXAMINE", after=5)
    org.schedule(*logins)
    port = free_port()

    worker = org.cli_start("worker", "--no-process", "--threads", "4", "--poll", "0.2", "--health-port", str(port))
    try:
        serving(port, worker)
        assert front.held.wait(READY_TIMEOUT), "no test reached the held command"
        in_use = metrics(port)[("mbxtui_connections_in_use", (("profile_id", str(Profile.get(Profile.name == "term").id)),))]
        worker.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + READY_TIMEOUT
        while (answer := healthz(port))[0] == 200:
            assert time.monotonic() < deadline, "healthz never said the worker is stopping"
            time.sleep(0.05)
        # The jobs claimed but not started are handed back at once, the other connection's test
        # ends by itself, and the held one stays in flight.
        while len(running := query(org.db_path, "SELECT mailbox_id FROM test_job WHERE state = 'running'")) != 1:
            assert time.monotonic() < deadline, f"in flight: {running}"
            time.sleep(0.05)
        assert worker.poll() is None, "the worker waits for the test in flight"
        [[held_mailbox]] = running
        front.release()
        released = time.monotonic()
        out, err = worker.communicate(timeout=READY_TIMEOUT)
        exited_after = time.monotonic() - released
    finally:
        front.release()
        if worker.poll() is None:
            worker.kill()
            worker.communicate()

    assert in_use >= 1, "the held test's connection is counted"
    assert answer[0] == 503 and "stopping" in answer[1]["reason"], answer
    assert worker.returncode == 0, err
    assert exited_after < 10, f"took {exited_after:.1f} s after the last test answered"
    states = job_states(org.db_path)
    assert set(states) <= {"done", "queued"}, f"nothing left running: {states}"
    done_before = states["done"]
    assert [tuple(row) for row in query(org.db_path, "SELECT state, outcome FROM test_job WHERE mailbox_id = ?",
                                        [held_mailbox])] == [("done", "passed")], "the test in flight was finished"
    assert 6 <= done_before < BATCH, "stopped in the middle, with the held test finished"
    assert query(org.db_path, "SELECT count(*) FROM test_job WHERE worker IS NOT NULL AND state <> 'done'")[0][0] == 0
    assert_nothing_held(org)

    resumed = org.cli("worker", "--once", "--no-process", "--threads", "4")
    assert resumed.returncode == 0, resumed.stderr
    assert f"tested {BATCH - done_before}:" in resumed.stderr, "the next worker tests only what was handed back"
    jobs = list(EnablementJob.select(EnablementJob.mailbox, EnablementJob.state, EnablementJob.outcome,
                                     EnablementJob.attempt))
    assert len(jobs) == BATCH and len({job.mailbox_id for job in jobs}) == BATCH, "no job duplicated"
    assert {(job.state, job.outcome, job.attempt) for job in jobs} == {("done", "passed", 1)}
    connected = [alert.mailbox_id for alert in Alert.select().where(Alert.code == "CONNECTED")]
    assert len(connected) == len(set(connected)) == BATCH, "each mailbox tested once"
