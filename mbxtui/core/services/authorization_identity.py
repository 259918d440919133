"""R34 for a mailbox's own OAuth2 authorization: its refresh token is for one address at one OAuth
client. The services that change an address, a mailbox's profile or a profile's OAuth client
(mailboxes, bulk, profiles, credentials) ask here; authorizations, which imports them, too. So this
module imports none of them."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

from mbxtui.core.enums import OAuthProvider
from mbxtui.core.errors import InvalidInput
from mbxtui.core.models import Mailbox, MailboxAuthorization, Profile
from mbxtui.core.oauth import delegated
from mbxtui.core.oauth.settings import OAuthSettings, settings_of
from mbxtui.core.secret_keys import TOKEN, secret_key
from mbxtui.core.secret_value import Secret
from mbxtui.core.secrets import SecretsError, SecretStore
from mbxtui.core.services.selection import refuse_if_any

log = logging.getLogger(__name__)
REVOCATION_WAIT = 3.0  # seconds a save waits for the provider's answer to the revocation of a dropped grant


def authorized_on(profile_id: int) -> tuple[int, str | None]:
    """How many mailboxes of the profile have their own authorization, and the address of one."""
    query = (Mailbox.select(Mailbox.email).join(MailboxAuthorization, on=(MailboxAuthorization.mailbox == Mailbox.id))
             .where(Mailbox.profile == profile_id))
    first = query.order_by(Mailbox.email).first()
    return query.count(), first.email if first is not None else None


def _client(values: Any) -> tuple[Any, ...] | None:
    """The OAuth client a mailbox of a profile with these ``values`` (a row, or its fields as a
    namespace) authorizes itself at; None when its mailboxes do not."""
    provider = getattr(values, "oauth_provider", None)
    if not provider or provider == OAuthProvider.GOOGLE:
        return None
    return (provider, values.oauth_tenant, values.oauth_client_id, values.oauth_issuer)


def _client_of(profile: Profile | None) -> tuple[Any, ...] | None:
    return _client(profile) if profile is not None else None


def refuse_new_client(profile: Profile, after: dict[str, Any], option: str) -> None:
    """``profile edit``: a new OAuth provider, tenant, client id or issuer would send the refresh
    tokens of the profile's authorized mailboxes to another client (R34): refused while it has any."""
    if _client_of(profile) == _client(SimpleNamespace(**after)):
        return
    count, example = authorized_on(profile.id)
    if count:
        raise InvalidInput(option, f"{count} mailbox(es) of profile {profile.name!r} ({example}, ...) are "
                                   f"authorized at its OAuth client as it is: a new provider, tenant, client id or "
                                   f"issuer would send their refresh tokens elsewhere; take each back first with "
                                   f"`mbxtui mailbox deauthorize EMAIL`")


def _same_client_ids(profile: Profile) -> list[int]:
    """``profile`` and the profiles whose mailboxes authorize themselves at the same client."""
    client = _client_of(profile)
    if client is None:
        return [profile.id]
    return [profile.id] + [other.id for other in Profile.select().where(
        Profile.oauth_provider == profile.oauth_provider, Profile.id != profile.id) if _client_of(other) == client]


def leaves_identity(mailbox: Mailbox, new_email: bool, new_profile_id: int | None) -> bool:
    """Whether a new address, or a move to ``new_profile_id``, would leave the mailbox's own
    authorization speaking for another identity: the person signed in as the old address, at the
    old profile's client (a move to a profile of the same client keeps it, bound by R34)."""
    if not MailboxAuthorization.select().where(MailboxAuthorization.mailbox == mailbox.id).exists():
        return False
    if new_email:
        return True
    old = Profile.get_or_none(Profile.id == mailbox.profile_id) if mailbox.profile_id else None
    new = Profile.get_or_none(Profile.id == new_profile_id) if new_profile_id else None
    return _client_of(old) is None or _client_of(old) != _client_of(new)


@dataclass(frozen=True)
class DroppedGrant:
    """A mailbox's own authorization dropped in an edit's transaction, and what is left to do once
    that transaction has committed (``finish``): revoke the grant at the provider it was made at
    (RFC 7009) and take its refresh token out of the keyring. Never before the commit: an edit the
    database refuses would have left the mailbox's record naming a grant no longer held."""

    mailbox_id: int
    email: str  # the address the grant speaks for
    refresh_token: Secret | None
    settings: OAuthSettings | None  # of the profile it was made at
    store: SecretStore

    def finish(self, email_now: str) -> list[str]:
        """Revoke, then remove; each failure a warning sentence (the edit stands). ``email_now``:
        the mailbox's address after the edit. The provider's answer is awaited ``REVOCATION_WAIT``
        seconds at most: a slow one does not hold the save for its timeout."""
        warnings = []
        if self.refresh_token is not None and self.settings is not None \
                and self.settings.provider != OAuthProvider.GOOGLE:
            revocation = _revoke_within(self.settings, self.refresh_token, self.email, REVOCATION_WAIT)
            if revocation.revoked is not True:
                warnings.append(f"the authorization of {self.email} was dropped, but not revoked at its OAuth "
                                f"provider: {revocation.sentence}")
        left = remove_refresh_token(self.mailbox_id, email_now, self.store)
        if left is not None:
            warnings.append(left)
        return warnings


