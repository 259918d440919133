"""A mailbox's own OAuth2 authorization (issue 13, ``mbxtui mailbox authorize``): the device-code
flow run for a person (core/oauth/delegated.py), its refresh token stored in the keyring only, and
its record (``MailboxAuthorization``): when it was authorized, when its refresh token can expire,
its last refresh and that refresh's error. After each processing pass the refreshes of the process
are recorded and a warning alert is raised ``oauth_expiry_warning_days`` before a refresh token can
expire, naming the command that renews it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from mbxtui.core.db import write_transaction
from mbxtui.core.endpoint_binding import binding_of, plaintext_refusal
from mbxtui.core.enums import AlertLevel, OAuthProvider
from mbxtui.core.errors import InvalidInput, MbxError, PermissionDenied
from mbxtui.core.models import Mailbox, MailboxAuthorization, OrgSettings, Profile, utcnow
from mbxtui.core.oauth import delegated
from mbxtui.core.oauth.delegated import DeviceCode, DeviceFlowEnded, authorize_command
from mbxtui.core.oauth.settings import settings_of
from mbxtui.core.oauth.tokens import TokenError
from mbxtui.core.permissions import SYSTEM, Actor, Permission, Role, require
from mbxtui.core.probes.base import ErrorCode
from mbxtui.core.secret_value import Secret
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import audit, mailboxes
from mbxtui.core.services import settings as settings_service
from mbxtui.core.services.alerts import raise_alert
from mbxtui.core.services.authorization_identity import forget_record, remove_refresh_token
from mbxtui.core.services.credentials import SET_SECRET, TOKEN, secret_key
from mbxtui.core.services.operators import os_login

EXPIRING = "OAUTH_EXPIRING"  # the warning's alert code


class AuthorizationFailed(MbxError):
    """The device-code flow ended without a grant: nothing was stored."""


@dataclass(frozen=True)
class Authorized:
    email: str
    authorized_on: datetime
    refresh_expires_on: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"email": self.email, "authorized": True, "authorized_on": self.authorized_on.isoformat(),
                "refresh_expires_on": self.refresh_expires_on.isoformat() if self.refresh_expires_on else None}


def _naive(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value


def _profile_for(mailbox: Mailbox) -> Profile:
    profile = Profile.get_or_none(Profile.id == mailbox.profile_id) if mailbox.profile_id else None
    command = authorize_command(mailbox.email)
    if profile is None or not profile.oauth_provider:
        raise InvalidInput("mailbox", f"mailbox {mailbox.email} is not on a profile with an OAuth provider: give it "
                                      f"an oauth2 profile with --oauth-provider microsoft365 or generic, then run "
                                      f"`{command}`")
    if profile.oauth_provider == OAuthProvider.GOOGLE:
        raise InvalidInput("mailbox", f"profile {profile.name!r} acts for its mailboxes through a Google service "
                                      f"account: its mailboxes need no authorization of their own")
    if not profile.oauth_client_id:
        raise InvalidInput("mailbox", f"profile {profile.name!r} has no OAuth client id: set one with "
                                      f"`mbxtui profile edit {profile.name} --oauth-client-id ID`")
    for side in ("incoming", "outgoing"):
        if getattr(profile, f"{side}_auth") == "oauth2":
            refusal = plaintext_refusal(profile, side)
            if refusal is not None:
                raise InvalidInput("mailbox", refusal)
    return profile


def authorize(actor: Actor, email: str, store: SecretStore, on_code: Callable[[DeviceCode], None],
              stop: threading.Event | None = None) -> Authorized:
    """Run the device-code flow for the mailbox and keep its refresh token in the keyring. Refused,
    with nothing stored, when the flow ends without a grant (expired, declined, stopped)."""
    require(actor, SET_SECRET)
    mailbox = mailboxes.get(email)
    profile = _profile_for(mailbox)
    settings = settings_of(profile)
    assert settings is not None
    try:
        grant = delegated.device_flow(settings, mailbox.email, on_code, stop)
    except DeviceFlowEnded as ended:
        raise AuthorizationFailed(ended.message) from None
    except TokenError as failure:
        raise AuthorizationFailed(f"{failure.message}; nothing was stored") from None
    if grant.refresh_token is None:
        raise AuthorizationFailed(f"the OAuth provider {settings.where} gave no refresh token, so the mailbox could "
                                  f"not renew its own tokens: nothing was stored; add offline_access to the "
                                  f"profile's --oauth-scope, then run `{authorize_command(mailbox.email)}` again")
    store.set(secret_key("mailbox", mailbox.id, delegated.REFRESH_TOKEN), grant.refresh_token.reveal())
    delegated.forget_mailbox(mailbox.id)
    now = utcnow()
    org = settings_service.load()
    expires_on = now + timedelta(seconds=grant.refresh_expires_in) if grant.refresh_expires_in else (
        now + timedelta(days=org.oauth_refresh_days))
    with write_transaction():
        before = MailboxAuthorization.get_or_none(MailboxAuthorization.mailbox == mailbox.id)
        MailboxAuthorization.delete().where(MailboxAuthorization.mailbox == mailbox.id).execute()
        MailboxAuthorization.create(mailbox=mailbox.id, authorized_on=now, authorized_by=actor.login,
                                    refresh_expires_on=expires_on, last_refresh_on=now)
        Mailbox.update(token_set=True, token_bound_to=binding_of(profile), modified_on=now,
                       row_version=Mailbox.row_version + 1).where(Mailbox.id == mailbox.id).execute()
        audit.record(actor, "mailbox.authorize", "mailbox", f"authorized mailbox {mailbox.email} at its OAuth "
                                                            f"provider {settings.where}",
                     [(mailbox.id, {"authorization": "authorized" if before else "none"},
                       {"authorization": "authorized"})])
    return Authorized(mailbox.email, now, expires_on)


def _when(at: float) -> datetime:
    return datetime.fromtimestamp(at, timezone.utc).replace(tzinfo=None)


def _worker_actor() -> Actor:
    """Who a worker's own audit entries name: the OS login it runs as (on PostgreSQL the server
    stamps its role instead)."""
    try:
        return Actor(login=os_login(), role=Role.SYSTEM_ADMIN)
    except PermissionDenied:  # a uid without a passwd entry
        return SYSTEM


def _audit_lost_grant(worker: str | None, outcome: delegated.RefreshOutcome, before: str | None) -> None:
    """An audit entry, once per loss, when the provider answered a refresh that the mailbox's grant
    is expired or revoked (``before``: the refresh error recorded until now)."""
    if outcome.code != ErrorCode.OAUTH_REAUTHORIZE or before == outcome.error:
        return
    mailbox = Mailbox.get_or_none(Mailbox.id == outcome.mailbox_id)
    if mailbox is None:
        return
    by = f"worker {worker}" if worker else "this process"
    audit.record(_worker_actor(), "mailbox.authorization_lost", "mailbox",
                 f"{by} found the authorization of mailbox {mailbox.email} refused by its OAuth provider "
                 f"(OAUTH_REAUTHORIZE: {outcome.error})",
                 [(mailbox.id, {"authorization": "authorized"}, {"authorization": "refused by provider"})])


def record_refreshes(org: OrgSettings, worker: str | None = None) -> int:
    """Write what this process's refreshes came to (the last one of each mailbox); a grant found
    expired or revoked is audited in ``worker``'s name. Caller holds the transaction."""
    recorded = 0
    for outcome in delegated.refresh_outcomes():
        before = MailboxAuthorization.get_or_none(MailboxAuthorization.mailbox == outcome.mailbox_id)
        if before is not None:
            _audit_lost_grant(worker, outcome, before.last_refresh_error)
        at = _when(outcome.at)
        changes: dict[Any, Any] = {MailboxAuthorization.last_refresh_on: at,
                                   MailboxAuthorization.last_refresh_error: outcome.error}
        if outcome.error is None and outcome.rotated:
            lifetime = (timedelta(seconds=outcome.refresh_expires_in) if outcome.refresh_expires_in
                        else timedelta(days=org.oauth_refresh_days))
            changes[MailboxAuthorization.refresh_expires_on] = at + lifetime
            if lifetime > timedelta(days=org.oauth_expiry_warning_days):
                changes[MailboxAuthorization.warned_on] = None
        recorded += MailboxAuthorization.update(changes).where(
            MailboxAuthorization.mailbox == outcome.mailbox_id).execute()
    return recorded


