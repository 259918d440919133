"""Passwords and OAuth tokens of profiles and mailboxes: kept in the keyring (``secrets``), shown
everywhere else only as "set" / "not set" (R4), read back as ``Secret`` values, and bound to the
endpoint they were set or confirmed for (R34, ``endpoint_binding``)."""

from __future__ import annotations

from typing import Callable

from mbxtui.core.db import install_id, write_transaction
from mbxtui.core.endpoint_binding import (  # NO_SECRET also for the console, which reads only services
    CONFIRMED, NO_SECRET, NOT_CONFIRMED, binding_of, binding_sql, oauth_binding_of, plaintext_refusal, secret_state,
)
from mbxtui.core.enums import OAuthCredential, OAuthProvider
from mbxtui.core.oauth import client_credentials
from mbxtui.core.oauth.delegated import REFRESH_TOKEN
from mbxtui.core.oauth.settings import CREDENTIALS
from mbxtui.core.errors import InvalidInput
from mbxtui.core.models import Mailbox, Profile, database, utcnow
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.secret_value import Secret
from mbxtui.core.secret_keys import OAUTH_CREDENTIAL, PASSWORD, TOKEN, secret_key
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import audit, mailboxes, profiles
from mbxtui.core.services.authorization_identity import forget_record
from mbxtui.core.services.selection import SELECTED, Selection, materialise, update_selected

MAX_SECRET = 4096
# Who may confirm a secret for a new endpoint: whoever may set it.
SET_SECRET = Permission.CONFIGURE
CONFIRM_SECRET = Permission.CONFIRM_SECRET


def _secret_or_none(value: str | None) -> Secret | None:
    return None if value is None else Secret(value)


def secret_lookup(store: SecretStore) -> Callable[[str, int, str], Secret | None]:
    """A thread-safe reader of secrets for Test & Enable and processing (reads the install id once,
    here). Raises KeyringUnavailable for a secret the keyring cannot give now and never gave."""
    install = install_id()

    def lookup(kind: str, record_id: int, what: str) -> Secret | None:
        # While the keyring cannot be read, a secret read earlier in this process still serves:
        # only the mailboxes whose secrets were never read fail (KEYRING_UNAVAILABLE).
        return _secret_or_none(store.get(secret_key(kind, record_id, what, install), last_read=True))

    def save(kind: str, record_id: int, what: str, value: Secret) -> None:  # a rotated refresh token
        store.set(secret_key(kind, record_id, what, install), value.reveal())

    lookup.save = save  # type: ignore[attr-defined]  # functools.cache(lookup) keeps it
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


def _bound(what: str) -> str:
    return "password_bound_to" if what == PASSWORD else "token_bound_to"


def _uses(profile: Profile, owner: str, what: str) -> list[str]:
    """The sides of ``profile`` that send this secret of a mailbox or of the profile."""
    wanted = "oauth2" if what == TOKEN else owner
    return [side for side in ("incoming", "outgoing") if getattr(profile, f"{side}_auth") == wanted]


def _refuse_cleartext(profile: Profile | None, owner: str, what: str) -> None:
    """R34: a secret is not set or confirmed for an endpoint that would carry it in clear."""
    if profile is None:
        return
    for side in _uses(profile, owner, what):
        refusal = plaintext_refusal(profile, side)
        if refusal is not None:
            raise InvalidInput(what, refusal)


def _store(actor: Actor, model, record_id: int, label: str, value: str, store: SecretStore, what: str,
           profile: Profile | None) -> None:
    kind = model.__name__.lower()
    bound_to = binding_of(profile) if profile is not None else None
    store.set(secret_key(kind, record_id, what), value)
    with write_transaction():
        model.update({_flag(what): True, _bound(what): bound_to}).where(model.id == record_id).execute()
        audit.record(actor, f"{kind}.set_{what}", kind, f"set the {what} of {kind} {label}",
                     [(record_id, None, {what: "set"})])


def set_profile_secret(actor: Actor, name: str, value: str, store: SecretStore, what: str = PASSWORD) -> None:
    """Store the profile's secret, bound to the profile's endpoint as it is now (R34)."""
    require(actor, SET_SECRET)
    value = check_secret(what, value)
    profile = profiles.get(name)
    _refuse_cleartext(profile, "profile", what)
    _store(actor, Profile, profile.id, profile.name, value, store, what, profile)


