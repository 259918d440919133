"""The command line runs Test & Enable as an operator would (`test-enable`, `worker`), in child
processes against the real mail lab, with secrets in the encrypted file unlocked from the
environment; and a worker killed in the middle of a batch is resumed without losing or repeating a
result (R21)."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from mbxtui.core.models import Alert, EnablementJob, Mailbox
from mbxtui.core.services import credentials, profiles
from tests.integration.conftest import Org, job_states, stored_bytes

pytestmark = pytest.mark.servers

ALICE = "alice@example.test"
BOB = "bob@example.test"
JOSE = "jose@example.test"
EXIT_TEST_FAILED = 3
RESUME_MAILBOXES = 200
RESULTS_BEFORE_KILL = 20
KILL_DEADLINE = 30.0


def run_json(org: Org, *args: str) -> tuple[int, dict, str]:
    """Exit status, parsed JSON and everything printed (both streams)."""
    done = org.cli(*args, "--json")
    printed = done.stdout + done.stderr
    assert done.stdout.strip(), f"no JSON (exit {done.returncode}): {done.stderr}"
    return done.returncode, json.loads(done.stdout), printed


def test_test_enable_wait_prints_each_result_and_exits_0_when_all_pass_3_when_any_fail(org):
    org.profile("lab")
    for email in (ALICE, BOB, JOSE):
        org.mailbox(email, "lab")
    secrets = [org.lab.users[email] for email in (ALICE, BOB, JOSE)]

    status, output, printed = run_json(org, "test-enable", ALICE, JOSE, "--wait")

    assert status == 0, printed
    assert output["progress"]["passed"] == output["progress"]["total"] == 2
    by_email = {result["email"]: result for result in output["results"]}
    assert set(by_email) == {ALICE, JOSE}
    for result in by_email.values():
        assert (result["outcome"], result["incoming_status"], result["outgoing_status"]) == (
            "passed", "success", "success")
        assert [s["step"] for s in result["directions"]["incoming"]["steps"]][-1] == "verify_delivery"

    wrong = "bobs-wrong-password"
    credentials.set_mailbox_secret(org.admin, BOB, wrong, org.store)
    status, output, printed = run_json(org, "test-enable", ALICE, BOB, "--wait")

    assert status == EXIT_TEST_FAILED, printed
    by_email = {result["email"]: result for result in output["results"]}
    assert by_email[ALICE]["outcome"] == "passed"
    assert (by_email[BOB]["outcome"], by_email[BOB]["error_code"]) == ("failed", "AUTH_FAILED")
    progress = output["progress"]
    assert (progress["total"], progress["passed"], progress["failed"]) == (2, 1, 1)
    stored = stored_bytes(org.db_path)
    for secret in [*secrets, wrong]:
        assert secret not in printed, "R4: a password is never printed"
        assert secret.encode() not in stored, "R4: nor stored in the database"
    assert not org.row(BOB).incoming_enabled


def test_test_enable_without_wait_queues_at_once_and_worker_once_runs_the_queue(org):
    org.profile("lab")
    for email in (ALICE, BOB):
        org.mailbox(email, "lab")

    status, output, printed = run_json(org, "test-enable", ALICE, BOB)

    assert status == 0, printed
    assert output["queued"] == 2
    assert all(org.row(email).test_scheduled for email in (ALICE, BOB))
    assert all(org.row(email).overall_status == "not_run" for email in (ALICE, BOB)), "queued, not run"

    log = org.workdir / "worker.log"
    done = org.cli("--log-file", str(log), "worker", "--once", "--threads", "4")

    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == [f"{ALICE}: passed", f"{BOB}: passed"]
    assert done.stderr.endswith("tested 2: 2 passed, 0 failed, 0 postponed\n"), done.stderr
    logged = [line.split("] ", 1)[1] for line in log.read_text(encoding="utf-8").splitlines()
              if " INFO mbxtui.worker." in line]
    assert sorted(logged) == [f"{ALICE}: passed", f"{BOB}: passed", "tested 2: 2 passed, 0 failed, 0 postponed"]
    for email in (ALICE, BOB):
        row = org.row(email)
        assert (row.overall_status, row.test_scheduled) == ("success", False)
        assert row.incoming_enabled and row.outgoing_enabled
    assert EnablementJob.select().where(EnablementJob.state != "done").count() == 0


def test_a_worker_killed_mid_batch_is_resumed_without_losing_or_repeating_a_result(org):
    logins = org.lab.add_users(RESUME_MAILBOXES, prefix="resume")
    # Two connections at a time keep the batch running long enough to be killed in the middle;
    # receiving only, since the lab delivers each test message with a process of its own.
    org.profile("resume", max_connections=2, incoming_auth="profile", outgoing_auth="profile",
                username=org.lab.master_login)
    org.bulk_mailboxes(logins, "resume", outgoing="none")
    org.schedule(*logins)

    worker = org.cli_start("worker", "--threads", "4", "--poll", "0.2")
    try:
        deadline = time.monotonic() + KILL_DEADLINE
        while job_states(org.db_path).get("done", 0) < RESULTS_BEFORE_KILL:
            assert worker.poll() is None, f"the worker ended early: {worker.communicate()}"
            assert time.monotonic() < deadline, "the worker wrote too few results in time"
            time.sleep(0.02)
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.kill()
        worker.communicate(timeout=10)
    assert worker.returncode == -signal.SIGKILL

    states = job_states(org.db_path)
    done_before = states.get("done", 0)
    assert done_before < RESUME_MAILBOXES, "killed too late to prove anything"
    assert states.get("running", 0) > 0, f"nothing was in flight when killed: {states}"

    # The rest need not crawl: the bound only had to keep the batch running until the kill.
    profiles.update(org.admin, "resume", max_connections=16)
    resumed = org.cli("worker", "--once", "--threads", "16")

    assert resumed.returncode == 0, resumed.stderr
    tested = int(re.search(r"tested (\d+):", resumed.stderr)[1])
    assert done_before + tested == RESUME_MAILBOXES, "each mailbox tested exactly once in all"
    jobs = list(EnablementJob.select(EnablementJob.mailbox, EnablementJob.state, EnablementJob.outcome, EnablementJob.attempt))
    assert len(jobs) == RESUME_MAILBOXES, "no job was duplicated"
    assert {(job.state, job.outcome, job.attempt) for job in jobs} == {("done", "passed", 1)}
    assert len({job.mailbox_id for job in jobs}) == RESUME_MAILBOXES
    rows = Mailbox.select().where(Mailbox.email.in_(logins))
    assert {(row.overall_status, row.test_scheduled) for row in rows} == {("success", False)}
    connected = [alert.mailbox_id for alert in Alert.select().where(Alert.code == "CONNECTED")]
    assert len(connected) == len(set(connected)) == RESUME_MAILBOXES, "one alert per mailbox, no duplicate"
