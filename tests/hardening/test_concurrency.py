"""Several administrators on one database, processes killed mid-work, SSH links that drop.

- Two consoles (child processes running the services the console runs, each with its own Test &
  Enable runner) and a command-line script change the same mailboxes at once: no "database is
  locked" reaches anyone, a stale save is refused (Conflict) instead of overwriting, the audit log
  holds one entry per change, and no test runs twice: every test message the mail lab received
  belongs to exactly one recorded result.
- `kill -9` in the middle of a Test & Enable of 1,000 mailboxes, then `mbxtui worker --once`.
- SIGHUP (the SSH link dropping) while a bulk change of 100,000 mailboxes runs, from the command
  line and from the console in tmux: the change is there whole or not at all, and so is its audit.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from mbxtui.core.errors import Conflict
from mbxtui.core.models import Alert, AuditEntry, EnablementJob, Mailbox, database
from mbxtui.core.services import bulk, mailboxes, profiles, settings
from mbxtui.core.services.selection import Selection
from tests.backends import ON_POSTGRES
from tests.hardening.conftest import (
    BIG_MAILBOXES, BIG_PROFILES, REPO_ROOT, query, scalar, write_lock_held, write_lock_holder,
)
from tests.integration.conftest import (  # noqa: F401  (fixtures used by name)
    MASTER_PASSWORD, NO_OS_KEYRING, Org, job_states, org, secret_store, secrets_dir,
)

SHARED_MAILBOXES = 10
SHARED_TIMEOUT = 20  # seconds: long enough that a loaded machine makes no transient failure
CHAOS_SECONDS = 10.0
TESTS_ONLY_SECONDS = 4.0
SESSION_START_ALLOWANCE = 4.0  # a console process imports mbxtui and unlocks the secrets file first
SESSION_TIMEOUT = 60.0
RACE_ROUNDS = 5
CRASH_MAILBOXES = 1000
CRASH_MAX_CONNECTIONS = 4
RESULTS_BEFORE_KILL = 150
KILL_DEADLINE = 40.0
# PostgreSQL writes every index entry of each of the 100,000 changed rows anew: the approval holds
# its lock about ten times as long as on SQLite (6 s against 0.5 s here).
LOCK_WAIT = 60.0 if ON_POSTGRES else 10.0
HOLD_AT_MOST = 25.0  # below the busy timeout (30 s), so a waiting writer still gets its turn
EXIT_WAIT = 10.0
CONSOLE_ATTEMPTS = 3
LOCKED_WORDS = ("locked", "busy", "Traceback")


def shows_no_lock_error(text: str) -> bool:
    return not any(word in text for word in LOCKED_WORDS)


# --- a console, as a child process ------------------------------------------------------------

def console_session(spec: dict[str, Any]) -> dict[str, Any]:
    """What a console does to the database, in this process: the services its screens call
    (approve, reject, bulk edit, edit, profile and settings saves with the version the form was
    opened at, Test & Enable) chosen at random until ``spec["deadline"]`` (epoch seconds) and for at
    least ``spec["seconds"]`` once the session is ready (a loaded machine may start it late), and
    then until ``spec["tests_wanted"]`` tests after job ``spec["jobs_after"]`` are done, if asked;
    with a Test & Enable runner working beside them as the console's runner does. Returns what
    happened."""
    from mbxtui.core import db
    from mbxtui.core.jobs.runner import EnablementRunner
    from mbxtui.core.services import enablement
    from mbxtui.core.secrets import SecretStore
    from mbxtui.core.services import operators

    db.open_database(spec["db_path"])
    actor = operators.current_actor()
    store = SecretStore.open(Path(spec["data_dir"]))
    rng = random.Random(spec["seed"])
    emails = spec["emails"]
    ids = {email: mailboxes.get(email).id for email in emails}
    report: dict[str, Any] = {"done": Counter(), "conflicts": Counter(), "errors": [],
                              "edits": [], "profile_saves": [], "settings_saves": []}
    runner = EnablementRunner(store, threads=4)
    stop = threading.Event()

    def run_tests() -> None:
        try:
            runner.run(stop=stop, until_idle=False, poll_seconds=0.2)
        except Exception:
            report["errors"].append("runner: " + traceback.format_exc())

    runner_thread = threading.Thread(target=run_tests, name="console-runner")
    runner_thread.start()

    def some() -> Selection:
        return Selection.of_ids(ids[e] for e in rng.sample(emails, rng.randint(1, 4)))

    def approve():
        bulk.approve(actor, some())

    def reject():
        bulk.reject(actor, Selection.of_ids([ids[rng.choice(emails)]]))

    def bulk_edit():
        bulk.bulk_edit(actor, some(), profile=rng.choice(spec["profiles"]))

    def edit():
        email = rng.choice(emails)
        version = mailboxes.show(actor, email).row_version
        time.sleep(rng.uniform(0, 0.03))  # the operator types
        name = f"{spec['name']} edit {sum(report['done'].values())}"
        mailboxes.edit(actor, email, expected_version=version, name=name)
        report["edits"].append([email, version])

    def save_profile():
        name = rng.choice(spec["profiles"])
        shown = profiles.show(actor, name)
        other_timeout = SHARED_TIMEOUT + 1 if shown.timeout_seconds == SHARED_TIMEOUT else SHARED_TIMEOUT
        time.sleep(rng.uniform(0, 0.03))
        profiles.update(actor, name, expected_version=shown.row_version, timeout_seconds=other_timeout)
        report["profile_saves"].append([name, shown.row_version])

    def save_settings():
        shown = settings.show(actor)
        time.sleep(rng.uniform(0, 0.03))
        settings.update(actor, expected_version=shown.row_version,
                        retry_interval_minutes=6 if shown.retry_interval_minutes == 5 else 5)
        report["settings_saves"].append(shown.row_version)

    def test_enable():
        enablement.schedule(actor, some())
        runner.wake()

    operations: dict[str, Callable[[], None]] = {
        "approve": approve, "reject": reject, "bulk_edit": bulk_edit, "edit": edit,
        "save_profile": save_profile, "save_settings": save_settings, "test_enable": test_enable}
    names = [name for name in spec["operations"] for _ in range(spec["operations"][name])]
    ready = time.time()
    deadline = max(spec["deadline"], ready + spec["seconds"])

    def goes_on() -> bool:
        if time.time() < deadline:
            return True
        wanted = spec.get("tests_wanted", 0)
        return bool(wanted) and time.time() < ready + SESSION_TIMEOUT / 2 and EnablementJob.select().where(
            (EnablementJob.id > spec["jobs_after"]) & (EnablementJob.state == "done")).count() < wanted

    try:
        while goes_on():
            name = rng.choice(names)
            try:
                operations[name]()
                report["done"][name] += 1
            except Conflict:
                report["conflicts"][name] += 1
            except Exception:
                report["errors"].append(f"{name}: " + traceback.format_exc())
            time.sleep(rng.uniform(0, 0.02))
    finally:
        stop.set()
        runner.wake()
        runner_thread.join(timeout=SESSION_TIMEOUT / 2)
        if runner_thread.is_alive():
            report["errors"].append("the runner did not stop")
    return report


def start_console(org: Org, name: str, seed: int, deadline: float, seconds: float, emails: list[str],
                  operations: dict[str, int], **until_tested: int) -> subprocess.Popen:
    """``until_tested``: ``tests_wanted`` and ``jobs_after`` (see console_session)."""
    spec = {"db_path": str(org.db_path), "data_dir": str(org.secrets_dir), "name": name, "seed": seed,
            "deadline": deadline, "seconds": seconds, "emails": emails, "profiles": ["shared-a", "shared-b"],
            "operations": operations, **until_tested}
    code = ("import json, sys; from tests.hardening.test_concurrency import console_session; "
            "print('REPORT ' + json.dumps(console_session(json.loads(sys.argv[1]))))")
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(spec)], env=org.cli_env(), cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def console_report(process: subprocess.Popen) -> dict[str, Any]:
    try:
        out, err = process.communicate(timeout=SESSION_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"a console session did not end:\n{err}")
    assert process.returncode == 0, f"a console session failed:\n{err}"
    assert shows_no_lock_error(err), err
    line = next(line for line in out.splitlines() if line.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])


# --- the script: mbxtui commands in a loop ---------------------------------------------------

@dataclass
class Script:
    """An administrator's script running `mbxtui` commands one after another until a deadline, and
    as long as any of the consoles beside it still works."""

    org: Org
    emails: list[str]
    seed: int
    commands: dict[str, int]
    runs: list[tuple[tuple[str, ...], int, str]] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self, deadline: float, beside: list[subprocess.Popen]) -> None:
        self.thread = threading.Thread(target=self._loop, args=(deadline, beside), name="cli-script")
        self.thread.start()

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(timeout=SESSION_TIMEOUT)
        assert not self.thread.is_alive(), "the script did not finish"

    def _loop(self, deadline: float, beside: list[subprocess.Popen]) -> None:
        rng = random.Random(self.seed)
        names = [name for name in self.commands for _ in range(self.commands[name])]
        while time.time() < deadline or any(console.poll() is None for console in beside):
            args = self._command(rng, rng.choice(names), len(self.runs))
            try:
                done = self.org.cli(*args)
            except subprocess.TimeoutExpired as timeout:
                self.runs.append((args, -1, f"did not finish: {timeout}"))
                return
            self.runs.append((args, done.returncode, done.stderr))

    def _command(self, rng: random.Random, name: str, number: int) -> tuple[str, ...]:
        some = rng.sample(self.emails, rng.randint(1, 3))
        if name == "approve":
            return ("mailbox", "approve", *some)
        if name == "reject":
            return ("mailbox", "reject", some[0])
        if name == "edit":
            return ("mailbox", "edit", some[0], "--name", f"script edit {number}")
        if name == "bulk_edit":
            return ("mailbox", "bulk-edit", *some, "--profile", rng.choice(["shared-a", "shared-b"]))
        if name == "test_enable":
            return ("test-enable", *some)
        return ("test-enable", *some, "--wait", "--threads", "4")

    def succeeded(self, command: str) -> int:
        return sum(1 for args, status, _ in self.runs if status == 0 and " ".join(args[:2]) == command)

    def check(self) -> None:
        assert self.runs, "the script ran nothing"
        for args, status, stderr in self.runs:
            allowed = (0, 3) if "--wait" in args else (0,)  # 3: a test failed (a rejected mailbox)
            assert status in allowed, f"mbxtui {' '.join(args)} -> {status}: {stderr}"
            assert shows_no_lock_error(stderr), f"mbxtui {' '.join(args)}: {stderr}"


# --- what the lab received and what the database recorded --------------------------------------

def sent_message_ids(results: list[str | None]) -> list[str]:
    """The Message-IDs of the test messages the given job results say were sent."""
    sent = []
    for text in results:
        outgoing = (json.loads(text) if text else {}).get("outgoing") or {}
        for step in outgoing.get("steps", []):
            if step["step"] == "send" and step["ok"]:
                sent.append(step["detail"].split(" to ")[0])
    return sent


def received_message_ids(org: Org, logins: list[str]) -> list[str]:
    return [message["Message-ID"] for login in logins for message in org.lab.messages(login)]


def audit_count(action: str, after_id: int) -> int:
    return AuditEntry.select().where((AuditEntry.action == action) & (AuditEntry.id > after_id)).count()


def last_id(model) -> int:
    return model.select().order_by(model.id.desc()).first().id if model.select().exists() else 0


@pytest.mark.servers
def test_two_consoles_and_a_script_on_the_same_mailboxes_lose_nothing_and_run_no_test_twice(org):
    logins = org.lab.add_users(SHARED_MAILBOXES, prefix="shared")
    for name in ("shared-a", "shared-b"):
        org.profile(name, max_connections=3, incoming_auth="profile", outgoing_auth="profile",
                    username=org.lab.master_login, timeout_seconds=SHARED_TIMEOUT)
    org.bulk_mailboxes(logins, "shared-a")
    audit_before = last_id(AuditEntry)

    # 1. Everything at once: approving, rejecting, editing, saving, testing the same mailboxes.
    deadline = time.time() + SESSION_START_ALLOWANCE + CHAOS_SECONDS
    everything = {"approve": 3, "reject": 1, "bulk_edit": 2, "edit": 4, "save_profile": 1, "save_settings": 1,
                  "test_enable": 3}
    consoles = [start_console(org, f"console {n}", seed=n, deadline=deadline, seconds=CHAOS_SECONDS, emails=logins,
                              operations=everything) for n in (1, 2)]
    script = Script(org, logins, seed=3, commands={"approve": 2, "reject": 1, "edit": 2, "bulk_edit": 1,
                                                   "test_enable": 2, "test_enable_wait": 1})
    script.start(deadline, consoles)
    reports = [console_report(console) for console in consoles]
    script.join()
    drained = org.cli("worker", "--once", "--threads", "8")

    assert drained.returncode == 0 and shows_no_lock_error(drained.stderr), drained.stderr
    script.check()
    for report in reports:
        assert not report["errors"], "\n".join(report["errors"])
    done = sum((Counter(r["done"]) for r in reports), Counter())
    conflicts = sum((Counter(r["conflicts"]) for r in reports), Counter())
    assert all(done[name] > 0 for name in everything), f"every kind of change was made: {done}"
    # A save made with the version its form was opened at wins once per version: a second save
    # from the same version, whichever console made it, is a Conflict, never an overwrite.
    for key in ("edits", "profile_saves", "settings_saves"):
        saves = [json.dumps(save) for report in reports for save in report[key]]
        assert len(saves) == len(set(saves)), f"two {key} were made from the same version: a lost update"
    assert audit_count("mailbox.edit", audit_before) == done["edit"] + script.succeeded("mailbox edit")
    assert audit_count("mailbox.approve", audit_before) == done["approve"] + script.succeeded("mailbox approve")
    assert audit_count("mailbox.reject", audit_before) == done["reject"] + script.succeeded("mailbox reject")
    assert audit_count("mailbox.bulk_edit", audit_before) == done["bulk_edit"] + script.succeeded("mailbox bulk-edit")
    assert audit_count("profile.update", audit_before) == done["save_profile"]
    assert audit_count("settings.update", audit_before) == done["save_settings"]
    states = job_states(org.db_path)
    assert states.get("running", 0) == 0 and states.get("done", 0) > 0, states
    duplicated = database.execute_sql(
        "SELECT batch_id, mailbox_id, attempt FROM test_job GROUP BY 1, 2, 3 HAVING count(*) > 1").fetchall()
    assert not duplicated, f"a job was queued twice for the same attempt: {duplicated}"
    waiting = database.execute_sql(
        "SELECT mailbox_id FROM test_job WHERE state = 'queued' GROUP BY 1 HAVING count(*) > 1").fetchall()
    assert not waiting, f"two tests queued for one mailbox: {waiting}"
    assert not Mailbox.select().where((Mailbox.test_scheduled == True) & ~Mailbox.id.in_(  # noqa: E712
        EnablementJob.select(EnablementJob.mailbox).where(EnablementJob.state == "queued"))).exists(), "scheduled with nothing queued"
    # Tests whose mailbox was changed while they ran are run again (their result said nothing about
    # the new settings), so the lab may hold more messages than results; each recorded one arrived once.
    recorded = sent_message_ids([job.result for job in EnablementJob.select().where(EnablementJob.state == "done")])
    received = received_message_ids(org, logins)
    assert len(received) == len(set(received)), "a test message was delivered twice"
    assert len(recorded) == len(set(recorded)) and set(recorded) <= set(received)
    print(f"\nconcurrent changes: {sum(done.values())} console changes {dict(done)}, "
          f"{sum(conflicts.values())} refused as stale {dict(conflicts)}, {len(script.runs)} mbxtui commands, "
          f"{states.get('done', 0)} tests recorded, {len(received)} test messages received")

    # 2. Only testing, from all three at once: now every test message the lab received belongs to
    # exactly one recorded result, and every recorded result to exactly one message.
    bulk.approve(org.admin, Selection.of_emails(logins))
    assert not EnablementJob.select().where((EnablementJob.state == "queued") & EnablementJob.not_before.is_null()).exists()
    last_job = last_id(EnablementJob)
    received_before = set(received_message_ids(org, logins))
    deadline = time.time() + SESSION_START_ALLOWANCE + TESTS_ONLY_SECONDS
    consoles = [start_console(org, f"tester {n}", seed=10 + n, deadline=deadline, seconds=TESTS_ONLY_SECONDS,
                              emails=logins, operations={"test_enable": 1}, tests_wanted=2 * SHARED_MAILBOXES,
                              jobs_after=last_job) for n in (1, 2)]
    script = Script(org, logins, seed=13, commands={"test_enable": 1, "test_enable_wait": 1})
    script.start(deadline, consoles)
    reports = [console_report(console) for console in consoles]
    script.join()
    drained = org.cli("worker", "--once", "--threads", "8")

    assert drained.returncode == 0 and shows_no_lock_error(drained.stderr), drained.stderr
    script.check()
    for report in reports:
        assert not report["errors"], "\n".join(report["errors"])
    jobs = list(EnablementJob.select().where(EnablementJob.id > last_job))
    assert {job.state for job in jobs} == {"done"}, Counter(job.state for job in jobs)
    recorded = sent_message_ids([job.result for job in jobs])
    received = [m for m in received_message_ids(org, logins) if m not in received_before]
    assert len(recorded) >= 2 * SHARED_MAILBOXES, "each mailbox was tested more than once"
    assert sorted(recorded) == sorted(received), "a test ran without its result, or twice"
    email_of = {row.id: row.email for row in Mailbox.select().where(Mailbox.email.in_(logins))}
    tested = Counter(email_of[job.mailbox_id] for job in jobs)
    delivered = Counter(login for login in logins for message in org.lab.messages(login)
                        if message["Message-ID"] not in received_before)
    assert tested == delivered, "each mailbox received one test message per test recorded for it"
    assert not Mailbox.select().where(Mailbox.test_scheduled == True).exists()  # noqa: E712
    print(f"tests only: {len(jobs)} tests by 3 runners, {len(received)} messages, each once")


def _race(first: Callable[[], Any], second: Callable[[], Any]) -> list[str]:
    """Run both at the same moment, each on a thread with its own database connection."""
    barrier = threading.Barrier(2, timeout=10)
    outcomes: list[str] = []

    def attempt(save: Callable[[], Any], label: str) -> None:
        try:
            barrier.wait()
            save()
            outcomes.append(f"won:{label}")
        except Conflict:
            outcomes.append("conflict")
        except Exception as error:
            outcomes.append(f"error:{error!r}")
        finally:
            database.close()

    threads = [threading.Thread(target=attempt, args=(save, label)) for save, label in ((first, "1"), (second, "2"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    return outcomes


@pytest.mark.servers
def test_two_saves_from_the_same_version_one_wins_the_other_is_refused(org):
    org.profile("race")
    org.mailbox("alice@example.test", "race", approve=False)
    admin = org.admin
    audit_before = last_id(AuditEntry)
    for round_number in range(RACE_ROUNDS):
        version = mailboxes.show(admin, "alice@example.test").row_version
        outcomes = _race(
            lambda: mailboxes.edit(admin, "alice@example.test", expected_version=version, name=f"one {round_number}"),
            lambda: mailboxes.edit(admin, "alice@example.test", expected_version=version, name=f"two {round_number}"))
        assert outcomes.count("conflict") == 1 and len(outcomes) == 2, outcomes
        winner = "one" if "won:1" in outcomes else "two"
        assert mailboxes.show(admin, "alice@example.test").name == f"{winner} {round_number}"

        shown = profiles.show(admin, "race")
        outcomes = _race(
            lambda: profiles.update(admin, "race", expected_version=shown.row_version, timeout_seconds=7),
            lambda: profiles.update(admin, "race", expected_version=shown.row_version, max_connections=9))
        assert outcomes.count("conflict") == 1 and len(outcomes) == 2, outcomes
        after = profiles.show(admin, "race")
        assert (after.timeout_seconds == 7) != (after.max_connections == 9), "both saves landed"
        profiles.update(admin, "race", timeout_seconds=5, max_connections=10)

        shown = settings.show(admin)
        outcomes = _race(
            lambda: settings.update(admin, expected_version=shown.row_version, retry_attempts=3),
            lambda: settings.update(admin, expected_version=shown.row_version, retry_interval_minutes=9))
        assert outcomes.count("conflict") == 1 and len(outcomes) == 2, outcomes
        after = settings.show(admin)
        assert (after.retry_attempts == 3) != (after.retry_interval_minutes == 9), "both saves landed"
        settings.update(admin, retry_attempts=10, retry_interval_minutes=5)
    # One entry per save that landed (and per reset above): none for the refused ones.
    assert audit_count("mailbox.edit", audit_before) == RACE_ROUNDS
    assert audit_count("profile.update", audit_before) == 2 * RACE_ROUNDS
    assert audit_count("settings.update", audit_before) == 2 * RACE_ROUNDS


# --- kill -9 in the middle of Test & Enable of 1,000 mailboxes -----------------------------------

@pytest.mark.servers
def test_kill_9_mid_test_enable_of_1000_mailboxes_then_restart_every_mailbox_once(org, tmp_path):
    logins = org.lab.add_users(CRASH_MAILBOXES, prefix="crash")
    with org.lab.connection_counter("imaps") as imap_connections:
        org.profile("crash", incoming_port=imap_connections.port, max_connections=CRASH_MAX_CONNECTIONS,
                    incoming_auth="profile", outgoing_auth="profile", username=org.lab.master_login)
        csv_file = tmp_path / "crash-users.csv"
        csv_file.write_text("name,email\n" + "".join(f"{login.split('@')[0]},{login}\n" for login in logins),
                            encoding="utf-8")
        # Receiving only: the lab delivers each test message with a process of its own.
        for args in (("import", "users", str(csv_file)),
                     ("mailbox", "bulk-edit", "--view", "all", "--filter", "crash", "--profile", "crash",
                      "--outgoing", "none"),
                     ("mailbox", "approve", "--view", "pending", "--filter", "crash")):
            done = org.cli(*args)
            assert done.returncode == 0, f"{args}: {done.stderr}"

        testing = org.cli_start("test-enable", "--view", "all", "--filter", "crash", "--wait", "--threads", "8")
        try:
            deadline = time.monotonic() + KILL_DEADLINE
            while job_states(org.db_path).get("done", 0) < RESULTS_BEFORE_KILL:
                assert testing.poll() is None, f"Test & Enable ended early: {testing.communicate()}"
                assert time.monotonic() < deadline, "too few results in time"
                time.sleep(0.02)
            testing.send_signal(signal.SIGKILL)
        finally:
            testing.kill()
            testing.communicate(timeout=10)
        assert testing.returncode == -signal.SIGKILL

        states = job_states(org.db_path)
        done_before, running_at_kill = states.get("done", 0), states.get("running", 0)
        assert done_before < CRASH_MAILBOXES and running_at_kill > 0, f"not killed mid-batch: {states}"
        assert scalar(org.db_path, "SELECT count(*) FROM mailbox WHERE test_scheduled = 1") == \
            CRASH_MAILBOXES - done_before

        restarted = org.cli("worker", "--once", "--no-process", "--threads", "8")

        assert restarted.returncode == 0 and shows_no_lock_error(restarted.stderr), restarted.stderr
        tested_after = int(re.search(r"tested (\d+):", restarted.stderr)[1])
        assert done_before + tested_after == CRASH_MAILBOXES, "each mailbox's result written once in all"
        jobs = list(EnablementJob.select(EnablementJob.mailbox, EnablementJob.state, EnablementJob.outcome, EnablementJob.attempt))
        assert len(jobs) == len({job.mailbox_id for job in jobs}) == CRASH_MAILBOXES, "one job per mailbox"
        assert {(job.state, job.outcome, job.attempt) for job in jobs} == {("done", "passed", 1)}
        rows = Mailbox.select().where(Mailbox.email.in_(logins))
        assert {(row.overall_status, row.incoming_enabled, row.test_scheduled) for row in rows} == {
            ("success", True, False)}, "every mailbox has its result; none stays scheduled"
        crash_alerts = list(Alert.select().join(Mailbox, on=(Alert.mailbox == Mailbox.id)).where(
            Mailbox.email.in_(logins)))
        assert {(alert.level, alert.code) for alert in crash_alerts} == {("information", "CONNECTED")}
        assert len(crash_alerts) == len({alert.mailbox_id for alert in crash_alerts}) == CRASH_MAILBOXES, \
            "exactly one CONNECTED alert per mailbox"
        # Only the tests in flight at the kill may have connected twice.
        assert CRASH_MAILBOXES <= imap_connections.total <= CRASH_MAILBOXES + running_at_kill, imap_connections
    print(f"\nkill -9 after {done_before} of {CRASH_MAILBOXES} results ({running_at_kill} in flight); "
          f"restart tested {tested_after}; {imap_connections.total} IMAP connections in all")


# --- SIGHUP (an SSH link dropping) during a bulk change of 100,000 mailboxes -------------------

def approval_state(db_path: Path) -> tuple[int, list[tuple[int, int]]]:
    """Approved mailboxes, and each approval audit entry with its count of records."""
    approved = scalar(db_path, "SELECT count(*) FROM mailbox WHERE approval = 'approved' AND approved_by IS NOT NULL")
    entries = query(db_path, "SELECT e.record_count, (SELECT count(*) FROM audit_record r WHERE r.entry_id = e.id) "
                             "FROM audit_entry e WHERE e.action = 'mailbox.approve'")
    return approved, entries


def assert_whole_or_nothing(db_path: Path | str, changed: int, entries: list[tuple[int, int]]) -> None:
    if not ON_POSTGRES:
        assert scalar(db_path, "PRAGMA quick_check") == "ok"
    assert changed in (0, BIG_MAILBOXES), f"half-done: {changed} of {BIG_MAILBOXES}"
    expected = [(BIG_MAILBOXES, BIG_MAILBOXES)] if changed else []
    assert entries == expected, f"the audit log does not match the change: {entries}"


def wait_for_write_lock(db_path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + LOCK_WAIT
    while not write_lock_held(db_path):
        assert process.poll() is None, f"ended before its transaction was seen: {process.communicate()}"
        assert time.monotonic() < deadline, "the bulk change never took the write lock"
        time.sleep(0.002)


def big_env(secrets_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MBXTUI_") and key != "NO_COLOR"}
    env.update({"PYTHON_KEYRING_BACKEND": NO_OS_KEYRING, "MBXTUI_DATA_DIR": str(secrets_dir),
                "MBXTUI_MASTER_PASSWORD": MASTER_PASSWORD, "PYTHONDONTWRITEBYTECODE": "1"})
    return env


def start_mbxtui(db_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mbxtui", "--db", str(db_path), *args], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def test_sighup_during_a_bulk_command_leaves_the_change_whole_or_absent(concurrency_big_copy, secrets_dir):
    env = big_env(secrets_dir)
    approve = ("mailbox", "approve", "--view", "all")

    # Undisturbed: how long the change holds the write lock.
    db_path = concurrency_big_copy("undisturbed")
    command = start_mbxtui(db_path, env, *approve)
    wait_for_write_lock(db_path, command)
    locked_at = time.monotonic()
    while write_lock_held(db_path) and command.poll() is None:
        time.sleep(0.002)
    lock_seconds = time.monotonic() - locked_at
    out, err = command.communicate(timeout=60)
    assert command.returncode == 0, err
    assert_whole_or_nothing(db_path, *approval_state(db_path))
    assert approval_state(db_path)[0] == BIG_MAILBOXES

    outcomes = {}
    for moment, fraction in (("while starting", None), ("as the transaction begins", 0.0),
                             ("in the middle", 0.5), ("near the end", 0.9)):
        db_path = concurrency_big_copy(moment.replace(" ", "-"))
        command = start_mbxtui(db_path, env, *approve)
        if fraction is None:
            time.sleep(0.05)
        else:
            wait_for_write_lock(db_path, command)
            time.sleep(fraction * lock_seconds)
        locked = write_lock_held(db_path)
        command.send_signal(signal.SIGHUP)
        command.communicate(timeout=60)
        changed, entries = approval_state(db_path)
        assert_whole_or_nothing(db_path, changed, entries)
        assert command.returncode in (-signal.SIGHUP, 0), command.returncode
        outcomes[moment] = (locked, command.returncode, changed)
    rolled_back = [m for m, (locked, status, changed) in outcomes.items() if locked and status == -signal.SIGHUP
                   and changed == 0]
    assert rolled_back, f"no hangup landed inside the transaction: {outcomes}"

    # After a hangup rolled it back, nothing is left locked: the next run completes.
    db_path = concurrency_big_copy(rolled_back[0].replace(" ", "-"))
    again = start_mbxtui(db_path, env, *approve)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0 and shows_no_lock_error(err), err
    assert approval_state(db_path)[0] == BIG_MAILBOXES

    # Bulk edit, hung up in the middle.
    db_path = concurrency_big_copy("bulk-edit")
    command = start_mbxtui(db_path, env, "mailbox", "bulk-edit", "--view", "all", "--profile", BIG_PROFILES[1],
                           "--incoming", "none")
    wait_for_write_lock(db_path, command)
    time.sleep(0.5 * lock_seconds)
    command.send_signal(signal.SIGHUP)
    command.communicate(timeout=60)
    moved = scalar(db_path, "SELECT count(*) FROM mailbox m JOIN profile p ON p.id = m.profile_id "
                            "WHERE p.name = ? AND m.incoming_method = 'none'", (BIG_PROFILES[1],))
    entries = query(db_path, "SELECT e.record_count, (SELECT count(*) FROM audit_record r WHERE r.entry_id = e.id) "
                             "FROM audit_entry e WHERE e.action = 'mailbox.bulk_edit'")
    assert_whole_or_nothing(db_path, moved, entries)
    print(f"\nSIGHUP of `mbxtui mailbox approve` over {BIG_MAILBOXES:,} mailboxes (write lock held "
          f"{lock_seconds:.2f} s): {outcomes}; bulk-edit: {moved} changed")


def test_read_commands_answer_and_writes_wait_while_a_bulk_change_holds_the_lock(concurrency_big_copy, secrets_dir):
    """A bulk change of a large selection holds the write lock for seconds: commands that only read
    must not wait for it (nor fail with "database is locked" once the busy timeout runs out), and
    commands that write wait their turn instead of failing."""
    env = big_env(secrets_dir)
    db_path = concurrency_big_copy("held")
    with write_lock_holder(db_path) as holder:
        try:
            writer = start_mbxtui(db_path, env, "mailbox", "approve", "person1@big.example.org")
            reader = start_mbxtui(db_path, env, "mailbox", "list", "--view", "pending", "--limit", "1", "--json")
            try:
                out, err = reader.communicate(timeout=HOLD_AT_MOST)
            except subprocess.TimeoutExpired:
                reader.kill()
                reader.communicate()
                pytest.fail(f"`mbxtui mailbox list` waited {HOLD_AT_MOST} s for another process's write lock")
            assert reader.returncode == 0, err
            assert json.loads(out)["total"] == BIG_MAILBOXES
            assert writer.poll() is None, f"the writer did not wait for the lock: {writer.communicate()}"
        finally:
            holder.rollback()
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0 and shows_no_lock_error(err), err
    assert scalar(db_path, "SELECT approval FROM mailbox WHERE email = 'person1@big.example.org'") == "approved"


# --- the console in tmux, its terminal closed mid bulk approve ---------------------------------

class Tmux:
    """A private tmux server (its own socket) running one console."""

    def __init__(self, socket_name: str, env: dict[str, str]):
        self.socket_name = socket_name
        self.env = env

    def run(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket_name, *args], env=self.env, capture_output=True,
                              text=True, timeout=10)
        assert done.returncode == 0, f"tmux {args}: {done.stderr}"
        return done.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "console")

    def wait_for(self, text: str, timeout: float = 30.0, gone: bool = False) -> None:
        deadline = time.monotonic() + timeout
        while (text in self.screen()) == gone:
            assert time.monotonic() < deadline, f"{text!r} never {'went' if gone else 'appeared'}:\n{self.screen()}"
            time.sleep(0.05)


def process_ended(pid: int) -> bool:
    """Gone, or a zombie waiting for its parent (tmux) to collect it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def hang_up_console(db_path: Path, env: dict[str, str], socket_name: str, after_commit: bool) -> tuple[int, list]:
    """Open the console in tmux on ``db_path``, mark every mailbox, approve, and close the terminal
    inside the approval's transaction (or just after its commit). Returns approval_state()."""
    tmux = Tmux(socket_name, env)
    tmux.run("new-session", "-d", "-s", "console", "-x", "120", "-y", "36",
             f"exec {sys.executable} -m mbxtui --db {db_path} console --no-tests")
    try:
        console = _Watched(int(tmux.run("display", "-p", "-t", "console", "#{pane_pid}")))
        tmux.wait_for("No OS keyring is available")
        tmux.run("send-keys", "-t", "console", "Escape")  # continue without secrets: no test runs here
        tmux.wait_for("No OS keyring is available", gone=True)
        tmux.wait_for(f"{BIG_MAILBOXES:,} in Active")
        tmux.run("send-keys", "-t", "console", "a")
        tmux.wait_for(f"{BIG_MAILBOXES:,} selected")
        tmux.run("send-keys", "-t", "console", "A")
        tmux.wait_for("Approve the email address of")
        tmux.run("send-keys", "-t", "console", "y")
        wait_for_write_lock(db_path, console)
        if after_commit:
            deadline = time.monotonic() + LOCK_WAIT
            while write_lock_held(db_path):
                assert time.monotonic() < deadline, "the approval never committed"
                time.sleep(0.002)
        tmux.run("kill-session", "-t", "console")  # what sshd does when the link drops: SIGHUP
        deadline = time.monotonic() + EXIT_WAIT
        while console.poll() is None:
            assert time.monotonic() < deadline, "the console outlived its terminal"
            time.sleep(0.02)
    finally:
        subprocess.run(["tmux", "-L", socket_name, "kill-server"], capture_output=True, timeout=10)
    return approval_state(db_path)


