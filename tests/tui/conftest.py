"""Fixtures of the console's flow, snapshot and terminal tests: a real database per test (SQLite or
PostgreSQL, see tests/backends.py),
filled through the services with a small organisation whose every timestamp is fixed afterwards
(so screens look the same on every run), the encrypted-file keyring unlocked once per session,
and ``Console.run`` to drive ``MbxApp`` with Pilot."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest
from rich.console import Console as TextConsole
from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from mbxtui.core import db, dialect
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import AlertLevel
from mbxtui.core.models import Mailbox, database
from mbxtui.core.permissions import Actor
from mbxtui.core.secrets import KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV, SecretStore
from mbxtui.core.services import bulk, mailboxes, operators, profiles, settings, users
from mbxtui.core.services.alerts import raise_alert
from mbxtui.core.services.mailboxes import OVERALL_STATUS_SQL
from mbxtui.core.services.selection import Selection
from mbxtui.core.sql_lists import placeholders
from mbxtui.tui.app import MbxApp
from tests.backends import Databases
from tests.lab.postgres import PostgresServer

MASTER_PASSWORD = "console master pässword"
NO_OS_KEYRING = "keyring.backends.fail.Keyring"
LOGINS = {"admin": "admin", "service": "sam", "system": "syd", "viewer": "vic"}
ROLES = {"service": "service_admin", "system": "system_admin", "viewer": "viewer"}  # besides the first operator
FIXED_TIME = "2024-05-06 09:00:00"

HEAD_OFFICE = "Head office"
BRANCH = "Branch POP3"
AUTH_FAILED_TEXT = "The server refused the user name or password: correct the mailbox's credentials."
TIMEOUT_TEXT = "The server did not answer within 10 seconds: it is down or overloaded; the test is retried."

# (name, address, profile) of the users; each comes with its mailbox (R1).
PEOPLE = (
    ("Ann Archer", "ann@corp.test", HEAD_OFFICE),
    ("Bob Baker", "bob@corp.test", HEAD_OFFICE),
    ("Carla Diaz", "carla@corp.test", HEAD_OFFICE),
    ("Dmitri Ivanov", "dmitri@corp.test", HEAD_OFFICE),
    ("Erin Walsh", "erin@corp.test", HEAD_OFFICE),
    ("Farah Khan", "farah@corp.test", HEAD_OFFICE),
    ("Gus Lee", "gus@corp.test", BRANCH),
    ("Hana Sato", "hana@corp.test", BRANCH),
    ("Ivo Novak", "ivo@corp.test", BRANCH),
    ("Jade Park", "jade@corp.test", HEAD_OFFICE),
)
QUEUES = (("Support", "support@corp.test", "ann@corp.test"), ("Orders", "orders@corp.test", "bob@corp.test"))
FORWARD = ("Inbound forwarding", "fwd@corp.test")
APPROVED = ("ann@corp.test", "bob@corp.test", "carla@corp.test", "dmitri@corp.test", "erin@corp.test",
            "gus@corp.test", "hana@corp.test", "support@corp.test", "fwd@corp.test")
REJECTED = ("ivo@corp.test",)
PASSED = ("ann@corp.test", "carla@corp.test", "gus@corp.test", "support@corp.test")
DEACTIVATED = "dmitri@corp.test"
AUTH_FAILED_MAILBOX = "bob@corp.test"
TIMEOUT_MAILBOX = "hana@corp.test"


@dataclass
class Console:
    """An organisation's database and what the console needs to open on it."""

    db_path: Path | str
    data_dir: Path
    store: SecretStore
    actors: dict[str, Actor]  # by role: admin, service, system, viewer

    @property
    def admin(self) -> Actor:
        return self.actors["admin"]

    def app(self, role: str = "admin", *, run_tests: bool = False, store: SecretStore | None | bool = True,
            threads: int = 8) -> MbxApp:
        """The console as ``role``; ``store`` True gives it the unlocked session store."""
        return MbxApp(self.actors[role], db_path=self.db_path, data_dir=self.data_dir, run_tests=run_tests,
                      threads=threads, store=self.store if store is True else store)

    def run(self, scenario: Callable[[MbxApp, Pilot], Awaitable[None]], role: str = "admin", *,
            size: tuple[int, int] = (80, 24), **options: Any) -> MbxApp:
        """Run ``scenario`` against the console at ``size``; returns the app once it has stopped."""
        app = self.app(role, **options)

        async def main() -> None:
            async with app.run_test(size=size) as pilot:
                await pilot.pause()
                await scenario(app, pilot)

        asyncio.run(main())
        return app