def set_profile_oauth(actor: Actor, name: str, kind: str, value: str | bytes, store: SecretStore) -> None:
    """Store the client credential the profile proves itself with to its OAuth provider (a client
    secret, or the content of a certificate's PEM file or of a service account's key file, read
    once by the caller), bound to the profile's endpoint and OAuth settings as they are now (R34)."""
    require(actor, SET_SECRET)
    option = {OAuthCredential.CLIENT_SECRET: "--client-secret-stdin", OAuthCredential.CERTIFICATE: "--certificate-file",
              OAuthCredential.SERVICE_ACCOUNT: "--service-account-file"}[OAuthCredential(kind)]
    profile = profiles.get(name)
    if not profile.oauth_provider:
        raise InvalidInput(option, f"profile {profile.name!r} has no OAuth provider: set one first "
                                   f"(mbxtui profile edit NAME --oauth-provider microsoft365|google|generic ...)")
    provider = OAuthProvider(profile.oauth_provider)
    if kind not in CREDENTIALS[provider]:
        accepted = " or ".join(f"a {k.replace('_', ' ')}" for k in CREDENTIALS[provider])
        raise InvalidInput(option, f"a {provider} provider takes {accepted}, not a {kind.replace('_', ' ')}")
    if kind == OAuthCredential.CLIENT_SECRET:
        stored = check_secret("client secret", value if isinstance(value, str) else value.decode("utf-8", "replace"))
    elif kind == OAuthCredential.CERTIFICATE:
        stored = client_credentials.certificate_from_pem(option, value if isinstance(value, bytes) else value.encode())
    else:
        stored = client_credentials.service_account_from_json(option, value if isinstance(value, bytes)
                                                              else value.encode())
    for side in _uses(profile, "profile", TOKEN):
        refusal = plaintext_refusal(profile, side)
        if refusal is not None:
            raise InvalidInput(option, refusal)
    store.set(secret_key("profile", profile.id, OAUTH_CREDENTIAL), stored)
    with write_transaction():
        before = profile.oauth_credential
        Profile.update(oauth_credential=kind, oauth_credential_bound_to=oauth_binding_of(profile)).where(
            Profile.id == profile.id).execute()
        audit.record(actor, "profile.set_oauth", "profile", f"set the OAuth {kind.replace('_', ' ')} of profile "
                                                            f"{profile.name}",
                     [(profile.id, {"oauth_credential": f"{before} set" if before else "not set"},
                       {"oauth_credential": f"{kind} set"})])


def _profile_of(mailbox: Mailbox) -> Profile | None:
    return Profile.get_or_none(Profile.id == mailbox.profile_id) if mailbox.profile_id else None


def set_mailbox_secret(actor: Actor, email: str, value: str, store: SecretStore, what: str = PASSWORD) -> None:
    """Store the mailbox's secret, bound to its profile's endpoint as it is now (R34)."""
    require(actor, SET_SECRET)
    value = check_secret(what, value)
    mailbox = mailboxes.get(email)
    profile = _profile_of(mailbox)
    _refuse_cleartext(profile, "mailbox", what)
    _store(actor, Mailbox, mailbox.id, mailbox.email, value, store, what, profile)


def clear_mailbox_secret(actor: Actor, email: str, store: SecretStore, what: str = PASSWORD) -> None:
    require(actor, SET_SECRET)
    mailbox = mailboxes.get(email)
    # Removed first, as asked: a transaction that fails after leaves a mailbox asking for a secret.
    store.delete(secret_key("mailbox", mailbox.id, what))
    if what == TOKEN:
        store.delete(secret_key("mailbox", mailbox.id, REFRESH_TOKEN))
    with write_transaction():
        Mailbox.update({_flag(what): False, _bound(what): None}).where(Mailbox.id == mailbox.id).execute()
        before, after, also = {what: "set"}, {what: "not set"}, ""
        if what == TOKEN:  # a token cleared takes the mailbox's own authorization with it
            if forget_record(mailbox.id):
                before["authorization"], after["authorization"], also = "authorized", "none", " and its authorization"
        audit.record(actor, f"mailbox.clear_{what}", "mailbox",
                     f"cleared the {what}{also} of mailbox {mailbox.email}", [(mailbox.id, before, after)])


def mailbox_secret(store: SecretStore, mailbox_id: int, what: str = PASSWORD) -> Secret | None:
    return _secret_or_none(store.get(secret_key("mailbox", mailbox_id, what)))


def profile_secret(store: SecretStore, profile_id: int, what: str = PASSWORD) -> Secret | None:
    return _secret_or_none(store.get(secret_key("profile", profile_id, what)))


# --- R34: confirming a secret for a new endpoint ------------------------------------------------

