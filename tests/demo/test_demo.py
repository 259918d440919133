"""`mbxtui demo`: the demo organisation, its sandbox mail servers, a Test & Enable of every demo
mailbox meeting every kind of outcome, and the servers closing when the demo stops."""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import smtplib
import socket
import sqlite3
import ssl
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from mbxtui.core import models
from mbxtui.core.db import install_id
from mbxtui.core.errors import MbxError
from mbxtui.core.jobs import queue as jobs
from mbxtui.core.jobs.runner import EnablementRunner
from mbxtui.core.models import Alert, EnablementJob, Mailbox, Operator, Profile, Queue, User, utcnow
from mbxtui.core.secrets import KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV, SECRETS_FILE_NAME
from mbxtui.core.permissions import SYSTEM
from mbxtui.core.services import credentials, enablement, operators, profiles, settings
from mbxtui.core.services.selection import Selection
from mbxtui.demo import DATABASE_NAME, DEMO_MASTER_PASSWORD, Demo, demo_directory, prepare_demo, seed
from mbxtui.demo.certs import CA_FILE_NAME, LEGACY_CA_FILE_NAME
from mbxtui.demo.mailsystem import SERVICE_PASSWORD
from tests.demo.conftest import REAL_MASTER_PASSWORD

HOST = "127.0.0.1"
SOCKET_TIMEOUT = 5.0
SILENCE_CHECKED_FOR = 0.5


def row(email: str) -> Mailbox:
    return Mailbox.get(Mailbox.email == email)


def failure_codes(email: str) -> dict[str, str | None]:
    """Direction -> error code (None when it passed) of the mailbox's last finished test."""
    result = jobs.last_result(row(email).id)
    assert result is not None, f"{email} has no finished test"
    return {direction: probe["failure"]["code"] if probe["failure"] else None
            for direction, probe in result.directions.items()}


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=SOCKET_TIMEOUT).close()
    except ConnectionRefusedError:
        return True
    return False


# --- the demo organisation -----------------------------------------------------------------------

def test_the_first_start_makes_the_demo_organisation(first_start, demo: Demo):
    assert demo.created and demo.db_path.parent == demo.directory
    assert first_start.seconds < 60, "a newcomer waits less than a minute"
    assert demo.actor.login == operators.os_login() and demo.actor.role == "global_admin"
    roles = {o.login: o.role for o in Operator.select()}
    assert roles == {demo.actor.login: "global_admin", "sam": "service_admin", "sys": "system_admin",
                     "vic": "viewer"}

    assert User.select().count() >= 250 and Queue.select().count() == 12
    assert Mailbox.select().count() == User.select().count() + Queue.select().count() + 1
    assert Mailbox.select().where(Mailbox.is_forward).count() == 1
    assert {p.name: p.type for p in Profile.select()} == {
        seed.HEAD_OFFICE: "imap_smtp", seed.BRANCH: "pop3_smtp", seed.EXCHANGE: "exchange_online",
        seed.EXCHANGE_OAUTH: "imap_smtp", seed.LEGACY: "imap_smtp", seed.WAREHOUSE: "imap_smtp"}

    approvals = Counter(m.approval for m in Mailbox.select())
    assert approvals["pending"] >= 10 and approvals["rejected"] >= 1 and approvals["approved"] >= 250
    exchange_users = seed.plan().groups[seed.EXCHANGE]
    assert {row(a).approved_by for a in exchange_users} == {"exchange_online"}, "R6"

    statuses = Counter(m.overall_status for m in Mailbox.select())
    assert statuses["success"] >= 150 and statuses["failure"] >= 20 and statuses["not_run"] >= 20
    wall = Counter(a.level for a in Alert.select().where(Alert.dismissed == False))  # noqa: E712
    assert wall["error"] and wall["warning"] and wall["information"]