@pytest.fixture(scope="session")
def unlocked_store(tmp_path_factory: pytest.TempPathFactory) -> SecretStore:
    """The encrypted-file keyring (no OS keyring), unlocked once: a key derivation costs a second.
    Every database has its own install id in its secret keys, so tests never share a secret."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHON_KEYRING_BACKEND", NO_OS_KEYRING)
        env.delenv(KEYRING_CHOICE_ENV, raising=False)
        env.delenv(MASTER_PASSWORD_ENV, raising=False)
        store = SecretStore.open(tmp_path_factory.mktemp("console-secrets"))
    assert store.needs_master_password, f"expected the encrypted file, got {store!r}"
    store.unlock(MASTER_PASSWORD)
    return store


@pytest.fixture
def console_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment of a machine without an OS keyring, with the data directory in ``tmp_path``
    and the default dark theme in full colour (what the snapshots show)."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", NO_OS_KEYRING)
    monkeypatch.setenv("MBXTUI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MBXTUI_THEME", "textual-dark")
    for name in ("NO_COLOR", KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV, "MBXTUI_DB"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


_pg_consoles = itertools.count(1)


@pytest.fixture
def pg_console(console_env: Path, unlocked_store: SecretStore, server: PostgresServer) -> Iterator[Console]:
    """The organisation of ``seed_organisation`` in a new database of ``server``: a PostgreSQL
    server of the asking module's own (its fixture of that name), which its tests stop or fill."""
    name = f"console_{next(_pg_consoles)}"
    url = server.create_database(name)
    opened = db.open_database(url)
    try:
        yield Console(url, console_env, unlocked_store, seed_organisation())
    finally:
        opened.close()
        database.close()
        server.drop_database(name)


@pytest.fixture
def console(console_env: Path, unlocked_store: SecretStore, databases: Databases) -> Iterator[Console]:
    """The organisation of ``seed_organisation`` in a fresh database."""
    db_path = databases.new(console_env)
    opened = db.open_database(db_path)
    try:
        actors = seed_organisation()
        yield Console(db_path, console_env, unlocked_store, actors)
    finally:
        opened.close()
        databases.drop(db_path)