def mailbox_secret_state(actor: Actor, email: str) -> str:
    require(actor, Permission.READ)
    mailbox = mailboxes.get(email)
    return secret_state(mailbox, _profile_of(mailbox))


def confirmed_mailbox_ids(profile_name: str) -> list[int]:
    """The mailboxes of the profile whose secrets are all confirmed for its endpoint as it is now."""
    profile = profiles.get(profile_name)
    now = binding_of(profile)
    return [row[0] for row in database.execute_sql(
        "SELECT id FROM mailbox WHERE profile_id = ? AND (password_set = 1 OR token_set = 1) "
        "AND (password_set = 0 OR password_bound_to = ?) AND (token_set = 0 OR token_bound_to = ?) ORDER BY id",
        [profile.id, now, now])]


def confirm_profile_secret(actor: Actor, name: str) -> bool:
    """Bind the profile's password and token to its endpoint as it is now; False when they
    already were. Refused when it has neither, or when they would go in clear."""
    require(actor, CONFIRM_SECRET)
    with write_transaction():
        profile = profiles.get(name)
        held = [what for what in (PASSWORD, TOKEN) if getattr(profile, _flag(what))]
        if profile.oauth_credential:
            held.append(OAUTH_CREDENTIAL)
        if not held:
            raise InvalidInput("confirm-secret", f"profile {profile.name!r} has no password or token to confirm: "
                                                 f"set one with `mbxtui profile set-password`")
        for what in held:
            _refuse_cleartext(profile, "profile", TOKEN if what == OAUTH_CREDENTIAL else what)
        bindings = {what: oauth_binding_of(profile) if what == OAUTH_CREDENTIAL else binding_of(profile)
                    for what in held}
        columns = {what: "oauth_credential_bound_to" if what == OAUTH_CREDENTIAL else _bound(what) for what in held}
        stale = [what for what in held if getattr(profile, columns[what]) != bindings[what]]
        if not stale:
            return False
        Profile.update({columns[what]: bindings[what] for what in stale}).where(Profile.id == profile.id).execute()
        audit.record(actor, "profile.confirm_secret", "profile",
                     f"confirmed the {' and '.join(stale)} of profile {profile.name} for its current endpoint",
                     [(profile.id, {what: NOT_CONFIRMED for what in stale}, {what: CONFIRMED for what in stale})])
    return True


def confirm_mailbox_secrets(actor: Actor, selection: Selection) -> tuple[int, int]:
    """Bind the password and token of each selected mailbox to its profile's endpoint as it is now
    (R34). Returns (selected, confirmed); mailboxes without a secret, without a profile or already
    confirmed are left as they are. Refused whole when a profile would carry them in clear."""
    require(actor, CONFIRM_SECRET)
    current = f"(SELECT {binding_sql('p')} FROM profile p WHERE p.id = mailbox.profile_id)"
    # An endpoint's text is never empty, so coalesce tells an unbound secret from a bound one.
    stale = (f"profile_id IS NOT NULL AND ((password_set = 1 AND coalesce(password_bound_to, '') != {current}) "
             f"OR (token_set = 1 AND coalesce(token_bound_to, '') != {current}))")
    with write_transaction():
        selected = materialise(actor, selection)
        profile_ids = [row[0] for row in database.execute_sql(
            f"SELECT DISTINCT profile_id FROM mailbox WHERE {SELECTED} AND {stale}")]
        for profile in Profile.select().where(Profile.id.in_(profile_ids)) if profile_ids else []:
            for what in (PASSWORD, TOKEN):
                _refuse_cleartext(profile, "mailbox", what)
        confirmed = audit.record_selection(
            actor, "mailbox.confirm_secret",
            "confirmed the secrets of {count} mailbox(es) for their profile's current endpoint",
            ["profile_id"], {"secret": CONFIRMED}, f"{SELECTED} AND {stale}")
        database.execute_sql(
            f"{update_selected()} SET "
            f"password_bound_to = CASE WHEN password_set = 1 THEN {current} ELSE password_bound_to END, "
            f"token_bound_to = CASE WHEN token_set = 1 THEN {current} ELSE token_bound_to END, "
            f"modified_on = ?, row_version = row_version + 1 WHERE {SELECTED} AND {stale}", [utcnow()])
    return selected, confirmed


def read_secret_line(stream) -> str:
    """One secret from a stream (``--password-stdin``): the first line, without its line break."""
    line = stream.readline()
    value = line[:-1] if line.endswith("\n") else line
    value = value[:-1] if value.endswith("\r") else value
    return value
