"""Test & Enable end to end: a real database per test (SQLite or PostgreSQL, see tests/backends.py), secrets in the encrypted-file keyring,
profiles pointing at the mail lab, and the job runner with a clock the test moves.

The encrypted file costs about a second to unlock, so one store (and its data directory) serves the
whole session; every test's database has its own install id, which every secret key carries, so
tests never see each other's secrets.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest

from mbxtui.core import db
from mbxtui.core.jobs.runner import EnablementRunner, RunSummary
from mbxtui.core.models import Alert, EnablementJob, Mailbox, User, utcnow
from mbxtui.core.permissions import Actor
from mbxtui.core.secrets import KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV, SecretStore
from mbxtui.core.services import bulk, credentials, enablement, imports, mailboxes, operators, profiles, users
from mbxtui.core.services.profiles import ProfileRecord
from mbxtui.core.services.selection import Selection
from tests.backends import Databases, dump, query
from tests.lab import MailLab

MASTER_PASSWORD = "integration master pässword"
NO_OS_KEYRING = "keyring.backends.fail.Keyring"
PROFILE_OWNER = "profile.owner@corp.test"
REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MBXTUI_DATA_DIR for the session: holds the encrypted secrets file."""
    return tmp_path_factory.mktemp("mbxtui-data")