def warn_expiring(now: datetime, org: OrgSettings) -> int:
    """A warning alert, once, for each authorization whose refresh token can expire within the
    organisation's warning days. Caller holds the transaction."""
    horizon = _naive(now) + timedelta(days=org.oauth_expiry_warning_days)
    due = list(MailboxAuthorization.select(MailboxAuthorization, Mailbox).join(Mailbox).where(
        MailboxAuthorization.warned_on.is_null(), MailboxAuthorization.refresh_expires_on <= horizon))
    for authorization in due:
        mailbox = authorization.mailbox
        expires = authorization.refresh_expires_on
        raise_alert(AlertLevel.WARNING, EXPIRING,
                    f"the authorization of mailbox {mailbox.email} at its OAuth provider can expire on "
                    f"{expires:%Y-%m-%d %H:%M} UTC, after which it stops: renew it before then with "
                    f"`{authorize_command(mailbox.email)}`", mailbox=mailbox, settings=org)
        MailboxAuthorization.update(warned_on=_naive(now)).where(
            MailboxAuthorization.id == authorization.id).execute()
    return len(due)


def after_pass(now: datetime, worker: str | None = None) -> None:
    """Once per processing pass or Test & Enable run (of ``worker``): record the refreshes, warn of
    expiries."""
    with write_transaction():
        org = settings_service.load()
        record_refreshes(org, worker)
        warn_expiring(now, org)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(sep=" ", timespec="seconds") if value else None


