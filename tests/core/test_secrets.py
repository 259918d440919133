"""Secret storage against real keyring backends: the encrypted file, the Secret Service (under
scripts/with-test-keyring), keyrings.cryptfile's plaintext file, and two small backends defined
here: a plaintext file like keyrings.alt's and a keyring that refuses like a locked one. The
encrypted file's format and the conversion of older files: test_secret_file.py."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import keyring.errors
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import SecretService
from keyring.util import platform_

from mbxtui.core.secrets import (
    SECRETS_FILE_NAME,
    SERVICE,
    SecretsError,
    SecretsLocked,
    SecretStore,
    WrongMasterPassword,
    mailbox_password_key,
    mailbox_token_key,
    profile_password_key,
    profile_token_key,
)

MASTER = "correct horse battery staple"
SECRET = "p4ss wörd ✓ s3cr3t"

NO_KEYRING = "keyring.backends.fail.Keyring"


class PlaintextFileKeyring(KeyringBackend):
    """Keeps secrets readable in a JSON file under keyring's data root, as keyrings.alt's
    PlaintextKeyring does in its INI file."""

    priority = -1  # never chosen automatically, only through PYTHON_KEYRING_BACKEND

    @property
    def file_path(self) -> Path:
        return platform_.data_root() / "plaintext_pass.json"

    def _load(self) -> dict[str, str]:
        try:
            return json.loads(self.file_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    def get_password(self, service, username):
        return self._load().get(f"{service}/{username}")

    def set_password(self, service, username, password):
        entries = self._load()
        entries[f"{service}/{username}"] = password
        self.file_path.parent.mkdir(parents=True, exist_ok=True)
        self.file_path.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")

    def delete_password(self, service, username):
        entries = self._load()
        if entries.pop(f"{service}/{username}", None) is None:
            raise keyring.errors.PasswordDeleteError("not found")
        self.file_path.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")


class LockedKeyring(KeyringBackend):
    """Refuses every operation the way a Secret Service whose unlock prompt was dismissed does."""

    priority = -1

    def get_password(self, service, username):
        raise keyring.errors.KeyringLocked("Failed to unlock the collection!")

    set_password = delete_password = get_password


def backend_path(backend_class: type) -> str:
    return f"{backend_class.__module__}.{backend_class.__qualname__}"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No keyring choice inherited from the caller: no forced backend, no keyringrc.cfg."""
    for name in ("MBXTUI_KEYRING", "MBXTUI_MASTER_PASSWORD", "PYTHON_KEYRING_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # paths below are shown in full


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def no_os_keyring(monkeypatch):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", NO_KEYRING)


@pytest.fixture
def unlocked_file_store(no_os_keyring, data_dir) -> SecretStore:
    store = SecretStore.open(data_dir)
    store.unlock(MASTER)
    return store


def test_keys_name_the_record_and_the_secret():
    assert mailbox_password_key(42) == "mailbox/42/password"
    assert mailbox_token_key(42) == "mailbox/42/token"
    assert profile_password_key(7) == "profile/7/password"
    assert profile_token_key(7) == "profile/7/token"
    with pytest.raises(TypeError):
        mailbox_password_key("42/../1")


# --- the encrypted file, when there is no OS keyring -------------------------------------------


def test_without_os_keyring_the_encrypted_file_is_offered_locked(no_os_keyring, data_dir):
    store = SecretStore.open(data_dir)

    assert store.backend_name == f"encrypted file {data_dir / SECRETS_FILE_NAME}"
    assert store.needs_master_password
    assert store.creating_new_file
    assert not store.plaintext
    assert store.warning is None
    assert not (data_dir / SECRETS_FILE_NAME).exists()


def test_paths_in_the_home_directory_are_shown_from_tilde(no_os_keyring, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))

    store = SecretStore.open(tmp_path / ".local" / "share" / "mbxtui")

    assert store.backend_name == "encrypted file ~/.local/share/mbxtui/secrets.cfg"


def test_nothing_is_read_or_written_before_unlock(no_os_keyring, data_dir):
    store = SecretStore.open(data_dir)

    with pytest.raises(SecretsLocked, match="master password"):
        store.get(mailbox_password_key(1))
    with pytest.raises(SecretsLocked):
        store.set(mailbox_password_key(1), SECRET)
    with pytest.raises(SecretsLocked):
        store.delete(mailbox_password_key(1))
    assert not (data_dir / SECRETS_FILE_NAME).exists()