def seed_organisation(admin_login: str = LOGINS["admin"]) -> dict[str, Actor]:
    """Fill the open, empty database: operators of every role, two profiles, ten users, two queues
    and a forward mailbox in every state a screen shows (approved, pending, rejected, passed, failed,
    postponed, never tested, inactive), alerts of each level and one mailbox's test step by step.
    Every timestamp is then set to a fixed value. ``admin_login`` is the global admin, whose user is
    Ann (so "My Mailboxes" has rows); the other operators are sam, syd and vic."""
    admin = operators.initialise(login=admin_login)
    for role, role_name in ROLES.items():
        operators.add(admin, LOGINS[role], role_name)
    profiles.create(admin, name=HEAD_OFFICE, type="imap_smtp", incoming_host="imap.corp.test", incoming_port=993,
                    incoming_tls="implicit", incoming_auth="mailbox", outgoing_host="smtp.corp.test",
                    outgoing_port=587, outgoing_tls="starttls", outgoing_auth="mailbox", max_connections=20,
                    timeout_seconds=10)
    profiles.create(admin, name=BRANCH, type="pop3_smtp", incoming_host="pop.branch.test", incoming_port=995,
                    incoming_tls="implicit", incoming_auth="mailbox", outgoing_host="smtp.branch.test",
                    outgoing_port=465, outgoing_tls="implicit", outgoing_auth="mailbox", timeout_seconds=10)
    settings.update(admin, default_profile=HEAD_OFFICE)
    for name, email, _ in PEOPLE:
        users.add_user(admin, name, email)
    for name, email, owner in QUEUES:
        users.add_queue(admin, name, email, owner)
    mailboxes.create_forward_mailbox(admin, name=FORWARD[0], email=FORWARD[1], profile=HEAD_OFFICE,
                                     owner="ann@corp.test")
    profiles.update(admin, HEAD_OFFICE, owner="ann@corp.test")
    profiles.update(admin, BRANCH, owner="gus@corp.test")
    database.execute_sql("UPDATE operator SET user_id = (SELECT id FROM \"user\" WHERE email = 'ann@corp.test') "
                         "WHERE login = ?", [admin_login])
    bulk.bulk_edit(admin, Selection.of_emails([e for _, e, p in PEOPLE if p == BRANCH]), profile=BRANCH)
    bulk.approve(admin, Selection.of_emails(APPROVED))
    bulk.reject(admin, Selection.of_emails(REJECTED))
    _record_test_results()
    users.deactivate_user(admin, DEACTIVATED)
    _fix_timestamps()
    logins = {**LOGINS, "admin": admin_login}
    return {role: operators.current_actor(login=login) for role, login in logins.items()}


def _record_test_results() -> None:
    """Outcomes as Test & Enable leaves them: passed, a permanent failure with its steps, a
    transient failure waiting for its retry."""
    enabled = ("incoming_status = 'success', outgoing_status = 'success', incoming_enabled = 1, "
               "outgoing_enabled = 1")
    database.execute_sql(f"UPDATE mailbox SET {enabled} WHERE email IN ({placeholders(PASSED)})", list(PASSED))
    database.execute_sql("UPDATE mailbox SET incoming_status = 'success', incoming_enabled = 1 WHERE email = ?",
                         [FORWARD[1]])
    database.execute_sql(
        "UPDATE mailbox SET incoming_status = 'failure', outgoing_status = 'success', outgoing_enabled = 1, "
        "last_error_code = 'AUTH_FAILED', last_error_text = ?, test_last_attempted_by = 'syd' WHERE email = ?",
        [AUTH_FAILED_TEXT, AUTH_FAILED_MAILBOX])
    database.execute_sql(
        "UPDATE mailbox SET incoming_status = 'success', incoming_enabled = 1, outgoing_status = 'failure', "
        "last_error_code = 'TIMEOUT', last_error_text = ?, transient_failures = 1, "
        "postponed_until = '2024-05-06 09:05:00' WHERE email = ?", [TIMEOUT_TEXT, TIMEOUT_MAILBOX])
    database.execute_sql(f"UPDATE mailbox SET overall_status = {OVERALL_STATUS_SQL}")
    steps = {
        "incoming": {"protocol": "imap", "ok": False, "steps": [
            {"step": "connect", "ok": True, "seconds": 0.0031, "detail": "imap.corp.test:993"},
            {"step": "tls", "ok": True, "seconds": 0.0122, "detail": "TLSv1.3"},
            {"step": "authenticate", "ok": False, "seconds": 0.5012, "detail": "LOGIN refused"}],
            "failure": {"step": "authenticate", "code": "AUTH_FAILED", "transient": False,
                        "message": AUTH_FAILED_TEXT}},
        "outgoing": {"protocol": "smtp", "ok": True, "steps": [
            {"step": "connect", "ok": True, "seconds": 0.0027, "detail": "smtp.corp.test:587"},
            {"step": "tls", "ok": True, "seconds": 0.0104, "detail": "STARTTLS, TLSv1.3"},
            {"step": "authenticate", "ok": True, "seconds": 0.0041, "detail": "AUTH PLAIN"},
            {"step": "send", "ok": True, "seconds": 0.0068, "detail": "test message accepted"}],
            "failure": None},
    }
    bob = Mailbox.get(Mailbox.email == AUTH_FAILED_MAILBOX)
    with write_transaction():
        batch = database.execute_sql(
            "INSERT INTO test_batch (requested_by, requested_on, description, total) "
            "VALUES ('syd', ?, 'Test & Enable', 1) RETURNING id", [FIXED_TIME]).fetchone()[0]
        database.execute_sql(
            "INSERT INTO test_job (batch_id, mailbox_id, requested_by, state, outcome, attempt, started_on, "
            "finished_on, result) VALUES (?, ?, 'syd', 'done', 'failed', 1, ?, ?, ?)",
            [batch, bob.id, FIXED_TIME, FIXED_TIME, json.dumps(steps)])
        ann = Mailbox.get(Mailbox.email == "ann@corp.test")
        hana = Mailbox.get(Mailbox.email == TIMEOUT_MAILBOX)
        raise_alert(AlertLevel.ERROR, "AUTH_FAILED",
                    f"incoming test of {bob.email} failed: {AUTH_FAILED_TEXT}; incoming is disabled", mailbox=bob)
        raise_alert(AlertLevel.WARNING, "TIMEOUT", f"outgoing test of {hana.email} failed for now: {TIMEOUT_TEXT} "
                    "(retry 1 of 10 at 09:05 UTC)", mailbox=hana)
        raise_alert(AlertLevel.INFORMATION, "CONNECTED", "ann@corp.test is connected: enabled for incoming, "
                    "outgoing", mailbox=ann)


