"""Passwords and OAuth tokens of profiles and mailboxes: kept in the keyring (``secrets``), shown
everywhere else only as "set" / "not set" (R4)."""

from __future__ import annotations

from typing import Callable

from mbxtui.core.db import install_id, write_transaction
from mbxtui.core.errors import InvalidInput
from mbxtui.core.models import Mailbox, Profile
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import audit, mailboxes, profiles

PASSWORD = "password"
TOKEN = "oauth2-token"
MAX_SECRET = 4096


def secret_key(kind: str, record_id: int, what: str, install: str | None = None) -> str:
    """Keys carry the database's install id, so two databases on one keyring never share secrets."""
    return f"{install or install_id()}/{kind}/{record_id}/{what}"


def secret_lookup(store: SecretStore) -> Callable[[str, int, str], str | None]:
    """A thread-safe reader of secrets for Test & Enable workers (reads the install id once, here)."""
    install = install_id()

    def lookup(kind: str, record_id: int, what: str) -> str | None:
        return store.get(secret_key(kind, record_id, what, install))

    return lookup


def check_secret(field: str, value: str) -> str:
    if value is None or value == "":
        raise InvalidInput(field, "is empty")
    if len(value) > MAX_SECRET:
        raise InvalidInput(field, f"is longer than {MAX_SECRET} characters")
    if "\x00" in value or "\n" in value or "\r" in value:
        raise InvalidInput(field, "contains a line break or NUL character")
    return value


def _flag(what: str) -> str:
    return "password_set" if what == PASSWORD else "token_set"


def _store(actor: Actor, model, record_id: int, label: str, value: str, store: SecretStore, what: str) -> None:
    kind = model.__name__.lower()
    store.set(secret_key(kind, record_id, what), value)
    with write_transaction():
        model.update({_flag(what): True}).where(model.id == record_id).execute()
        audit.record(actor, f"{kind}.set_{what}", kind, f"set the {what} of {kind} {label}",
                     [(record_id, None, {what: "set"})])


def set_profile_secret(actor: Actor, name: str, value: str, store: SecretStore, what: str = PASSWORD) -> None:
    require(actor, Permission.CONFIGURE)
    value = check_secret(what, value)
    profile = profiles.get(name)
    _store(actor, Profile, profile.id, profile.name, value, store, what)


def set_mailbox_secret(actor: Actor, email: str, value: str, store: SecretStore, what: str = PASSWORD) -> None:
    require(actor, Permission.CONFIGURE)
    value = check_secret(what, value)
    mailbox = mailboxes.get(email)
    _store(actor, Mailbox, mailbox.id, mailbox.email, value, store, what)


def clear_mailbox_secret(actor: Actor, email: str, store: SecretStore, what: str = PASSWORD) -> None:
    require(actor, Permission.CONFIGURE)
    mailbox = mailboxes.get(email)
    store.delete(secret_key("mailbox", mailbox.id, what))
    with write_transaction():
        Mailbox.update({_flag(what): False}).where(Mailbox.id == mailbox.id).execute()
        audit.record(actor, f"mailbox.clear_{what}", "mailbox", f"cleared the {what} of mailbox {mailbox.email}",
                     [(mailbox.id, {what: "set"}, {what: "not set"})])


def mailbox_secret(store: SecretStore, mailbox_id: int, what: str = PASSWORD) -> str | None:
    return store.get(secret_key("mailbox", mailbox_id, what))


def profile_secret(store: SecretStore, profile_id: int, what: str = PASSWORD) -> str | None:
    return store.get(secret_key("profile", profile_id, what))


def read_secret_line(stream) -> str:
    """One secret from a stream (``--password-stdin``): the first line, without its line break."""
    line = stream.readline()
    value = line[:-1] if line.endswith("\n") else line
    value = value[:-1] if value.endswith("\r") else value
    return value