def test_encrypted_file_round_trip_and_reopen(no_os_keyring, data_dir):
    store = SecretStore.open(data_dir)
    store.unlock(MASTER)
    assert not store.needs_master_password
    assert not store.creating_new_file

    store.set(mailbox_password_key(1), SECRET)
    store.set(profile_token_key(2), "token-value-2")
    assert store.get(mailbox_password_key(1)) == SECRET
    assert store.get(profile_token_key(2)) == "token-value-2"
    assert store.get(mailbox_password_key(99)) is None
    store.delete(profile_token_key(2))
    store.delete(profile_token_key(2))
    assert store.get(profile_token_key(2)) is None

    secrets_file = data_dir / SECRETS_FILE_NAME
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    content = secrets_file.read_bytes()
    for revealing in (SECRET, MASTER):
        assert revealing.encode() not in content
        assert base64.b64encode(revealing.encode()) not in content

    reopened = SecretStore.open(data_dir)
    assert reopened.needs_master_password
    assert not reopened.creating_new_file
    with pytest.raises(WrongMasterPassword) as wrong:
        reopened.unlock("not the master password")
    assert "not the master password" not in str(wrong.value)
    assert str(secrets_file) in str(wrong.value)
    assert reopened.needs_master_password
    with pytest.raises(SecretsLocked):
        reopened.get(mailbox_password_key(1))

    reopened.unlock(MASTER)
    assert reopened.get(mailbox_password_key(1)) == SECRET


def test_an_unlocked_store_rejects_a_different_master_password(unlocked_file_store):
    unlocked_file_store.unlock(MASTER)
    with pytest.raises(WrongMasterPassword):
        unlocked_file_store.unlock("something else")
    assert not unlocked_file_store.needs_master_password


def test_an_empty_master_password_is_refused(no_os_keyring, data_dir):
    store = SecretStore.open(data_dir)
    with pytest.raises(SecretsError, match="empty"):
        store.unlock("  ")
    assert store.needs_master_password


def test_master_password_from_the_environment_unlocks(no_os_keyring, data_dir, monkeypatch):
    SecretStore.open(data_dir).unlock(MASTER)

    monkeypatch.setenv("MBXTUI_MASTER_PASSWORD", MASTER)
    assert not SecretStore.open(data_dir).needs_master_password

    monkeypatch.setenv("MBXTUI_MASTER_PASSWORD", "stale automation password")
    with pytest.raises(WrongMasterPassword, match="MBXTUI_MASTER_PASSWORD") as wrong:
        SecretStore.open(data_dir)
    assert "stale automation password" not in str(wrong.value)


CHILD_READS_ITS_ENVIRONMENT = "import os; print(repr(os.environ.get('MBXTUI_MASTER_PASSWORD')))"


@pytest.mark.parametrize("right", [True, False], ids=["right password", "wrong password"])
def test_the_master_password_leaves_the_environment_once_read(no_os_keyring, data_dir, monkeypatch, right):
    """Issue 16, finding 6: read once, then gone from os.environ (and the C environment), so that a
    child process started afterwards (a helper, a shell) does not inherit it, right or wrong."""
    SecretStore.open(data_dir).unlock(MASTER)
    monkeypatch.setenv("MBXTUI_MASTER_PASSWORD", MASTER if right else "a wrong master password")
    child_before = subprocess.run([sys.executable, "-c", CHILD_READS_ITS_ENVIRONMENT], capture_output=True,
                                  text=True, timeout=60)
    assert child_before.stdout.strip() != "None", "the child did not inherit the environment: nothing was tested"

    if right:
        assert not SecretStore.open(data_dir).needs_master_password
    else:
        with pytest.raises(WrongMasterPassword):
            SecretStore.open(data_dir)

    assert "MBXTUI_MASTER_PASSWORD" not in os.environ
    assert os.getenv("MBXTUI_MASTER_PASSWORD") is None
    child = subprocess.run([sys.executable, "-c", CHILD_READS_ITS_ENVIRONMENT], capture_output=True, text=True,
                           timeout=60)
    assert child.stdout.strip() == "None"
    shell = subprocess.run("echo \"[$MBXTUI_MASTER_PASSWORD]\"", shell=True, capture_output=True, text=True,
                           timeout=60)
    assert shell.stdout.strip() == "[]"