def state_of(actor: Actor, email: str) -> dict[str, Any] | None:
    """What is recorded of the mailbox's own authorization (never a token); None when it has none."""
    require(actor, Permission.READ)
    mailbox = mailboxes.get(email)
    record = MailboxAuthorization.get_or_none(MailboxAuthorization.mailbox == mailbox.id)
    if record is None:
        return None
    return {"authorized_on": _iso(record.authorized_on), "authorized_by": record.authorized_by,
            "refresh_expires_on": _iso(record.refresh_expires_on), "last_refresh_on": _iso(record.last_refresh_on),
            "last_refresh_error": record.last_refresh_error}


@dataclass(frozen=True)
class Deauthorized:
    """A mailbox's own authorization taken back: its refresh token left the keyring; ``revoked``
    says what the provider did (True revoked, False refused or unreachable, None: no way to)."""

    email: str
    revoked: bool | None
    revocation: str
    warning: str | None = None  # the refresh token could not be removed from the keyring after the commit

    def as_dict(self) -> dict[str, Any]:
        return {"email": self.email, "authorized": False, "revoked": self.revoked, "revocation": self.revocation}


def deauthorize(actor: Actor, email: str, store: SecretStore) -> Deauthorized:
    """Take back the mailbox's own authorization (``mbxtui mailbox deauthorize``): the grant is
    revoked at the provider where it has a revocation endpoint (RFC 7009), then the record goes,
    audited, and once that has committed the refresh token leaves the keyring, whatever the
    provider answered."""
    require(actor, SET_SECRET)
    mailbox = mailboxes.get(email)
    key = secret_key("mailbox", mailbox.id, delegated.REFRESH_TOKEN)
    held = store.get(key)
    if held is None and MailboxAuthorization.get_or_none(MailboxAuthorization.mailbox == mailbox.id) is None:
        raise InvalidInput("mailbox", f"mailbox {mailbox.email} has no authorization of its own: nothing to take back")
    profile = Profile.get_or_none(Profile.id == mailbox.profile_id) if mailbox.profile_id else None
    settings = settings_of(profile) if profile is not None else None
    if held is None:
        revocation = delegated.Revocation(None, "the keyring held no refresh token for it: nothing to revoke")
    elif settings is None or settings.provider == OAuthProvider.GOOGLE:
        revocation = delegated.Revocation(None, "its profile names no OAuth provider it was authorized at, so the "
                                                "grant could not be revoked: revoke it in the provider's console")
    else:
        # Before the token goes: a revocation that fails leaves nothing worse than the token removed.
        revocation = delegated.revoke(settings, Secret(held))
    with write_transaction():
        forget_record(mailbox.id)
        pasted = store.get(secret_key("mailbox", mailbox.id, TOKEN)) is not None
        Mailbox.update(token_set=pasted, token_bound_to=Mailbox.token_bound_to if pasted else None,
                       modified_on=utcnow(), row_version=Mailbox.row_version + 1).where(
            Mailbox.id == mailbox.id).execute()
        outcome = {True: "revoked", False: "revocation failed", None: "not revocable"}[revocation.revoked]
        audit.record(actor, "mailbox.deauthorize", "mailbox",
                     f"took back the authorization of mailbox {mailbox.email} ({outcome}: {revocation.sentence})",
                     [(mailbox.id, {"authorization": "authorized"}, {"authorization": "none", "revocation": outcome})])
    return Deauthorized(mailbox.email, revocation.revoked, revocation.sentence,
                        remove_refresh_token(mailbox.id, mailbox.email, store))


