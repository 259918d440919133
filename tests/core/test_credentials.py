"""R4: passwords and tokens are write-only. They go to the keyring (here the encrypted file, the
store used when there is no OS keyring) and everywhere else they are only "set" or "not set"."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterator

import pytest

from mbxtui.core.errors import InvalidInput, PermissionDenied
from mbxtui.core.models import database
from mbxtui.core.permissions import Actor
from mbxtui.core.secrets import SECRETS_FILE_NAME, SecretStore
from mbxtui.core.services import audit, credentials, mailboxes, operators, profiles, users
from tests.backends import ON_POSTGRES
from tests.core.conftest import Actors, open_copy
from tests.core.support import IMAP_PROFILE, file_bytes, snapshot

MAILBOX_SECRET = "Mailbox-Pässword-7f3a9c"
PROFILE_SECRET = "Profile-Secret-51be02"
TOKEN_SECRET = "oauth-token-d41d8cd9"


@pytest.fixture(scope="module")
def keyring_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("secrets")


@pytest.fixture(scope="module")
def store(keyring_dir: Path) -> Iterator[SecretStore]:
    """The encrypted file keyring, chosen because no OS keyring is usable, unlocked once."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
        env.delenv("MBXTUI_KEYRING", raising=False)
        env.setenv("MBXTUI_MASTER_PASSWORD", "master of the test keyring")
        opened = SecretStore.open(keyring_dir)
    assert not opened.needs_master_password
    assert opened.backend_name.startswith("encrypted file")
    yield opened


@pytest.fixture
def ann(admin: Actor) -> None:
    profiles.create(admin, **IMAP_PROFILE)
    users.add_user(admin, "Ann", "ann@corp.test")


def everything_visible(admin: Actor) -> str:
    """What any face can show: JSON of the mailbox, profile and audit log."""
    return json.dumps([mailboxes.show(admin, "ann@corp.test").as_dict(), profiles.show(admin, "imap").as_dict(),
                       audit.list_entries(admin, limit=1000),
                       audit.list_entries(admin, record_kind="mailbox", record_id=mailboxes.get("ann@corp.test").id)],
                      ensure_ascii=False)


def test_a_mailbox_password_is_kept_in_the_keyring_and_shown_only_as_set(admin: Actor, ann, store, db_path: Path,
                                                                        keyring_dir: Path):
    assert mailboxes.show(admin, "ann@corp.test").as_dict()["password"] == "not set"
    credentials.set_mailbox_secret(admin, "ann@corp.test", MAILBOX_SECRET, store)
    box = mailboxes.get("ann@corp.test")
    assert credentials.mailbox_secret(store, box.id).reveal() == MAILBOX_SECRET
    shown = mailboxes.show(admin, "ann@corp.test").as_dict()
    assert (shown["password"], shown["oauth2_token"]) == ("set", "not set")
    assert MAILBOX_SECRET not in everything_visible(admin)
    entry = audit.list_entries(admin, limit=1)[0]
    assert entry["action"] == "mailbox.set_password"
    if not ON_POSTGRES:
        database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
    on_disk = file_bytes(db_path)
    assert MAILBOX_SECRET.encode() not in on_disk
    assert MAILBOX_SECRET.encode() not in (keyring_dir / SECRETS_FILE_NAME).read_bytes()


def test_profile_password_and_tokens_are_write_only_too(admin: Actor, ann, store, db_path: Path):
    credentials.set_profile_secret(admin, "imap", PROFILE_SECRET, store)
    credentials.set_mailbox_secret(admin, "ann@corp.test", TOKEN_SECRET, store, credentials.TOKEN)
    profile = profiles.show(admin, "imap").as_dict()
    assert (profile["password"], profile["oauth2_token"]) == ("set", "not set")
    assert mailboxes.show(admin, "ann@corp.test").as_dict()["oauth2_token"] == "set"
    assert credentials.profile_secret(store, profile["id"]).reveal() == PROFILE_SECRET
    assert credentials.mailbox_secret(store, mailboxes.get("ann@corp.test").id, credentials.TOKEN).reveal() == TOKEN_SECRET
    visible = everything_visible(admin)
    assert PROFILE_SECRET not in visible and TOKEN_SECRET not in visible
    on_disk = file_bytes(db_path)
    assert PROFILE_SECRET.encode() not in on_disk and TOKEN_SECRET.encode() not in on_disk


def test_clearing_a_password_removes_it_from_the_keyring(admin: Actor, ann, store):
    credentials.set_mailbox_secret(admin, "ann@corp.test", MAILBOX_SECRET, store)
    credentials.clear_mailbox_secret(admin, "ann@corp.test", store)
    assert mailboxes.show(admin, "ann@corp.test").as_dict()["password"] == "not set"
    assert credentials.mailbox_secret(store, mailboxes.get("ann@corp.test").id) is None


@pytest.mark.parametrize("secret, problem", [
    ("", "password: is empty"),
    ("two\nlines", "password: contains a line break or NUL character"),
    ("nul\x00byte", "password: contains a line break or NUL character"),
    ("x" * 4097, "password: is longer than 4096 characters"),
])
def test_a_bad_password_is_refused_without_echoing_it(admin: Actor, ann, store, secret: str, problem: str):
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        credentials.set_mailbox_secret(admin, "ann@corp.test", secret, store)
    assert str(refused.value) == problem
    assert snapshot() == before


def test_a_viewer_cannot_set_a_password(actors: Actors, ann, store):
    before = snapshot()
    with pytest.raises(PermissionDenied, match="vic is viewer"):
        credentials.set_mailbox_secret(actors.viewer, "ann@corp.test", MAILBOX_SECRET, store)
    with pytest.raises(PermissionDenied, match="vic is viewer"):
        credentials.set_profile_secret(actors.viewer, "imap", MAILBOX_SECRET, store)
    assert snapshot() == before


def test_the_secrets_of_two_databases_never_meet(admin: Actor, ann, store, databases, template_db: Path | str,
                                                 tmp_path: Path):
    credentials.set_mailbox_secret(admin, "ann@corp.test", MAILBOX_SECRET, store)
    first_key = credentials.secret_key("mailbox", mailboxes.get("ann@corp.test").id, credentials.PASSWORD)
    location, other = open_copy(databases, template_db, tmp_path / "other")
    try:
        database.execute_sql("UPDATE meta SET value = 'another-install' WHERE key = 'install_id'")
        other_admin = operators.current_actor(login="alice")
        users.add_user(other_admin, "Ann", "ann@corp.test")
        box = mailboxes.get("ann@corp.test")
        assert credentials.secret_key("mailbox", box.id, credentials.PASSWORD) != first_key
        assert credentials.mailbox_secret(store, box.id) is None
    finally:
        other.close()
        databases.drop(location)


def test_read_secret_line_takes_one_line_without_its_break():
    assert credentials.read_secret_line(io.StringIO("s3cret\r\nmore\n")) == "s3cret"
    assert credentials.read_secret_line(io.StringIO("s3cret")) == "s3cret"
    assert credentials.read_secret_line(io.StringIO("")) == ""


def test_the_keyring_file_is_in_the_data_directory_and_owner_only(store, keyring_dir: Path):
    assert (keyring_dir / SECRETS_FILE_NAME).stat().st_mode & 0o777 == 0o600