def test_a_loose_file_mode_is_tightened_on_unlock(unlocked_file_store, data_dir):
    secrets_file = data_dir / SECRETS_FILE_NAME
    secrets_file.chmod(0o644)

    SecretStore.open(data_dir).unlock(MASTER)

    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600


def test_after_unlock_reads_and_writes_do_not_derive_keys_again(unlocked_file_store):
    # Deriving a key costs about 0.3 s here, so 40 operations that each derived one would take 12 s;
    # with the keys cached they take a few milliseconds each.
    started = time.perf_counter()
    for number in range(20):
        unlocked_file_store.set(mailbox_password_key(number), f"{SECRET}-{number}")
        assert unlocked_file_store.get(mailbox_password_key(number)) == f"{SECRET}-{number}"
    assert time.perf_counter() - started < 4.0


def test_a_file_that_is_not_a_keyring_is_reported(no_os_keyring, data_dir):
    data_dir.mkdir()
    (data_dir / SECRETS_FILE_NAME).write_text("this is not an INI file\n")

    with pytest.raises(SecretsError, match="not an encrypted keyring file"):
        SecretStore.open(data_dir)


def test_failures_name_the_key_but_never_the_value(unlocked_file_store, data_dir):
    secrets_file = data_dir / SECRETS_FILE_NAME
    secrets_file.unlink()
    secrets_file.mkdir()  # every write now fails with IsADirectoryError

    with pytest.raises(SecretsError) as failure:
        unlocked_file_store.set(mailbox_password_key(5), SECRET)

    assert "mailbox/5/password" in str(failure.value)
    assert SECRET not in str(failure.value)
    assert SECRET not in repr(unlocked_file_store)
    assert MASTER not in repr(unlocked_file_store)


def test_file_store_is_safe_across_threads(unlocked_file_store, data_dir):
    unlocked_file_store.set(profile_password_key(1), "shared")
    thread_count, rounds = 8, 25
    start = threading.Barrier(thread_count)
    failures: list[BaseException] = []

    def work(thread_number: int) -> None:
        try:
            start.wait(timeout=10)
            key = mailbox_password_key(thread_number)
            for round_number in range(rounds):
                value = f"{thread_number}-{round_number}"
                unlocked_file_store.set(key, value)
                assert unlocked_file_store.get(key) == value
                assert unlocked_file_store.get(profile_password_key(1)) == "shared"
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(thread_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []

    reopened = SecretStore.open(data_dir)
    reopened.unlock(MASTER)
    for thread_number in range(thread_count):
        assert reopened.get(mailbox_password_key(thread_number)) == f"{thread_number}-{rounds - 1}"


WRITER_PROGRAM = """
import sys, time
from pathlib import Path
from mbxtui.core.secrets import SecretStore

data_dir, writer, writes = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
store = SecretStore.open(data_dir)  # unlocked through MBXTUI_MASTER_PASSWORD
(data_dir / f"ready-{writer}").touch()
deadline = time.monotonic() + 60
while not (data_dir / "go").exists():
    assert time.monotonic() < deadline, "no go signal"
    time.sleep(0.005)
for number in range(writes):
    key = f"mailbox/{writer}{number:04}/password"
    store.set(key, f"value {number}")
    assert store.get(key) == f"value {number}", "read the file half written, or lost an update"
"""


def test_file_store_is_safe_across_processes(unlocked_file_store, data_dir, monkeypatch):
    """The console and command-line runs may change the same file at the same time."""
    monkeypatch.setenv("MBXTUI_MASTER_PASSWORD", MASTER)
    writer_count, writes = 2, 50
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_PROGRAM, str(data_dir), str(writer), str(writes)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for writer in range(1, writer_count + 1)
    ]
    try:
        deadline = time.monotonic() + 60
        while not all((data_dir / f"ready-{writer}").exists() for writer in range(1, writer_count + 1)):
            assert all(writer.poll() is None for writer in writers), "a writer ended before writing"
            assert time.monotonic() < deadline, "writers did not unlock the file within 60 s"
            time.sleep(0.01)
        (data_dir / "go").touch()  # all write at once
        outcomes = [writer.communicate(timeout=60) for writer in writers]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    for writer, (_, errors) in zip(writers, outcomes):
        assert writer.returncode == 0, errors

    for writer in range(1, writer_count + 1):
        for number in range(writes):
            key = f"mailbox/{writer}{number:04}/password"
            assert unlocked_file_store.get(key) == f"value {number}", key


