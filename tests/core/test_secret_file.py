"""mbxtui's own encrypted secrets file: the format (a round trip, tampering, moved entries, a wrong
password, a newer version) and the conversion of files written by the real keyrings.cryptfile
library (a test-only dependency), including a crash midway and two processes at once."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from keyrings.cryptfile.cryptfile import CryptFileKeyring
from keyrings.cryptfile.escape import escape as upstream_escape

from mbxtui.core.legacy_secret_file import escape_name, unescape_name
from mbxtui.core.secret_file import DamagedEntry, EncryptedSecretFile, WrongPassword
from mbxtui.core.secrets import (
    SECRETS_BACKUP_NAME,
    SECRETS_FILE_NAME,
    SERVICE,
    SecretsError,
    SecretStore,
    WrongMasterPassword,
    mailbox_password_key,
)

MASTER = "correct horse battery staple"

# What an earlier mbxtui may have in its keyrings.cryptfile file: keys and values that need escaping
# (slashes, spaces, underscores, accents, other scripts, an emoji), a token longer than one base64
# line, and an entry of another service. Option names are lowercased by the INI parser that
# keyrings.cryptfile uses, so only lower-case names come back as they were; mbxtui's keys all are.
OLD_ENTRIES = {
    (SERVICE, "mailbox/42/password"): "p4ss wörd ✓ s3cr3t",
    (SERVICE, "profile/7/token"): "eyJ0eXAiOiJKV1Qi." + "x" * 400 + ".sig/+=",
    (SERVICE, "odd name: ünï/ключ 🙂 _5f%00"): "value with\nnew line and ; = [brackets]",
    ("another-service ✓", "user_name@host"): "other",
}


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of the directory with its content and mode."""
    return {
        path.name: (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
        for path in sorted(directory.iterdir())
    }


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in ("MBXTUI_KEYRING", "MBXTUI_MASTER_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # paths are shown in full


@pytest.fixture(scope="module")
def old_file_template(tmp_path_factory) -> Path:
    """A secrets file written by keyrings.cryptfile itself, once for the module: each write costs
    a key derivation."""
    path = tmp_path_factory.mktemp("cryptfile") / SECRETS_FILE_NAME
    upstream = CryptFileKeyring()
    upstream.file_path = str(path)
    upstream.keyring_key = MASTER  # creates the file and its password reference
    for (service, name), value in OLD_ENTRIES.items():
        upstream.set_password(service, name, value)
    return path


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def old_file(old_file_template, data_dir) -> Path:
    data_dir.mkdir(mode=0o700)
    path = data_dir / SECRETS_FILE_NAME
    shutil.copy2(old_file_template, path)
    return path


def read_with_keyrings_cryptfile(path: Path) -> dict[tuple[str, str], str | None]:
    upstream = CryptFileKeyring()
    upstream.file_path = str(path)
    upstream.keyring_key = MASTER
    return {(service, name): upstream.get_password(service, name) for service, name in OLD_ENTRIES}


def assert_converted(data_dir: Path) -> None:
    """The file is in mbxtui's format and holds every old entry."""
    document = json.loads((data_dir / SECRETS_FILE_NAME).read_text())
    assert (document["format"], document["version"]) == ("mbxtui-secrets", 1)
    converted = EncryptedSecretFile(data_dir / SECRETS_FILE_NAME)
    assert converted.unlock(MASTER) is None
    for (service, name), value in OLD_ENTRIES.items():
        assert converted.get(service, name) == value, name


# --- the conversion of keyrings.cryptfile files -----------------------------------------------------


def test_the_old_file_is_one_keyrings_cryptfile_reads(old_file):
    assert old_file.read_text().startswith("[keyring_2Dsetting]")
    assert read_with_keyrings_cryptfile(old_file) == OLD_ENTRIES


def test_an_old_file_is_converted_on_unlock_with_every_entry_intact(old_file, data_dir):
    original = old_file.read_bytes()
    store = SecretStore.open(data_dir)
    assert store.needs_master_password
    assert not store.creating_new_file

    store.unlock(MASTER)

    assert store.get(mailbox_password_key(42)) == OLD_ENTRIES[(SERVICE, "mailbox/42/password")]
    assert store.get("profile/7/token") == OLD_ENTRIES[(SERVICE, "profile/7/token")]
    assert_converted(data_dir)
    backup = data_dir / SECRETS_BACKUP_NAME
    assert backup.read_bytes() == original
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(old_file.stat().st_mode) == 0o600
    assert store.notice is not None
    assert str(backup) in store.notice and "4 secrets" in store.notice
    assert MASTER not in store.notice

    # Said once: the next unlock finds mbxtui's format, and keeps the same backup.
    again = SecretStore.open(data_dir)
    again.unlock(MASTER)
    assert again.notice is None
    assert again.get(mailbox_password_key(42)) == OLD_ENTRIES[(SERVICE, "mailbox/42/password")]
    assert sorted(path.name for path in data_dir.iterdir()) == sorted(
        [SECRETS_FILE_NAME, f"{SECRETS_FILE_NAME}.lock", SECRETS_BACKUP_NAME]
    )


def test_the_master_password_from_the_environment_converts_and_warns(old_file, data_dir, monkeypatch):
    monkeypatch.setenv("MBXTUI_MASTER_PASSWORD", MASTER)

    store = SecretStore.open(data_dir)

    assert not store.needs_master_password
    assert "converted from the keyrings.cryptfile format" in store.warning
    assert store.notice is None  # shown through warning, which the command line and console print
    assert_converted(data_dir)


def test_a_wrong_master_password_on_an_old_file_converts_nothing_and_changes_nothing(
    old_file, data_dir, monkeypatch
):
    before = snapshot(data_dir)
    store = SecretStore.open(data_dir)

    with pytest.raises(WrongMasterPassword) as wrong:
        store.unlock("not the master password")

    assert "not the master password" not in str(wrong.value)
    assert store.needs_master_password
    assert store.notice is None
    monkeypatch.setenv("MBXTUI_MASTER_PASSWORD", "stale automation password")
    with pytest.raises(WrongMasterPassword, match="MBXTUI_MASTER_PASSWORD"):
        SecretStore.open(data_dir)
    assert snapshot(data_dir) == before


def test_an_old_entry_that_does_not_decrypt_converts_nothing(old_file, data_dir):
    text = old_file.read_text()
    section = "[mbxtui]\n"
    at = text.index(section) + len(section)
    text = text[:at] + "mailbox_2f9_2fpassword = \n\t" + base64.b64encode(json.dumps(
        {"salt": "AAAAAAAAAAAAAAAAAAAAAA==", "nonce": "AAAAAAAAAAAAAAAAAAAAAA==", "data": "AAAA",
         "mac": "AAAAAAAAAAAAAAAAAAAAAA=="}).encode()).decode() + "\n" + text[at:]
    old_file.write_text(text)
    before = snapshot(data_dir)

    with pytest.raises(SecretsError, match="'mailbox/9/password'.*damaged; nothing was converted"):
        SecretStore.open(data_dir).unlock(MASTER)

    after = snapshot(data_dir)
    after.pop(f"{SECRETS_FILE_NAME}.lock", None)
    assert after == before


CRASH_PROGRAM = """
import os, sys
from pathlib import Path
from mbxtui.core.secrets import SecretStore

data_dir, target = Path(sys.argv[1]), Path(sys.argv[2])
replace = os.replace

def replace_or_die(source, destination, **options):
    if Path(destination) == target:
        os._exit(9)  # the process dies before this rename, as in a power cut: nothing after runs
    replace(source, destination, **options)

os.replace = replace_or_die
SecretStore.open(data_dir)  # unlocked, and so converted, through MBXTUI_MASTER_PASSWORD
"""


@pytest.mark.parametrize("dies_before", [SECRETS_BACKUP_NAME, SECRETS_FILE_NAME])
def test_a_crash_during_the_conversion_leaves_the_old_file_readable(old_file, data_dir, dies_before):
    original = old_file.read_bytes()
    environment = {**os.environ, "MBXTUI_MASTER_PASSWORD": MASTER}
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_PROGRAM, str(data_dir), str(data_dir / dies_before)],
        env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )
    assert crashed.returncode == 9, crashed.stderr

    assert old_file.read_bytes() == original  # what keyrings.cryptfile reads (the first test)

    store = SecretStore.open(data_dir)  # the next start converts it
    store.unlock(MASTER)
    assert store.notice is not None
    assert_converted(data_dir)
    assert (data_dir / SECRETS_BACKUP_NAME).read_bytes() == original
    assert not (data_dir / f"{SECRETS_BACKUP_NAME}.1").exists()  # a backup left by the crash is reused