def _revoke_within(settings: OAuthSettings, refresh_token: Secret, email: str, wait: float) -> delegated.Revocation:
    """``delegated.revoke`` in a thread of its own, awaited ``wait`` seconds: past that the revocation
    goes on while the process lives, and its late outcome is logged."""
    answered: list[delegated.Revocation] = []
    late = threading.Event()

    def revoke() -> None:
        try:
            revocation = delegated.revoke(settings, refresh_token)
        except Exception as exc:  # a fault of ours: the edit has committed, the token still goes
            log.exception("revoking the dropped authorization of mailbox %s failed", email)
            revocation = delegated.Revocation(False, f"the revocation failed ({type(exc).__name__}): revoke it "
                                                     f"in the provider's own console")
        answered.append(revocation)
        if late.is_set():
            log.warning("the late revocation of the dropped authorization of mailbox %s: %s", email,
                        revocation.sentence)

    worker = threading.Thread(target=revoke, name=f"mbxtui revoke {email}", daemon=True)
    worker.start()
    worker.join(wait)
    if answered:
        return answered[0]
    late.set()
    if answered:  # answered between the join and the flag
        return answered[0]
    return delegated.Revocation(False, f"the OAuth provider {settings.where} had not answered the revocation within "
                                       f"{wait:g} s, so the save did not wait for it and the grant may still be "
                                       f"valid there: revoke it in the provider's own console (a console left open "
                                       f"logs the revocation's late outcome)")


def drop_for_new_identity(mailbox: Mailbox, store: Callable[[], SecretStore] | None) -> DroppedGrant:
    """Take the mailbox's authorization record away, because its address or OAuth client changes
    (``mailbox edit``); the caller saves ``mailbox``, audits it in its transaction and, once it has
    committed, calls ``finish``. Refused without a keyring to take the refresh token from: it would
    be left behind."""
    if store is None:
        raise InvalidInput("mailbox", f"mailbox {mailbox.email} has its own OAuth2 authorization, which a new address "
                                      f"or OAuth client would leave in the keyring: take it back first with "
                                      f"`mbxtui mailbox deauthorize {mailbox.email}`")
    opened = store()
    held = opened.get(secret_key("mailbox", mailbox.id, delegated.REFRESH_TOKEN))
    profile = Profile.get_or_none(Profile.id == mailbox.profile_id) if mailbox.profile_id else None
    forget_record(mailbox.id)
    pasted = opened.get(secret_key("mailbox", mailbox.id, TOKEN)) is not None
    mailbox.token_set = pasted
    if not pasted:
        mailbox.token_bound_to = None
    return DroppedGrant(mailbox.id, mailbox.email, Secret(held) if held is not None else None,
                        settings_of(profile) if profile is not None else None, opened)


def refuse_moving_authorized(target: Profile) -> None:
    """Bulk edit and Apply Default Email Settings: refused whole when a selected mailbox with its own
    authorization would move to another OAuth client (its refresh token would be left behind)."""
    keep = _same_client_ids(target)
    refuse_if_any(f"id IN (SELECT mailbox_id FROM mailbox_authorization) AND (profile_id IS NULL OR profile_id NOT IN "
                  f"({', '.join('?' for _ in keep)}))", keep, "profile",
                  f"these mailboxes have their own OAuth2 authorization, which profile {target.name!r} would leave "
                  f"in the keyring: take each back first with `mbxtui mailbox deauthorize EMAIL`, or move them "
                  f"one by one with `mbxtui mailbox edit EMAIL --profile`")



def forget_record(mailbox_id: int) -> bool:
    """The mailbox's authorization record goes (its refresh token stays in the keyring until the
    caller's transaction has committed: ``remove_refresh_token``); True when it had one. Caller
    holds the transaction and audits it."""
    delegated.forget_mailbox(mailbox_id)
    return MailboxAuthorization.delete().where(MailboxAuthorization.mailbox == mailbox_id).execute() > 0


def remove_refresh_token(mailbox_id: int, email: str, store: SecretStore) -> str | None:
    """After the commit that dropped its record: the mailbox's refresh token leaves the keyring.
    None when it did (or there was none); else a warning sentence: the change stands, the token
    is no longer used, and the command that removes it once the keyring answers."""
    delegated.forget_mailbox(mailbox_id)
    try:
        store.delete(secret_key("mailbox", mailbox_id, delegated.REFRESH_TOKEN))
    except SecretsError as failure:
        return (f"the change was saved, but the refresh token of mailbox {email} could not be removed from the "
                f"keyring ({failure}); it is no longer used: remove it with `mbxtui mailbox deauthorize {email}` "
                f"once the keyring answers")
    return None