def test_a_later_start_reuses_the_demo_and_points_its_profiles_at_the_new_servers(first_start, restarted_demo: Demo):
    assert not restarted_demo.created
    assert restarted_demo.ports != first_start.demo.ports
    head_office = Profile.get(Profile.name == seed.HEAD_OFFICE)
    assert (head_office.incoming_host, head_office.incoming_port) == (HOST, restarted_demo.ports.imaps)
    assert Path(head_office.ca_file) == restarted_demo.directory / CA_FILE_NAME
    for name, (incoming, outgoing) in seed.PROFILE_PORTS.items():
        profile = Profile.get(Profile.name == name)
        assert (profile.incoming_port, profile.outgoing_port) == (
            getattr(restarted_demo.ports, incoming), getattr(restarted_demo.ports, outgoing)), name


def test_the_seeded_secrets_are_confirmed_for_the_sandbox_at_every_start(first_start, restarted_demo: Demo):
    """R34: the demo moves its profiles to the sandbox's new ports, and its secrets follow them."""
    for name in seed.PROFILE_PORTS:
        assert profiles.show(SYSTEM, name).secret_endpoint in ("confirmed", "no secret"), name
    branch = seed.plan().groups[seed.BRANCH]
    with_password = [email for email in branch if row(email).password_set]
    assert with_password
    assert {credentials.mailbox_secret_state(SYSTEM, email) for email in with_password} == {"confirmed"}


def test_reset_starts_over_with_a_new_demo_database_and_keyring(demo_dir: Path):
    with contextlib.closing(sqlite3.connect(demo_dir / DATABASE_NAME)) as previous:
        previous_install = previous.execute("SELECT value FROM meta WHERE key = 'install_id'").fetchone()[0]
        previous.execute("UPDATE profile SET name = 'Renamed by the operator' WHERE name = ?", [seed.LEGACY])
        previous.commit()

    demo = prepare_demo(demo_dir, reset=True)
    try:
        assert demo.created and install_id() != previous_install
        assert Profile.get_or_none(Profile.name == seed.LEGACY) is not None
        assert Profile.get_or_none(Profile.name == "Renamed by the operator") is None
        head_office = Profile.get(Profile.name == seed.HEAD_OFFICE)
        assert credentials.profile_secret(demo.store, head_office.id).reveal() == SERVICE_PASSWORD
        assert not [p.name for p in demo_dir.iterdir() if "seeding" in p.name], "no half-made database left"
    finally:
        demo.stop()


def test_a_connection_left_open_on_the_seeding_database_loses_none_of_its_commits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # A thread of the seeding (a pool's) may keep its connection, reading from before the seeding's
    # commits: the write-ahead log cannot be folded back into the file while it reads.
    readers: list[sqlite3.Connection] = []
    seed_everything = seed.seed

    def seed_while_another_thread_reads(*args: object) -> None:
        reader = sqlite3.connect(models.database.obj.database, check_same_thread=False)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM operator").fetchone()
        readers.append(reader)
        seed_everything(*args)

    monkeypatch.setattr(seed, "seed", seed_while_another_thread_reads)
    try:
        demo = prepare_demo(tmp_path / "demo")
    finally:
        for reader in readers:
            reader.close()
    try:
        assert readers and demo.created
        assert User.select().count() >= 250 and Queue.select().count() == 12 and Alert.select().count() > 0
        assert sorted(p.name for p in demo.directory.iterdir() if p.name.startswith(".")) == []
    finally:
        demo.stop()


def test_the_demo_keeps_its_secrets_in_its_own_encrypted_file(first_start, demo: Demo):
    """The first start ran with MBXTUI_KEYRING=auto and another MBXTUI_MASTER_PASSWORD set."""
    assert not demo.store.needs_master_password
    assert str(demo.directory / SECRETS_FILE_NAME) in demo.store.backend_name
    demo.store.unlock(DEMO_MASTER_PASSWORD)  # raises WrongMasterPassword for any other password
    assert first_start.environment_after == {KEYRING_CHOICE_ENV: "auto", MASTER_PASSWORD_ENV: REAL_MASTER_PASSWORD}


