"""The machine the product runs on, running short under it: too few file descriptors for the
worker's threads, and the keyring going away mid-run (its encrypted file deleted or re-encrypted
by another process, the Secret Service stopped). Against the real mail lab, real databases and
real keyrings (the encrypted file; a gnome-keyring-daemon on a D-Bus bus of the test's own)."""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from textual.pilot import Pilot

from mbxtui.core import descriptors, secrets
from mbxtui.core.jobs.runner import EnablementRunner
from mbxtui.core.models import Profile
from mbxtui.core.secrets import KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV, SecretsError, SecretStore
from mbxtui.core.services import bulk, credentials, mailboxes, outgoing, users
from mbxtui.core.services.selection import Selection
from mbxtui.tui.app import MbxApp
from tests.backends import query
from tests.integration.conftest import (  # noqa: F401  (fixtures)
    MASTER_PASSWORD, NO_OS_KEYRING, REPO_ROOT, Org, org, secret_store, secrets_dir,
)
from tests.tui.conftest import Console, console, console_env, notifications, unlocked_store  # noqa: F401  (fixtures)

pytestmark = pytest.mark.servers

LOW_LIMIT = 64
THREADS = "32"
MAILBOXES = 40
WORKER_TIMEOUT = 180.0
FROZEN_KEYRING_WAIT = 60.0


# -- too few file descriptors ----------------------------------------------------------------------