@pytest.fixture(scope="session")
def secret_store(secrets_dir: Path) -> SecretStore:
    """The encrypted-file keyring, chosen the way a machine without an OS keyring chooses it."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHON_KEYRING_BACKEND", NO_OS_KEYRING)
        env.delenv(KEYRING_CHOICE_ENV, raising=False)
        env.delenv(MASTER_PASSWORD_ENV, raising=False)
        store = SecretStore.open(secrets_dir)
    assert store.needs_master_password, f"expected the encrypted file, got {store!r}"
    store.unlock(MASTER_PASSWORD)
    return store


class Clock:
    """The runner's clock: starts now, moves only when the test says (retries become due without
    sleeping)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Org:
    """An organisation's database with its global admin, wired to the mail lab."""

    lab: MailLab
    db_path: Path | str
    admin: Actor
    store: SecretStore
    secrets_dir: Path
    workdir: Path  # the test's own files
    clock: Clock = field(default_factory=Clock)

    # -- setting up --

    def profile(self, name: str, **fields: Any) -> ProfileRecord:
        """A profile for the lab: IMAP over implicit TLS, SMTP with STARTTLS, mailbox
        credentials, the lab's CA, delivery verified; ``fields`` override any of it."""
        values = {
            "type": "imap_smtp",
            "incoming_host": self.lab.host, "incoming_port": self.lab.ports["imaps"],
            "incoming_tls": "implicit", "incoming_auth": "mailbox",
            "outgoing_host": self.lab.host, "outgoing_port": self.lab.ports["smtp"],
            "outgoing_tls": "starttls", "outgoing_auth": "mailbox",
            "ca_file": self.lab.ca_file, "verify_delivery": True, "timeout_seconds": 5,
            "owner": PROFILE_OWNER,
            **fields,
        }
        created = profiles.create(self.admin, name=name, **values)
        if values["incoming_auth"] == "profile" or values["outgoing_auth"] == "profile":
            credentials.set_profile_secret(self.admin, name, self.lab.master_password, self.store)
        return created

    def mailbox(self, email: str, profile: str, *, password: str | None = None, approve: bool = True,
                **edits: Any) -> Mailbox:
        """A user and its mailbox on ``profile``; ``password`` defaults to the lab's for that
        address when the profile uses mailbox credentials. ``edits`` go to mailboxes.edit."""
        users.add_user(self.admin, email.split("@")[0], email)
        mailboxes.edit(self.admin, email, profile=profile, **edits)
        if approve:
            bulk.approve(self.admin, Selection.of_emails([email]))
        target = profiles.get(profile)
        if password is None and "mailbox" in (target.incoming_auth, target.outgoing_auth):
            password = self.lab.users.get(edits.get("username") or email)
        if password is not None:
            credentials.set_mailbox_secret(self.admin, email, password, self.store)
        return mailboxes.get(email)

    def bulk_mailboxes(self, logins: list[str], profile: str, **methods: str) -> None:
        """Users and mailboxes for many lab logins at once, approved, on ``profile`` (which should
        act for them with profile credentials: no per-mailbox secrets). ``methods`` (incoming,
        outgoing, act) go to bulk.bulk_edit."""
        csv_path = self.workdir / "users.csv"
        csv_path.write_text("name,email\n" + "".join(f"{login.split('@')[0]},{login}\n" for login in logins),
                            encoding="utf-8")
        imports.import_csv(self.admin, "users", csv_path)
        selection = Selection.of_emails(logins)
        bulk.bulk_edit(self.admin, selection, profile=profile, **methods)
        bulk.approve(self.admin, selection)

    # -- running --

    def schedule(self, *emails: str) -> int:
        return enablement.schedule(self.admin, Selection.of_emails(emails)).batch_id

    def runner(self, **options: Any) -> EnablementRunner:
        options.setdefault("threads", 8)
        return EnablementRunner(self.store, clock=self.clock, **options)

    def test_enable(self, *emails: str, **runner_options: Any) -> RunSummary:
        """Schedule Test & Enable for ``emails`` and run every due job until none is left."""
        self.schedule(*emails)
        return self.runner(**runner_options).run()

    # -- looking --

    def row(self, email: str) -> Mailbox:
        return Mailbox.get(Mailbox.email == email)

    def alerts(self, email: str | None = None, **where: Any) -> list[Alert]:
        query = Alert.select().order_by(Alert.id)
        if email is not None:
            query = query.where(Alert.mailbox == self.row(email).id)
        for name, value in where.items():
            query = query.where(getattr(Alert, name) == value)
        return list(query)

    def jobs_of(self, email: str) -> list[EnablementJob]:
        return list(EnablementJob.select().where(EnablementJob.mailbox == self.row(email).id).order_by(EnablementJob.id))

    def user_id(self, email: str) -> int:
        return User.get(User.email == email).id

    # -- the command line --

    def cli_env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if key not in (KEYRING_CHOICE_ENV, "MBXTUI_DB", "NO_COLOR")}
        env.update({
            "PYTHON_KEYRING_BACKEND": NO_OS_KEYRING,
            "MBXTUI_DATA_DIR": str(self.secrets_dir),
            MASTER_PASSWORD_ENV: MASTER_PASSWORD,
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        return env

    def cli_command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mbxtui", "--db", str(self.db_path), *args]

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Run ``mbxtui --db THIS_DB ARGS...`` in a child process, as an operator would."""
        return subprocess.run(self.cli_command(*args), env=self.cli_env(), cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)

    def cli_start(self, *args: str) -> subprocess.Popen:
        """Start ``mbxtui --db THIS_DB ARGS...`` in a child process and return at once."""
        return subprocess.Popen(self.cli_command(*args), env=self.cli_env(), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def job_states(db_path: Path | str) -> dict[str, int]:
    """Test jobs per state, read the way another process sees the database."""
    return {row[0]: row[1] for row in query(db_path, "SELECT state, count(*) FROM test_job GROUP BY state")}


def stored_bytes(db_path: Path | str) -> bytes:
    """What the database holds: the SQLite file and its write-ahead log as they are on disk, or on
    PostgreSQL every row of every table."""
    if isinstance(db_path, str):
        return "\n".join(dump(db_path)).encode()
    return b"".join(path.read_bytes() for path in (db_path, Path(f"{db_path}-wal")) if path.exists())


@pytest.fixture
def org(mail_lab: MailLab, secret_store: SecretStore, secrets_dir: Path, databases: Databases,
        tmp_path: Path) -> Iterator[Org]:
    """A fresh database whose first operator (the OS login, as the command line sees it) is the
    global admin, with the user who owns the lab profiles."""
    db_path = databases.new(tmp_path)
    database = db.open_database(db_path)
    try:
        admin = operators.initialise()
        users.add_user(admin, "Profile Owner", PROFILE_OWNER)
        yield Org(mail_lab, db_path, admin, secret_store, secrets_dir, tmp_path)
    finally:
        database.close()
        databases.drop(db_path)