def test_closing_the_console_terminal_mid_bulk_approve_leaves_it_whole_or_absent(concurrency_big_copy, secrets_dir):
    env = big_env(secrets_dir)
    env["TERM"] = "xterm-256color"
    del env["MBXTUI_MASTER_PASSWORD"]
    inside = []
    # The hangup follows the lock within milliseconds of a 0.5 s transaction; on a machine busy
    # enough to delay it past the commit, the approval is whole, and the hangup is tried again.
    for attempt in range(CONSOLE_ATTEMPTS):
        db_path = concurrency_big_copy(f"console-inside-{attempt}")
        changed, entries = hang_up_console(db_path, env, f"mbxtui-hangup-{os.getpid()}-{attempt}", after_commit=False)
        assert_whole_or_nothing(db_path, changed, entries)
        inside.append(changed)
        if changed == 0:
            break
    assert inside[-1] == 0, f"no hangup landed inside the transaction: approved {inside}"

    db_path = concurrency_big_copy("console-after")
    changed, entries = hang_up_console(db_path, env, f"mbxtui-hangup-{os.getpid()}-after", after_commit=True)
    assert_whole_or_nothing(db_path, changed, entries)
    assert changed == BIG_MAILBOXES, "the committed approval was lost"
    print(f"\nconsole hung up during Approve of {BIG_MAILBOXES:,}: approved {inside} when inside the "
          f"transaction, {changed} just after the commit")


class _Watched:
    """A process known by pid only, with the one method wait_for_write_lock needs."""

    def __init__(self, pid: int):
        self.pid = pid

    def poll(self) -> int | None:
        return 0 if process_ended(self.pid) else None

    def communicate(self) -> str:
        return f"process {self.pid} ended"