def test_a_failed_rename_reports_the_error_and_keeps_the_old_file(old_file, data_dir, monkeypatch):
    original = old_file.read_bytes()
    replace = os.replace

    def refuse_secrets_file(source, destination, **options):
        if Path(destination) == old_file:
            raise PermissionError(13, "Permission denied")
        replace(source, destination, **options)

    monkeypatch.setattr(os, "replace", refuse_secrets_file)
    store = SecretStore.open(data_dir)
    with pytest.raises(SecretsError, match="Permission denied"):
        store.unlock(MASTER)
    assert store.needs_master_password
    assert old_file.read_bytes() == original
    assert not [path.name for path in data_dir.iterdir() if path.name.startswith(".")]  # no temporary left


CONVERTING_WRITER = """
import sys, time
from pathlib import Path
from mbxtui.core.secrets import SecretStore

data_dir, writer, writes = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
(data_dir.parent / f"ready-{writer}").touch()
deadline = time.monotonic() + 120
while not (data_dir.parent / "go").exists():
    assert time.monotonic() < deadline, "no go signal"
    time.sleep(0.005)
store = SecretStore.open(data_dir)  # both convert the old file at once, through MBXTUI_MASTER_PASSWORD
for number in range(writes):
    key = f"mailbox/{writer}{number:04}/password"
    store.set(key, f"value {number}")
    assert store.get(key) == f"value {number}", "read the file half written, or lost an update"
print(store.warning or "")
"""