def _limited(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    return preexec


# Runs `mbxtui ARGS...` after taking all but ``keep`` free descriptors for itself, once the
# worker's descriptor budget has been measured: the budget is then too generous, and the limit is
# reached anyway (as when a library or a plug-in holds files the budget did not count).
_EAT_DESCRIPTORS = """
import os, sys
from mbxtui.core import descriptors, secrets
descriptors.shared_budget()
keep = int(sys.argv[1])
held = [os.open(os.devnull, os.O_RDONLY) for _ in range(descriptors.soft_limit() - descriptors.open_descriptors() - keep)]
sys.argv = ["mbxtui", *sys.argv[2:]]
from mbxtui.cli import main
raise SystemExit(main())
"""


def _lab_mailboxes(org: Org, prefix: str) -> list[str]:
    logins = org.lab.add_users(MAILBOXES, prefix=prefix)
    org.profile("wide", max_connections=32, incoming_auth="profile", outgoing_auth="profile",
                username=org.lab.master_login)
    org.bulk_mailboxes(logins, "wide")
    for sender, recipient in zip(logins, logins[1:] + logins[:1]):  # sent by the pass after the tests
        outgoing.queue_email(org.admin, sender, [recipient], [], "Under a low limit", "Hello.")
    org.schedule(*logins)
    return logins


def _worker_under_limit(org: Org, command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=org.cli_env(), cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=WORKER_TIMEOUT, stdin=subprocess.DEVNULL, preexec_fn=_limited(LOW_LIMIT))


def _no_mailbox_blamed(org: Org, logins: list[str]) -> None:
    """Every mailbox passed its test; no failure was recorded for R16 or by a cycle."""
    rows = [org.row(login) for login in logins]
    assert [(r.email, r.last_error_code, r.last_error_text) for r in rows if r.overall_status != "success"] == []
    assert all(r.incoming_enabled and r.outgoing_enabled and r.postponed_until is None for r in rows)
    assert [tuple(row) for row in query(org.db_path, "SELECT mailbox_id, direction FROM mailbox_failure")] == []
    assert [tuple(row) for row in query(
        org.db_path, "SELECT mailbox_id, last_error_code, last_error_text FROM sync_status "
                     "WHERE last_error_code IS NOT NULL OR incoming_failures > 0 OR outgoing_failures > 0")] == []
    assert [tuple(row) for row in query(
        org.db_path, "SELECT id, state, last_error_code FROM email_activity WHERE direction = 'outgoing' "
                     "AND NOT (state = 'sent' OR (state = 'pending' AND attempts = 0))")] == []


def test_a_worker_under_ulimit_64_runs_fewer_connections_at_once_and_blames_no_mailbox(org: Org):
    logins = _lab_mailboxes(org, "fdfew")

    done = _worker_under_limit(org, org.cli_command("worker", "--once", "--threads", THREADS,
                                                    "--sync-threads", THREADS))

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert f"tested {MAILBOXES}: {MAILBOXES} passed, 0 failed, 0 postponed" in done.stderr
    _no_mailbox_blamed(org, logins)
    cycled = query(org.db_path, "SELECT count(*) FROM sync_status WHERE last_cycle_finished IS NOT NULL")[0][0]
    assert cycled == MAILBOXES
    sent = query(org.db_path, "SELECT count(*) FROM email_activity WHERE direction = 'outgoing' AND state = 'sent'")
    assert sent[0][0] == MAILBOXES
    # One warning per pool, saying why it is slower and what to raise.
    warnings = [line for line in done.stderr.splitlines() if "so it is slower" in line]
    assert len(warnings) == 2, done.stderr
    for pool, warning in zip(("Test & Enable", "processing"), warnings):
        assert warning.startswith(f"{pool} runs ") and "instead of 32" in warning, warning
        assert f"open-file limit of this process is {LOW_LIMIT}" in warning
        assert "LimitNOFILE=" in warning and "ulimit -n" in warning


def test_running_out_of_descriptors_anyway_retries_the_mailbox_and_never_blames_the_server(org: Org):
    logins = _lab_mailboxes(org, "fdout")
    command = [sys.executable, "-c", _EAT_DESCRIPTORS, "24", "--db", str(org.db_path),
               "worker", "--once", "--threads", THREADS, "--sync-threads", THREADS]

    done = _worker_under_limit(org, command)

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "ran out of file descriptors" in done.stderr, done.stderr  # it hit the limit, and shrank
    assert f"tested {MAILBOXES}: {MAILBOXES} passed, 0 failed, 0 postponed" in done.stderr
    _no_mailbox_blamed(org, logins)


def test_the_console_says_why_its_test_and_enable_is_slower(console: Console):
    # The console's own process under a low open-file limit: room for 20 of its 32 threads' connections.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = descriptors.open_descriptors() + descriptors.HEADROOM + 20 * descriptors.PER_TEST
    seen: list[str] = []

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        for _ in range(100):  # the runner starts on a thread of its own
            await pilot.pause(0.05)
            seen[:] = notifications(app)
            if any("so it is slower" in text for text in seen):
                return

    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        app = console.run(scenario, run_tests=True, threads=32)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert app.return_code in (None, 0)
    [slower] = [text for text in seen if "so it is slower" in text]
    # About 20: the console opens a few more descriptors before its runner measures what is left.
    fitting = re.match(r"Test & Enable runs (\d+) connection\(s\) at a time instead of 32, so it is slower", slower)
    assert fitting and 1 <= int(fitting.group(1)) <= 20, slower
    assert f"open-file limit of this process is {low}" in slower, slower
    assert "raise `ulimit -n` in the shell that starts the console to at least" in slower, slower
    assert "systemd" not in slower and "worker" not in slower, slower


# -- the keyring going away ------------------------------------------------------------------------

def _own_secret_mailboxes(org: Org, store: SecretStore, *logins: str) -> None:
    """Mailboxes (incoming only) on the profile "own", each logging in with its own password,
    kept in ``store``."""
    if Profile.get_or_none(Profile.name == "own") is None:
        org.profile("own")
    for login in logins:
        _unset_mailbox(org, login)
        credentials.set_mailbox_secret(org.admin, login, org.lab.users[login], store)
        bulk.approve(org.admin, Selection.of_emails([login]))


def _unset_mailbox(org: Org, login: str) -> None:
    users.add_user(org.admin, login.split("@")[0], login)
    mailboxes.edit(org.admin, login, profile="own", outgoing_method="none")


def _test(org: Org, store: SecretStore, *logins: str) -> None:
    org.schedule(*logins)
    EnablementRunner(store, threads=4, clock=org.clock).run()


def _file_store(data_dir: Path) -> SecretStore:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHON_KEYRING_BACKEND", NO_OS_KEYRING)
        env.delenv(KEYRING_CHOICE_ENV, raising=False)
        env.delenv(MASTER_PASSWORD_ENV, raising=False)
        store = SecretStore.open(data_dir)
    store.unlock(MASTER_PASSWORD)
    return store


def _keyring_failure(org: Org, login: str) -> str:
    row = org.row(login)
    assert row.last_error_code == "KEYRING_UNAVAILABLE", (row.last_error_code, row.last_error_text)
    assert row.incoming_status == "failure" and not row.incoming_enabled
    assert row.postponed_until is not None  # transient: tried again, not disabled for good
    return row.last_error_text


def test_a_deleted_keyring_file_fails_only_the_mailboxes_whose_secrets_were_never_read(org: Org, tmp_path: Path):
    store = _file_store(tmp_path / "data")  # the worker's
    read_before, never_read = org.lab.add_users(2, prefix="kdel")
    _own_secret_mailboxes(org, _file_store(tmp_path / "data"), read_before, never_read)  # an admin's
    store_file = tmp_path / "data" / "secrets.cfg"
    _test(org, store, read_before)
    assert org.row(read_before).overall_status == "success"

    store_file.unlink()
    org.clock.advance(minutes=1)
    _test(org, store, read_before, never_read)

    assert org.row(read_before).overall_status == "success", org.row(read_before).last_error_text
    text = _keyring_failure(org, never_read)
    assert str(store_file.name) in text and "deleted or moved" in text and "set-password" in text


def test_a_keyring_file_re_encrypted_by_another_process_is_never_rewritten(org: Org, tmp_path: Path):
    store = _file_store(tmp_path / "data")
    read_before, never_read, later = org.lab.add_users(3, prefix="krekey")
    _own_secret_mailboxes(org, _file_store(tmp_path / "data"), read_before, never_read)
    store_file = tmp_path / "data" / "secrets.cfg"
    _test(org, store, read_before)

    new_password = "a new master pässword"
    rekey = subprocess.run([sys.executable, "-c", _REKEY, str(store_file), MASTER_PASSWORD, new_password],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert rekey.returncode == 0, rekey.stderr
    re_encrypted = store_file.read_bytes()
    org.clock.advance(minutes=1)
    _test(org, store, read_before, never_read)

    assert org.row(read_before).overall_status == "success", org.row(read_before).last_error_text
    text = _keyring_failure(org, never_read)
    assert "re-encrypted with another master password" in text and "restart mbxtui" in text
    _unset_mailbox(org, later)
    with pytest.raises(SecretsError):
        credentials.set_mailbox_secret(org.admin, later, "another", store)
    assert store_file.read_bytes() == re_encrypted  # a file it could not read is never rewritten
    reopened = SecretStore._for_encrypted_file(store_file, None)
    reopened.unlock(new_password)
    for login in (read_before, never_read):
        assert credentials.mailbox_secret(reopened, org.row(login).id).reveal() == org.lab.users[login]


_REKEY = """
import sys
from pathlib import Path
from mbxtui.core.secret_file import Sealed, SecretFileContent, entry_associated_data
path, old, new = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
content = SecretFileContent.from_bytes(path.read_bytes())
old_key = content.kdf.derive(old)
assert content.opens_with(old_key)
fresh, new_key = SecretFileContent.new(new)
for (service, name), sealed in content.entries.items():
    data = entry_associated_data(service, name)
    fresh.entries[(service, name)] = Sealed.seal(new_key, sealed.open(old_key, data), data)
path.write_bytes(fresh.to_bytes())
"""


_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={directory}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@pytest.fixture
def secret_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[subprocess.Popen]:
    """A gnome-keyring-daemon of this test's own, on a D-Bus session bus of its own (so stopping it
    touches no other test), chosen as this process's keyring. Yields the daemon's process."""
    for tool in ("dbus-daemon", "gnome-keyring-daemon"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: apt-get install -y --no-install-recommends gnome-keyring dbus")
    home = tmp_path / "keyring-home"
    (home / "data").mkdir(parents=True, mode=0o700)
    (home / "runtime").mkdir(mode=0o700)
    # No service directories: a stopped daemon stays stopped (no D-Bus activation starts another).
    config = home / "bus.conf"
    socket_dir = Path(tempfile.mkdtemp(prefix="mbxtui-bus-"))  # a socket's path must stay short
    config.write_text(_BUS_CONFIG.format(directory=socket_dir), encoding="utf-8")
    bus = subprocess.Popen(["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    address = bus.stdout.readline().strip()
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": address, "XDG_DATA_HOME": str(home / "data"),
           "XDG_RUNTIME_DIR": str(home / "runtime")}
    daemon_log = (home / "daemon.log").open("wb")
    daemon = subprocess.Popen(["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=daemon_log, env=env)
    daemon.stdin.write(b"throwaway test password")
    daemon.stdin.close()
    try:
        for name, value in (("DBUS_SESSION_BUS_ADDRESS", address), ("XDG_DATA_HOME", env["XDG_DATA_HOME"]),
                            ("XDG_RUNTIME_DIR", env["XDG_RUNTIME_DIR"]),
                            ("PYTHON_KEYRING_BACKEND", "keyring.backends.SecretService.Keyring")):
            monkeypatch.setenv(name, value)
        monkeypatch.delenv(KEYRING_CHOICE_ENV, raising=False)
        deadline = time.monotonic() + 10
        while subprocess.run(["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
                              "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner",
                              "string:org.freedesktop.secrets"], env=env, capture_output=True,
                             text=True).stdout.find("boolean true") < 0:
            assert time.monotonic() < deadline and daemon.poll() is None, (home / "daemon.log").read_text()
            time.sleep(0.05)
        yield daemon
    finally:
        for process in (daemon, bus):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
        daemon_log.close()
        bus.stdout.close()
        shutil.rmtree(socket_dir, ignore_errors=True)


def test_a_stopped_secret_service_fails_only_the_mailboxes_whose_secrets_were_never_read(
        org: Org, tmp_path: Path, secret_service: subprocess.Popen):
    store = SecretStore.open(tmp_path / "data")
    assert store.backend_name == "Secret Service" and not store.needs_master_password, store
    read_before, never_read = org.lab.add_users(2, prefix="kstop")
    _own_secret_mailboxes(org, SecretStore.open(tmp_path / "data"), read_before, never_read)
    _test(org, store, read_before)

    secret_service.terminate()
    secret_service.wait(timeout=10)
    org.clock.advance(minutes=1)
    _test(org, store, read_before, never_read)

    assert org.row(read_before).overall_status == "success", org.row(read_before).last_error_text
    text = _keyring_failure(org, never_read)
    assert "Secret Service could not be read" in text and "start the keyring service again" in text


def test_a_frozen_secret_service_fails_the_mailboxes_whose_secrets_were_never_read_within_seconds(
        org: Org, tmp_path: Path, secret_service: subprocess.Popen, monkeypatch: pytest.MonkeyPatch):
    # A Secret Service that never answers (stopped by SIGSTOP; as one waiting on a prompt nobody
    # can answer): the Secret Service library waits for it without a timeout.
    store = SecretStore.open(tmp_path / "data")
    assert store.backend_name == "Secret Service", store
    read_before, never_read, also_never_read = org.lab.add_users(3, prefix="kfrozen")
    _own_secret_mailboxes(org, SecretStore.open(tmp_path / "data"), read_before, never_read, also_never_read)
    _test(org, store, read_before)
    org.schedule(read_before, never_read, also_never_read)
    org.clock.advance(minutes=1)
    runner = EnablementRunner(store, threads=4, clock=org.clock)
    secret_service.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        # On this thread the database and the lab keep answering; a runner that waits for the
        # keyring forever is given up on after FROZEN_KEYRING_WAIT.
        ran = threading.Thread(target=runner.run, daemon=True)
        ran.start()
        ran.join(timeout=FROZEN_KEYRING_WAIT)
        took = time.monotonic() - started
        assert not ran.is_alive(), f"Test & Enable still waits for the keyring after {took:.0f} s"
        # Opened by a process starting now (no call left unanswered), on a bound of 1 s for speed.
        monkeypatch.setattr(secrets, "_unanswered", None)
        monkeypatch.setattr(secrets, "OS_KEYRING_ANSWER_SECONDS", 1.0)
        opened: list[object] = []

        def open_store() -> None:
            try:
                opened.append(SecretStore.open(tmp_path / "data"))
            except SecretsError as exc:
                opened.append(exc)

        opening = threading.Thread(target=open_store, daemon=True)
        opening.start()
        opening.join(timeout=5)
        assert not opening.is_alive(), "opening the store still waits for the frozen Secret Service after 5 s"
    finally:
        secret_service.send_signal(signal.SIGCONT)
    # One call waits for the bound; the others fail at once while it is unanswered.
    assert took < 10.0 + 10, took
    [error] = opened
    assert isinstance(error, secrets.KeyringUnavailable), error
    assert str(error).startswith("the Secret Service could not be read (TimeoutError: no answer within 1 s): "
                                 "start the keyring service again"), error
    assert org.row(read_before).overall_status == "success", org.row(read_before).last_error_text
    for login in (never_read, also_never_read):
        text = _keyring_failure(org, login)
        assert "Secret Service could not be read" in text and "start the keyring service again" in text, text