def test_the_demo_directory_is_its_own(monkeypatch, tmp_path):
    monkeypatch.delenv("MBXTUI_DEMO_DIR", raising=False)
    monkeypatch.setenv("MBXTUI_DATA_DIR", str(tmp_path / "data"))
    assert demo_directory() == tmp_path / "data" / "demo"
    monkeypatch.setenv("MBXTUI_DEMO_DIR", str(tmp_path / "elsewhere"))
    assert demo_directory() == tmp_path / "elsewhere"


def test_the_demo_refuses_mbxtuis_own_directory_and_database(monkeypatch, tmp_path):
    """The demo removes an earlier demo's database and keyring file: never the real ones."""
    real = tmp_path / "data"
    real.mkdir()
    (real / SECRETS_FILE_NAME).write_text("the real keyring")
    monkeypatch.setenv("MBXTUI_DATA_DIR", str(real))
    monkeypatch.delenv("MBXTUI_DB", raising=False)
    with pytest.raises(MbxError, match="own data directory"):
        prepare_demo(real)
    with pytest.raises(MbxError, match="own database"):
        prepare_demo(tmp_path / "demo", reset=True, db_path=real / "mbxtui.db")
    assert (real / SECRETS_FILE_NAME).read_text() == "the real keyring"


# --- the sandbox servers -------------------------------------------------------------------------

def test_every_sandbox_port_answers_as_its_part_in_the_demo_says(demo: Demo):
    trusting_demo_ca = ssl.create_default_context(cafile=str(demo.directory / CA_FILE_NAME))
    trusting_legacy_ca = ssl.create_default_context(cafile=str(demo.directory / LEGACY_CA_FILE_NAME))
    ports = demo.ports

    with imaplib.IMAP4_SSL(HOST, ports.imaps, ssl_context=trusting_demo_ca, timeout=SOCKET_TIMEOUT) as imap:
        assert imap.welcome.startswith(b"* OK") and "AUTH=PLAIN" in imap.capabilities

    with smtplib.SMTP(HOST, ports.submission, timeout=SOCKET_TIMEOUT) as submission:
        submission.ehlo()
        assert submission.has_extn("starttls") and not submission.has_extn("auth"), "AUTH only after TLS"
        submission.starttls(context=trusting_demo_ca)
        submission.ehlo()
        assert "PLAIN" in submission.esmtp_features["auth"]

    pop = poplib.POP3(HOST, ports.pop3, timeout=SOCKET_TIMEOUT)
    assert pop.getwelcome().startswith(b"+OK") and "STLS" in pop.capa()
    pop.stls(trusting_demo_ca)
    assert "PLAIN" in pop.capa()["SASL"]
    pop.quit()

    with smtplib.SMTP_SSL(HOST, ports.smtps, context=trusting_demo_ca, timeout=SOCKET_TIMEOUT) as smtps:
        assert smtps.noop()[0] == 250

    with imaplib.IMAP4(HOST, ports.legacy_imap, timeout=SOCKET_TIMEOUT) as legacy:
        assert "STARTTLS" not in legacy.capabilities

    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(HOST, ports.untrusted_smtps, context=trusting_demo_ca, timeout=SOCKET_TIMEOUT)
    with smtplib.SMTP_SSL(HOST, ports.untrusted_smtps, context=trusting_legacy_ca, timeout=SOCKET_TIMEOUT) as smtps:
        assert smtps.noop()[0] == 250

    assert refuses_connections(ports.down)

    with socket.create_connection((HOST, ports.silent), timeout=SILENCE_CHECKED_FOR) as silent:
        with pytest.raises(TimeoutError):
            silent.recv(1)