def test_two_processes_converting_and_writing_at_once_lose_nothing(old_file, data_dir, tmp_path):
    environment = {**os.environ, "MBXTUI_MASTER_PASSWORD": MASTER}
    writer_count, writes = 2, 30
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", CONVERTING_WRITER, str(data_dir), str(writer), str(writes)],
            env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for writer in range(1, writer_count + 1)
    ]
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready-{writer}").exists() for writer in range(1, writer_count + 1)):
            assert all(writer.poll() is None for writer in writers), "a writer ended before writing"
            assert time.monotonic() < deadline, "the writers did not start within 120 s"
            time.sleep(0.01)
        (tmp_path / "go").touch()
        outcomes = [writer.communicate(timeout=300) for writer in writers]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    for writer, (_, errors) in zip(writers, outcomes):
        assert writer.returncode == 0, errors
    conversions = [output for output, _ in outcomes if "converted" in output]
    assert len(conversions) == 1, outcomes  # one converted it; the other opened what it wrote

    assert_converted(data_dir)
    converted = EncryptedSecretFile(data_dir / SECRETS_FILE_NAME)
    converted.unlock(MASTER)
    for writer in range(1, writer_count + 1):
        for number in range(writes):
            assert converted.get(SERVICE, f"mailbox/{writer}{number:04}/password") == f"value {number}"
    assert not (data_dir / f"{SECRETS_BACKUP_NAME}.1").exists()


@given(st.text(max_size=80))
def test_names_are_escaped_exactly_as_keyrings_cryptfile_does(name):
    assert escape_name(name) == upstream_escape(name)
    assert unescape_name(escape_name(name)) == name
    if name == name.lower():  # the INI parser lowercased option names: the hex comes back whole
        assert unescape_name(escape_name(name).lower()) == name


# --- mbxtui's format ---------------------------------------------------------------------------------


NAMES = ["mailbox/1/password", "odd: ünï/ключ 🙂 \"quoted\" \\ \0 end", "UPPER and lower"]


@pytest.fixture
def new_file(data_dir) -> EncryptedSecretFile:
    file = EncryptedSecretFile(data_dir / SECRETS_FILE_NAME)
    assert not file.is_initialised()
    assert file.unlock(MASTER) is None
    return file


def test_a_round_trip_through_the_file(new_file, data_dir):
    for number, name in enumerate(NAMES):
        new_file.set(SERVICE, name, f"välue {number} ✓")
    new_file.set("other", NAMES[0], "other service")
    assert new_file.delete(SERVICE, NAMES[2])
    assert not new_file.delete(SERVICE, NAMES[2])

    reopened = EncryptedSecretFile(data_dir / SECRETS_FILE_NAME)
    assert reopened.is_initialised()
    with pytest.raises(WrongPassword):
        reopened.unlock("not the master password")
    reopened.unlock(MASTER)
    assert reopened.get(SERVICE, NAMES[0]) == "välue 0 ✓"
    assert reopened.get(SERVICE, NAMES[1]) == "välue 1 ✓"
    assert reopened.get(SERVICE, NAMES[2]) is None
    assert reopened.get("other", NAMES[0]) == "other service"
    assert reopened.get("nobody", NAMES[0]) is None

    content = (data_dir / SECRETS_FILE_NAME).read_bytes()
    document = json.loads(content)
    assert document["format"] == "mbxtui-secrets" and document["version"] == 1
    assert document["kdf"]["algorithm"] == "argon2id"
    assert sorted(document["entries"][SERVICE]) == sorted(NAMES[:2])
    assert "välue".encode() not in content and MASTER.encode() not in content
    salts = [entry["salt"] for names in document["entries"].values() for entry in names.values()]
    assert len(set(salts)) == len(salts) == 3  # a salt per entry
    assert stat.S_IMODE((data_dir / SECRETS_FILE_NAME).stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / f"{SECRETS_FILE_NAME}.lock").stat().st_mode) == 0o600