def _fix_timestamps() -> None:
    """Every date the screens show, set to fixed values: creation order is kept a minute apart."""
    later = dialect.current().plus_seconds
    minute = later("?", "id * 60")
    statements = [
        f'UPDATE "user" SET created_on = {minute}',
        f"UPDATE queue SET created_on = {minute}",
        f"UPDATE operator SET created_on = {minute}",
        f"UPDATE profile SET created_on = {minute}, modified_on = {minute}",
        f"UPDATE mailbox SET created_on = {minute}, modified_on = {minute}",
        f"UPDATE mailbox SET approved_on = {later('?', '3600')} WHERE approved_on IS NOT NULL",
        f"UPDATE mailbox SET test_completed_on = {later('?', '7200')}, test_last_attempted_on = "
        f"{later('?', '7200')} WHERE incoming_status != 'not_run' OR outgoing_status != 'not_run'",
        f"UPDATE alert SET created_on = {later('?', '10800 + id * 60')}",
        f"UPDATE audit_entry SET at = {minute}",
    ]
    with write_transaction():
        for statement in statements:
            database.execute_sql(statement, [FIXED_TIME] * statement.count("?"))


async def settle(app: MbxApp, pilot: Pilot) -> None:
    """Let thread workers finish and their results reach the screen, and the loads those results
    start (a screen just pushed starts its load once mounted) until none is left. The Test & Enable
    runner, which runs as long as the console, is not waited for."""

    def busy() -> list:
        return [worker for worker in app.workers if worker.group != "test-runner" and not worker.is_finished]

    for _ in range(100):
        await pilot.pause()
        running = busy()
        if running:
            # A load a newer one replaced (exclusive workers) ends cancelled: settled all the same.
            with contextlib.suppress(WorkerCancelled):
                await app.workers.wait_for_complete(running)
            continue
        await pilot.pause()
        if not busy():
            return
    raise AssertionError(f"the console kept starting workers: {busy()}")


def notifications(app: MbxApp) -> list[str]:
    return [notification.message for notification in app._notifications]


def screen_text(app: MbxApp) -> str:
    """What the terminal shows now (modal screens over what they cover), as plain text."""
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    terminal = TextConsole(width=app.size.width, height=app.size.height, file=io.StringIO(), record=True,
                           color_system=None, force_terminal=True, legacy_windows=False)
    terminal.print(update)
    return terminal.export_text(styles=False)


def offered(screen, key: str) -> bool:
    """Whether the Footer and the palette offer the key as usable (refused actions are greyed out)."""
    active = screen.active_bindings.get(key)
    return active is not None and active.enabled