def test_test_and_enable_of_every_demo_mailbox_meets_every_kind_of_outcome(restarted_demo: Demo):
    organisation = seed.plan()
    warehouse = organisation.groups[seed.WAREHOUSE] + [organisation.queues["dispatch"]]
    retrying = {job.mailbox.email for job in EnablementJob.select().where(EnablementJob.state == "queued")}
    assert retrying >= set(warehouse), "the first start's test of the warehouse mailboxes is retried"
    enablement.schedule(restarted_demo.actor, Selection.of_view("all"))

    # Late enough for the first start's retries to be due as well.
    after_the_retry_interval = utcnow() + timedelta(minutes=settings.load().retry_interval_minutes + 1)
    runner = EnablementRunner(restarted_demo.store, threads=32, clock=lambda: after_the_retry_interval)
    summary = runner.run(until_idle=True)
    assert summary.tested == Mailbox.select().count(), "every demo mailbox, once"

    head_office_admin = organisation.users[seed.ADMIN_USER]
    assert failure_codes(head_office_admin) == {"incoming": None, "outgoing": None}
    steps = [s["step"] for s in jobs.last_result(row(head_office_admin).id).directions["incoming"]["steps"]]
    assert "verify_delivery" in steps, "the test message went through SMTP into the inbox IMAP reads"
    assert row(head_office_admin).incoming_enabled and row(head_office_admin).outgoing_enabled
    for untested in organisation.untested:
        assert row(untested).overall_status == "success", untested
    for sales in organisation.groups[seed.EXCHANGE]:
        assert failure_codes(sales) == {"incoming": None, "outgoing": None, "act": None}, sales
    branch_ok = organisation.groups[seed.BRANCH][0]
    assert failure_codes(branch_ok) == {"incoming": None, "outgoing": None}
    assert failure_codes(organisation.forward_mailbox) == {"incoming": None}
    for forwarded in organisation.forwarded:
        assert row(forwarded).overall_status == "success", forwarded

    for stale_password in organisation.wrong_password:
        assert failure_codes(stale_password) == {"incoming": "AUTH_FAILED", "outgoing": "AUTH_FAILED"}
        assert row(stale_password).overall_status == "failure"
    for no_password in organisation.without_password:
        assert set(failure_codes(no_password).values()) == {"NO_CREDENTIALS"}
    for legacy in organisation.groups[seed.LEGACY]:
        assert failure_codes(legacy) == {"incoming": "STARTTLS_UNAVAILABLE", "outgoing": "TLS_CERTIFICATE"}
        assert not row(legacy).incoming_enabled and row(legacy).postponed_until is None, "permanent"
    for on_imap in organisation.act_on_imap:
        assert failure_codes(on_imap) == {"incoming": None, "outgoing": None, "act": "ACT_UNSUPPORTED"}
    for waiting in organisation.pending + organisation.rejected:
        assert set(failure_codes(waiting).values()) == {"NOT_APPROVED"}, waiting

    for unreachable in warehouse:
        assert failure_codes(unreachable) == {"incoming": "CONNECTION_REFUSED", "outgoing": "TIMEOUT"}
        assert row(unreachable).postponed_until > after_the_retry_interval, "transient: retried later"
    retries = EnablementJob.select().where((EnablementJob.state == "queued") & (EnablementJob.attempt >= 2)
                                     & (EnablementJob.not_before > after_the_retry_interval))
    assert {job.mailbox.email for job in retries} == set(warehouse)
    silent_steps = jobs.last_result(row(warehouse[0]).id).directions["outgoing"]["steps"]
    assert 2.5 <= sum(s["seconds"] for s in silent_steps) < 6, "the silent server runs out the 3 s timeout"


def test_stop_closes_every_listening_socket_and_open_connection(restarted_demo: Demo):
    listening = [port for name, port in restarted_demo.ports.as_dict().items() if name != "down"]
    for port in listening:
        socket.create_connection((HOST, port), timeout=SOCKET_TIMEOUT).close()
    connected = socket.create_connection((HOST, restarted_demo.ports.silent), timeout=SOCKET_TIMEOUT)

    restarted_demo.stop()

    with connected:
        try:
            assert connected.recv(1) == b"", "the connection was closed"
        except ConnectionResetError:
            pass
    assert all(refuses_connections(port) for port in restarted_demo.ports.as_dict().values())
    assert not restarted_demo.sandbox.running
    restarted_demo.stop()  # a second stop does nothing