# --- choosing the backend ------------------------------------------------------------------------


def test_without_dbus_or_configuration_the_encrypted_file_is_chosen(tmp_path, data_dir):
    """The SSH case, in a fresh interpreter (keyring caches which backends are viable)."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DBUS_SESSION_BUS_ADDRESS", "PYTHON_KEYRING_BACKEND")
    }
    program = (
        "import json, sys; from pathlib import Path; from mbxtui.core.secrets import SecretStore;"
        "store = SecretStore.open(Path(sys.argv[1]));"
        "print(json.dumps([store.backend_name, store.needs_master_password, store.warning]))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", program, str(data_dir)],
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # no terminal for getpass() to prompt on
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == [
        f"encrypted file {data_dir / SECRETS_FILE_NAME}",
        True,
        None,
    ]


ALT_PLAINTEXT = "keyrings.alt.file.PlaintextKeyring"
CHOICE_PROGRAM = (
    "import json, sys; from pathlib import Path; from mbxtui.core.secrets import SecretStore;"
    "store = SecretStore.open(Path(sys.argv[1]));"
    "print(json.dumps([store.backend_name, store.plaintext, store.warning]))"
)


def choice_in_a_fresh_interpreter(data_dir: Path, **environment: str) -> list:
    """What SecretStore.open chooses with no D-Bus session (no Secret Service), in a new process:
    keyring caches which backends are viable."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("DBUS_SESSION_BUS_ADDRESS", "PYTHON_KEYRING_BACKEND")}
    completed = subprocess.run([sys.executable, "-c", CHOICE_PROGRAM, str(data_dir)], env={**env, **environment},
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                               start_new_session=True)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_keyrings_alt_is_installed_for_these_tests():
    import keyrings.alt.file

    assert keyrings.alt.file.PlaintextKeyring().priority > 0, "the automatic choice would consider it"


def test_an_installed_plaintext_keyring_is_not_chosen_for_being_installed(data_dir):
    """Issue 16, finding 4: with keyrings.alt installed and nothing configured, the keyring
    library's automatic choice is its PlaintextKeyring; mbxtui takes the encrypted file instead."""
    assert choice_in_a_fresh_interpreter(data_dir) == [f"encrypted file {data_dir / SECRETS_FILE_NAME}", False, None]


def test_a_plaintext_keyring_named_by_the_environment_is_used_with_a_warning(data_dir):
    name, plaintext, warning = choice_in_a_fresh_interpreter(data_dir, PYTHON_KEYRING_BACKEND=ALT_PLAINTEXT)
    assert name.startswith("PlaintextKeyring from keyrings.alt") and plaintext
    assert "stores secrets unencrypted on disk" in warning


def test_a_plaintext_keyring_named_in_keyringrc_is_used_with_a_warning(data_dir, tmp_path):
    config = tmp_path / "config" / "python_keyring" / "keyringrc.cfg"
    config.parent.mkdir(parents=True)
    config.write_text(f"[backend]\ndefault-keyring = {ALT_PLAINTEXT}\n", encoding="utf-8")
    name, plaintext, warning = choice_in_a_fresh_interpreter(data_dir)
    assert name.startswith("PlaintextKeyring from keyrings.alt") and plaintext and "unencrypted" in warning


def test_secrets_left_in_an_unnamed_plaintext_keyring_are_pointed_out(data_dir, tmp_path):
    """An earlier mbxtui may have kept secrets in keyrings.alt's file: the operator is told why they
    are not used and how to go on."""
    stale = tmp_path / "xdg-data" / "python_keyring" / "keyring_pass.cfg"
    stale.parent.mkdir(parents=True)
    stale.write_text("[mbxtui]\n", encoding="utf-8")
    name, plaintext, warning = choice_in_a_fresh_interpreter(data_dir)
    assert name.startswith("encrypted file") and not plaintext
    assert warning == (f"PlaintextKeyring from keyrings.alt ({stale}) keeps secrets unencrypted, so mbxtui no "
                       "longer uses it unless it is named: set the passwords again (they are now kept in the "
                       f"encrypted file), or set PYTHON_KEYRING_BACKEND={ALT_PLAINTEXT} to keep using it.")


