"""``mbxtui demo``: the console on a made-up organisation, Fernhill Logistics, whose Test & Enable
really connects to mail servers: sandbox IMAP, POP3 and SMTP servers the demo runs on 127.0.0.1
for as long as it runs.

Everything lives in the demo's own directory (``$MBXTUI_DEMO_DIR``, else ``demo`` in mbxtui's
data directory), never in the real database or keyring:

* ``mbxtui-demo.db``: the demo database, made on the first start and reused after
  (``--reset`` starts over);
* ``secrets.cfg``: the encrypted-file keyring of the demo, whose master password is
  ``DEMO_MASTER_PASSWORD`` ("demo");
* ``demo-ca.pem`` and ``legacy-ca.pem``: the certificate authorities of the sandbox servers;
* ``servers.log``: what the sandbox servers refused, and why.

On the sandbox servers every mailbox's password is ``fernhill-demo`` (``MAILBOX_PASSWORD``); the
profiles that use profile credentials log in as ``svc-mailsync@fernhill.example``. The demo's
deliberate faults, and how to fix the fixable ones from the console:

* Branch POP3: a few mailboxes have an out-of-date password (AUTH_FAILED; set the password to
  ``fernhill-demo``) and one has none (NO_CREDENTIALS);
* Legacy mail: its IMAP server does not offer STARTTLS (STARTTLS_UNAVAILABLE; set incoming TLS
  to none) and its SMTP server's certificate comes from a CA the profile does not trust
  (TLS_CERTIFICATE; set the profile's CA file to ``legacy-ca.pem``);
* Warehouse server: its IMAP server is down (CONNECTION_REFUSED, retried) and its SMTP server
  never answers (TIMEOUT, retried);
* a few head office mailboxes synchronize appointments, contacts and tasks, which IMAP cannot
  (ACT_UNSUPPORTED), and some addresses wait for approval (NOT_APPROVED when tested);
* Exchange Online (OAuth2): its tokens come from the demo's identity provider (identity_provider.py),
  whose app was never granted one mailbox (OAUTH_PERMISSION_MISSING; ``mbxtui mailbox authorize``
  gives that mailbox its own grant, approved on the provider's sign-in page, delegation.py).

``main_servers_only`` also prints the ``profile detect`` command that finds the sandbox through the
demo's DNS server (dns_server.py).

While the demo runs, its inboxes receive a trickle of mail (see trickle.py) and the console
processes the enabled mailboxes, so activities arrive as a newcomer watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from peewee import SqliteDatabase

from mbxtui.core import db, paths
from mbxtui.core.errors import MbxError, NotFound, NotInitialised, PermissionDenied
from mbxtui.core.permissions import SYSTEM, Actor
from mbxtui.core.secrets import (KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV, SECRETS_BACKUP_NAME, SECRETS_FILE_NAME,
                                 SecretStore)
from mbxtui.core.services import credentials, operators, profiles
from mbxtui.core.services.selection import Selection
from mbxtui.demo import seed
from mbxtui.demo.certs import CA_FILE_NAME, LEGACY_CA_FILE_NAME, make_certificates
from mbxtui.demo.identity_provider import SIGN_IN_PAGE
from mbxtui.demo.mailsystem import MAILBOX_PASSWORD, MailSystem
from mbxtui.demo.sandbox import HOST, Sandbox, SandboxPorts
from mbxtui.demo.trickle import DEFAULT_COUNT, DEFAULT_INTERVAL, Trickle, plan as trickle_plan

__all__ = [
    "DATABASE_NAME", "DEMO_MASTER_PASSWORD", "MAILBOX_PASSWORD", "Demo", "demo_directory", "detect_command",
    "main_servers_only",
    "open_demo_store", "prepare_demo", "run_demo",
]

DEMO_DIR_ENV = "MBXTUI_DEMO_DIR"
DEMO_MASTER_PASSWORD = "demo"
DATABASE_NAME = "mbxtui-demo.db"
SERVERS_LOG_NAME = "servers.log"
_SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def demo_directory() -> Path:
    override = os.environ.get(DEMO_DIR_ENV)
    return Path(override).expanduser() if override else paths.data_dir() / "demo"


@dataclass
class Demo:
    """A prepared demo: its database open, its sandbox servers running. :meth:`stop` ends both."""

    directory: Path
    db_path: Path
    actor: Actor  # the operator running the demo (global_admin)
    store: SecretStore  # the demo's keyring, unlocked
    ports: SandboxPorts
    sandbox: Sandbox
    database: SqliteDatabase
    created: bool  # True when the demo organisation was made by this start
    trickle: Trickle | None = None

    def start_trickle(self, count: int = DEFAULT_COUNT, interval: float = DEFAULT_INTERVAL, *,
                      first_delay: float | None = None, run: str | None = None) -> Trickle:
        """Start the trickle of mail into the sandbox's inboxes (``run``: the stamp of its
        Message-IDs, by default this moment's)."""
        deliveries = trickle_plan(seed.plan(), count, run=run or format(time.time_ns() // 1_000_000, "x"))
        options = {} if first_delay is None else {"first_delay": first_delay}
        self.trickle = Trickle(self.sandbox.mail, deliveries, interval, **options).start()
        return self.trickle

    def stop(self) -> None:
        if self.trickle is not None:
            self.trickle.stop()
        self.sandbox.stop()
        self.database.close()


def prepare_demo(directory: Path, reset: bool = False, db_path: Path | None = None) -> Demo:
    """Start the sandbox servers, make the demo database (or reuse it; ``reset`` deletes it and
    starts over) and point the demo profiles at the servers' ports. ``db_path`` defaults to
    ``mbxtui-demo.db`` in ``directory``. Neither may be mbxtui's own: the demo removes what it
    finds of an earlier demo there."""
    directory = Path(directory).expanduser().resolve()
    db_path = Path(db_path).expanduser().resolve() if db_path is not None else directory / DATABASE_NAME
    if directory == paths.data_dir().expanduser().resolve():
        raise MbxError(f"{directory} is mbxtui's own data directory: the demo needs a directory of its own")
    if db_path == Path(paths.default_database()).expanduser().resolve():
        raise MbxError(f"{db_path} is mbxtui's own database: the demo needs a database of its own")
    paths.ensure_private_dir(directory)
    fresh = reset or not db_path.exists()
    if fresh:
        _remove_demo_files(directory, db_path)
    certificates = make_certificates(directory)
    sandbox = Sandbox(certificates, MailSystem(), log_file=directory / SERVERS_LOG_NAME)
    ports = sandbox.start()
    try:
        store = open_demo_store(directory)
        login = operators.os_login()
        if fresh:
            _create_database(db_path, login, ports, certificates.ca_file, store)
        database = db.open_database(db_path)
        try:
            actor = _demo_actor(db_path, login)
            _point_profiles_at(ports, directory)
        except BaseException:
            database.close()
            raise
    except BaseException:
        sandbox.stop()
        raise
    return Demo(directory, db_path, actor, store, ports, sandbox, database, created=fresh)


def open_demo_store(directory: Path) -> SecretStore:
    """The demo's encrypted-file keyring, unlocked with the demo master password, whatever keyring
    or master password the environment names for the real one."""
    with _environment({KEYRING_CHOICE_ENV: "file", MASTER_PASSWORD_ENV: None}):
        store = SecretStore.open(directory)
    store.unlock(DEMO_MASTER_PASSWORD)
    return store


def run_demo(reset: bool = False, db_path: Path | None = None) -> int:
    """Prepare the demo and open the console on it; the servers stop when the console ends, however
    it ends. Returns the exit status."""
    from mbxtui.tui.app import MbxApp

    directory = demo_directory()
    first_start = reset or not (db_path or directory / DATABASE_NAME).exists()
    doing = "making the demo organisation (a few seconds)" if first_start else "starting the demo"
    print(f"mbxtui demo: {doing} in {directory} ...", file=sys.stderr, flush=True)
    demo = prepare_demo(directory, reset=reset, db_path=db_path)
    try:
        demo.start_trickle()
        app = MbxApp(demo.actor, db_path=demo.db_path, data_dir=demo.directory, store=demo.store, process=True)
        _run_until_exit_or_signal(app)
    finally:
        demo.stop()
    print(f"mbxtui demo: the demo's data stays in {directory}; `mbxtui demo --reset` starts over.",
          file=sys.stderr)
    return app.return_code or 0


def main_servers_only(reset: bool = False, db_path: Path | None = None) -> int:
    """Prepare the demo and keep its sandbox servers running without the console, until SIGINT,
    SIGTERM or SIGHUP: for the command line, scripts and tests. Prints where everything is."""
    directory = demo_directory()
    demo = prepare_demo(directory, reset=reset, db_path=db_path)
    stop_requested = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop_requested.set())
    try:
        demo.start_trickle()
        print("mbxtui demo: the sandbox mail servers are running, and receive a trickle of mail; "
              "ctrl+c stops them.")
        for name, port in demo.ports.as_dict().items():
            print(f"  {name:<16} {HOST}:{port}")
        print("The command line works on the demo with:")
        print(f"  export MBXTUI_DB={shlex.quote(str(demo.db_path))} "
              f"MBXTUI_DATA_DIR={shlex.quote(str(demo.directory))} "
              f"{KEYRING_CHOICE_ENV}=file {MASTER_PASSWORD_ENV}={DEMO_MASTER_PASSWORD}")
        print("Then settings detection finds the sandbox's servers for the demo domain:")
        print(f"  {detect_command(demo)}")
        print("A mailbox authorizes itself (`mbxtui mailbox authorize EMAIL` prints a code) at the demo's sign-in page:")
        print(f"  {demo.ports.oauth_url}{SIGN_IN_PAGE}  (every mailbox's password: {MAILBOX_PASSWORD})", flush=True)
        # Waited in short steps: the kernel may hand the signal to another thread, and Python runs
        # its handler only when the main thread runs again; an endless wait never did (under load,
        # 1 SIGTERM in 4 left the demo running).
        while not stop_requested.wait(0.2):
            pass
    finally:
        demo.stop()
    return 0


def detect_command(demo: Demo) -> str:
    """The ``profile detect`` a newcomer types to see the demo's DNS server and sandbox found."""
    return (f"mbxtui profile detect {seed.plan().users[seed.ADMIN_USER]} --dns-server {HOST}:{demo.ports.dns} "
            f"--ca-file {shlex.quote(str(demo.directory / CA_FILE_NAME))}")


def _run_until_exit_or_signal(app) -> None:
    """Run the console; SIGTERM, SIGHUP and SIGINT close it the way ctrl+q does, so the terminal is
    restored and the caller's clean-up runs."""
    loop = asyncio.new_event_loop()
    handled = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    try:
        if threading.current_thread() is threading.main_thread():
            for signal_number in handled:
                loop.add_signal_handler(signal_number, app.exit)
        app.run(loop=loop)
    finally:
        for signal_number in handled:
            loop.remove_signal_handler(signal_number)
        loop.close()


def _create_database(db_path: Path, login: str, ports: SandboxPorts, ca_file: Path, store: SecretStore) -> None:
    """Seed a new database beside ``db_path``, copy it with SQLite's backup API into a new file and
    move that into place once complete: an interrupted first start leaves nothing half made, and the
    copy holds every commit of the seeding, its write-ahead log's too, whether or not a thread of the
    seeding still has a connection open on it (moving the seeded file itself, its WAL deleted, would
    have lost what such a connection kept from being checkpointed)."""
    seeding = db_path.with_name(f".{db_path.name}.seeding")
    copy = db_path.with_name(f".{db_path.name}.copy")
    _remove_database(seeding)
    _remove_database(copy)
    database = db.open_database(seeding)
    try:
        seed.seed(login, ports, ca_file, store)
    finally:
        database.close()
    os.close(paths.open_owner_only(copy, os.O_EXCL))
    source = sqlite3.connect(seeding)
    try:
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
    os.replace(copy, db_path)
    _remove_database(seeding)


def _demo_actor(db_path: Path, login: str) -> Actor:
    try:
        return operators.current_actor(login=login)
    except (NotInitialised, PermissionDenied):
        raise MbxError(
            f"{login} is not an operator of the demo database {db_path} (it was made for another "
            "login): run `mbxtui demo --reset` to make a new one"
        ) from None


def _point_profiles_at(ports: SandboxPorts, directory: Path) -> None:
    """The servers listen on new ports at every start: the demo profiles follow them, and follow
    the demo's CA files should the demo directory have moved. Profiles the operator renamed are left
    alone, and so is a CA file of the operator's choosing. The sandbox is the same servers on new
    ports, so secrets confirmed for it stay confirmed (R34); those the operator left unconfirmed
    stay unconfirmed."""
    for name, (incoming, outgoing) in seed.PROFILE_PORTS.items():
        try:
            profile = profiles.get(name)
        except NotFound:
            continue
        changes = {"incoming_port": getattr(ports, incoming), "outgoing_port": getattr(ports, outgoing)}
        if profile.oauth_issuer and urlsplit(profile.oauth_issuer).hostname == HOST:
            changes["oauth_issuer"] = ports.oauth_url  # the demo's identity provider, on its new port
        if profile.ca_file and Path(profile.ca_file).name in (CA_FILE_NAME, LEGACY_CA_FILE_NAME):
            changes["ca_file"] = str(directory / Path(profile.ca_file).name)
        profile_confirmed = profiles.secret_endpoint_state(profile) == credentials.CONFIRMED
        confirmed_mailboxes = credentials.confirmed_mailbox_ids(name)
        profiles.update(SYSTEM, name, **changes)
        if profile_confirmed:
            credentials.confirm_profile_secret(SYSTEM, name)
        if confirmed_mailboxes:
            credentials.confirm_mailbox_secrets(SYSTEM, Selection.of_ids(confirmed_mailboxes))


def _remove_demo_files(directory: Path, db_path: Path) -> None:
    """What belongs to a previous demo: its database, the secrets keyed to it, its certificates."""
    _remove_database(db_path)
    for name in (SECRETS_FILE_NAME, f"{SECRETS_FILE_NAME}.lock", SECRETS_BACKUP_NAME, CA_FILE_NAME,
                 LEGACY_CA_FILE_NAME):
        (directory / name).unlink(missing_ok=True)


def _remove_database(path: Path) -> None:
    for suffix in ("", *_SQLITE_COMPANIONS):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextlib.contextmanager
def _environment(values: dict[str, str | None]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