def change_document(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_a_changed_ciphertext_fails_with_a_clear_error(new_file, data_dir, no_os_keyring_store):
    new_file.set(SERVICE, "mailbox/1/password", "first")
    new_file.set(SERVICE, "mailbox/2/password", "second")

    def flip_a_byte(document):
        entry = document["entries"][SERVICE]["mailbox/1/password"]
        ciphertext = bytearray(base64.b64decode(entry["ciphertext"]))
        ciphertext[0] ^= 1
        entry["ciphertext"] = base64.b64encode(bytes(ciphertext)).decode()

    change_document(data_dir / SECRETS_FILE_NAME, flip_a_byte)

    with pytest.raises(DamagedEntry, match="'mailbox/1/password' does not pass authentication"):
        new_file.get(SERVICE, "mailbox/1/password")
    assert new_file.get(SERVICE, "mailbox/2/password") == "second"
    store = no_os_keyring_store(data_dir)
    with pytest.raises(SecretsError, match="Could not read 'mailbox/1/password'.*altered") as failure:
        store.get("mailbox/1/password")
    assert "first" not in str(failure.value)


def test_entries_swapped_between_names_fail(new_file, data_dir):
    new_file.set(SERVICE, "mailbox/1/password", "first")
    new_file.set(SERVICE, "mailbox/2/password", "second")

    def swap(document):
        entries = document["entries"][SERVICE]
        entries["mailbox/1/password"], entries["mailbox/2/password"] = (
            entries["mailbox/2/password"], entries["mailbox/1/password"])

    change_document(data_dir / SECRETS_FILE_NAME, swap)

    for name in ("mailbox/1/password", "mailbox/2/password"):
        with pytest.raises(DamagedEntry, match="moved between names"):
            new_file.get(SERVICE, name)


def test_an_entry_moved_to_another_service_fails(new_file, data_dir):
    new_file.set(SERVICE, "mailbox/1/password", "first")
    change_document(data_dir / SECRETS_FILE_NAME, lambda document: document["entries"].update(
        {"other": {"mailbox/1/password": document["entries"][SERVICE]["mailbox/1/password"]}}))

    with pytest.raises(DamagedEntry):
        new_file.get("other", "mailbox/1/password")


def test_a_wrong_master_password_changes_nothing(new_file, data_dir):
    new_file.set(SERVICE, "mailbox/1/password", "first")
    before = snapshot(data_dir)

    with pytest.raises(WrongMasterPassword):
        SecretStore.open(data_dir).unlock("not the master password")

    assert snapshot(data_dir) == before


def test_a_file_from_a_newer_mbxtui_is_refused_clearly(new_file, data_dir):
    change_document(data_dir / SECRETS_FILE_NAME, lambda document: document.update(version=2))

    with pytest.raises(SecretsError, match="format version 2, written by a newer mbxtui"):
        SecretStore.open(data_dir)


@pytest.mark.parametrize("damage", [
    lambda document: document.pop("kdf"),
    lambda document: document["check"].update(nonce="not base64!"),
    lambda document: document.update(entries=[]),
    lambda document: document.update(format="something else"),
])
def test_a_damaged_file_is_reported_as_unreadable(new_file, data_dir, damage):
    change_document(data_dir / SECRETS_FILE_NAME, damage)

    with pytest.raises(SecretsError, match="not an encrypted keyring file mbxtui can read"):
        SecretStore.open(data_dir)


@pytest.fixture
def no_os_keyring_store():
    def unlocked(data_dir: Path) -> SecretStore:
        store = SecretStore.open(data_dir)
        store.unlock(MASTER)
        return store
    return unlocked