@pytest.mark.parametrize(
    "backend",
    [
        "keyring.backends.null.Keyring",
        # encrypted file keyrings that would prompt with getpass(): replaced by mbxtui's own file
        "keyrings.cryptfile.cryptfile.CryptFileKeyring",
        "keyrings.cryptfile.file.EncryptedKeyring",
    ],
)
def test_backends_that_cannot_serve_a_console_give_the_encrypted_file(monkeypatch, data_dir, backend):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", backend)

    store = SecretStore.open(data_dir)

    assert store.backend_name == f"encrypted file {data_dir / SECRETS_FILE_NAME}"
    assert store.needs_master_password


def test_an_unusable_os_keyring_falls_back_with_a_warning(monkeypatch, data_dir):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", backend_path(LockedKeyring))

    store = SecretStore.open(data_dir)

    assert store.backend_name.startswith("encrypted file")
    assert "KeyringLocked" in store.warning
    assert "Failed to unlock the collection" in store.warning


def test_mbxtui_keyring_file_forces_the_encrypted_file(monkeypatch, data_dir):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", backend_path(PlaintextFileKeyring))
    monkeypatch.setenv("MBXTUI_KEYRING", "file")

    store = SecretStore.open(data_dir)

    assert store.backend_name.startswith("encrypted file")
    assert store.needs_master_password
    assert not store.plaintext


def test_an_unknown_keyring_choice_is_reported(monkeypatch, data_dir):
    monkeypatch.setenv("MBXTUI_KEYRING", "vault")
    with pytest.raises(SecretsError, match="MBXTUI_KEYRING"):
        SecretStore.open(data_dir)


def test_an_unloadable_configured_backend_is_reported(monkeypatch, data_dir):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "no.such.Keyring")
    with pytest.raises(SecretsError, match="PYTHON_KEYRING_BACKEND"):
        SecretStore.open(data_dir)


@pytest.mark.parametrize(
    "backend",
    [backend_path(PlaintextFileKeyring), "keyrings.cryptfile.file.PlaintextKeyring"],
)
def test_a_plaintext_backend_is_used_with_a_warning(monkeypatch, data_dir, backend):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", backend)

    store = SecretStore.open(data_dir)

    assert store.plaintext
    assert "unencrypted" in store.warning
    assert "MBXTUI_KEYRING=file" in store.warning
    assert str(platform_.data_root()) in store.backend_name
    assert not store.needs_master_password
    store.set(mailbox_password_key(3), SECRET)
    assert store.get(mailbox_password_key(3)) == SECRET


def test_the_plaintext_test_backend_really_stores_in_clear(monkeypatch, data_dir):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", backend_path(PlaintextFileKeyring))
    SecretStore.open(data_dir).set(mailbox_password_key(3), SECRET)

    assert SECRET in PlaintextFileKeyring().file_path.read_text(encoding="utf-8")


# --- the Secret Service ---------------------------------------------------------------------------


def _why_no_private_secret_service() -> str | None:
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return "no D-Bus session (DBUS_SESSION_BUS_ADDRESS is unset): run under scripts/with-test-keyring"
    if os.environ.get("MBXTUI_TEST_KEYRING") != "1":
        return (
            "this D-Bus session is not the private keyring of scripts/with-test-keyring "
            "(MBXTUI_TEST_KEYRING is not 1); not writing into your own keyring"
        )
    return None


NO_PRIVATE_SECRET_SERVICE = _why_no_private_secret_service()


@pytest.mark.skipif(NO_PRIVATE_SECRET_SERVICE is not None, reason=str(NO_PRIVATE_SECRET_SERVICE))
def test_secret_service_round_trip(data_dir):
    key = f"test/{uuid.uuid4()}/password"

    store = SecretStore.open(data_dir)

    assert store.backend_name == "Secret Service"
    assert not store.needs_master_password
    assert not store.plaintext
    assert store.warning is None
    try:
        store.set(key, SECRET)
        assert store.get(key) == SECRET
        assert SecretService.Keyring().get_password(SERVICE, key) == SECRET
    finally:
        store.delete(key)
    assert store.get(key) is None
    store.delete(key)

    data_dir.mkdir()
    (data_dir / SECRETS_FILE_NAME).touch()
    assert "are not used" in SecretStore.open(data_dir).warning
