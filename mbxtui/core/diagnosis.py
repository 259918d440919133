"""``profile diagnose``: why an OAuth2 profile's mailboxes cannot log in. Fetches a token from the
profile's provider, reads its claims (core/oauth/claims.py: audience, tenant, roles or scopes,
expiry), logs in as one mailbox with each protocol the profile uses OAuth2 for, and says what is
wrong and what to change where. The token never leaves this module: only its claims do.

A profile without an OAuth provider is refused (its logins are what ``profile test`` and Test &
Enable check)."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from mbxtui.core.enums import Approval, OAuthProvider, ProfileType
from mbxtui.core.errors import InvalidInput, NotFound
from mbxtui.core.mailbox_check import (
    MailboxCheckResult, MailboxSnapshot, ProfileSnapshot, Withheld, credentials_for, endpoint, mailbox_snapshot,
    profile_snapshot,
)
from mbxtui.core.models import Mailbox, MailboxAuthorization, Profile
from mbxtui.core.oauth.claims import TokenClaims, read_claims
from mbxtui.core.oauth.settings import settings_of
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.probes import imap, pop3, smtp
from mbxtui.core.probes.base import Credentials, ErrorCode, ProbeResult
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import credentials, profiles
from mbxtui.core.services import settings as settings_service
from mbxtui.core.services.mailboxes import approval_required

# What Exchange Online accepts as the audience of a token for IMAP, POP3 and SMTP.
EXCHANGE_AUDIENCES = frozenset({"https://outlook.office365.com", "https://outlook.office.com",
                                "00000002-0000-0ff1-ce00-000000000000"})
EXCHANGE_SCOPE = "https://outlook.office365.com/.default"
# The app permission (role) an app-only token needs, by protocol.
ROLES = {"imap": "IMAP.AccessAsApp", "pop3": "POP.AccessAsApp", "smtp": "SMTP.SendAsApp"}
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Finding:
    """One thing wrong: a code (an R14 code, or ``TOKEN_AUDIENCE``, ``TOKEN_TENANT``, ``TOKEN_EXPIRED``
    for what the token's claims show) and a sentence saying what to change where."""

    code: str
    message: str


@dataclass
class Diagnosis:
    profile: str
    provider: str
    mailbox: str
    mailbox_chosen: str  # why this mailbox: given, or the profile's first enabled / approved one
    token_ok: bool = False
    token_seconds: float = 0.0
    claims: TokenClaims | None = None
    logins: dict[str, ProbeResult] = field(default_factory=dict)  # by protocol: imap or pop3, smtp
    not_checked: dict[str, str] = field(default_factory=dict)  # a protocol without OAuth2, and why
    findings: list[Finding] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.token_ok and not self.findings and all(result.ok for result in self.logins.values())

    def as_dict(self) -> dict[str, Any]:
        """As ``mbxtui profile diagnose --json`` prints it; ``logins`` as Test & Enable keeps its steps."""
        steps = MailboxCheckResult(dict(self.logins)).as_dict()
        for protocol, result in self.logins.items():
            steps[protocol]["mechanism"] = result.mechanism
        return {"profile": self.profile, "provider": self.provider, "mailbox": self.mailbox,
                "mailbox_chosen": self.mailbox_chosen,
                "token": {"ok": self.token_ok, "seconds": round(self.token_seconds, 4),
                          "claims": None if self.claims is None else self.claims.as_dict()},
                "logins": steps, "not_checked": dict(self.not_checked), "findings": [{"code": f.code, "message": f.message} for f in self.findings],
                "passed": self.passed}


def diagnose_profile(actor: Actor, name: str, store: SecretStore, *, mailbox: str | None = None,
                     now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> Diagnosis:
    """Token, claims and logins of OAuth2 profile ``name`` as ``mailbox`` (default: its first enabled
    mailbox, else its first approved one; of a profile with no client credential, a mailbox with its
    own authorization first)."""
    require(actor, Permission.TEST)
    row = profiles.get(name)
    settings = settings_of(row)
    if settings is None:
        raise InvalidInput("profile", f"profile {row.name!r} does not fetch OAuth2 tokens (it has no OAuth "
                                      f"provider), so there is no token to diagnose: check its logins with "
                                      f"`mbxtui profile test {shlex.quote(row.name)}` or Test & Enable")
    box, chosen = _mailbox_of(row, mailbox)
    profile = profile_snapshot(row)
    diagnosis = Diagnosis(row.name, settings.provider, box.email, chosen)
    sides = [side for side in ("incoming", "outgoing") if getattr(row, f"{side}_auth") == "oauth2"]
    for side in ("incoming", "outgoing"):
        if side not in sides:
            diagnosis.not_checked[_protocol(row, side)] = (
                f"its authentication is {getattr(row, f'{side}_auth')}, not oauth2: `mbxtui profile test` and "
                f"Test & Enable check it")
    lookup = credentials.secret_lookup(store)
    started = time.perf_counter()
    given = credentials_for(sides[0], box, profile, lookup)
    diagnosis.token_seconds = time.perf_counter() - started
    if isinstance(given, Withheld):
        diagnosis.findings.append(Finding(given.code.value, given.message))
        return diagnosis
    diagnosis.token_ok = True
    diagnosis.claims = read_claims(given.secret)
    diagnosis.findings += _claim_findings(diagnosis.claims, row, sides, now())
    for side in sides:
        protocol = _protocol(row, side)
        if side != sides[0]:
            later = credentials_for(side, box, profile, lookup)  # R34 is checked per side; the token is cached
            if isinstance(later, Withheld):
                diagnosis.findings.append(Finding(later.code.value, later.message))
                continue
            given = later
        result = _log_in(profile, side, given, box)
        diagnosis.logins[protocol] = result
        if result.failure is not None and not _explained(diagnosis.findings, protocol):
            diagnosis.findings.append(_login_finding(result, protocol, diagnosis.claims, row, box))
    return diagnosis


def _mailbox_of(profile: Profile, email: str | None) -> tuple[MailboxSnapshot, str]:
    settings = settings_service.load()

    def approved(box: Mailbox) -> bool:
        return box.approval != Approval.REJECTED and (
            box.approval == Approval.APPROVED or not approval_required(settings, box.regarding))

    def snapshot(box: Mailbox) -> MailboxSnapshot:
        return mailbox_snapshot(box, approved=approved(box), forward_mailbox_available=False)

    if email is not None:
        box = Mailbox.get_or_none((Mailbox.email == email.strip().lower()) & (Mailbox.profile == profile.id))
        if box is None:
            raise NotFound(f"no mailbox {email!r} uses profile {profile.name!r}: give one of its mailboxes "
                           f"(`mbxtui mailbox list --profile {shlex.quote(profile.name)}`)")
        return snapshot(box), "given with --mailbox"
    boxes = list(Mailbox.select().where((Mailbox.profile == profile.id) & (Mailbox.active == True))  # noqa: E712
                 .order_by(Mailbox.email))
    if not profile.oauth_credential and profile.oauth_provider != OAuthProvider.GOOGLE:
        # No client credential: the profile acts only for mailboxes authorized one by one.
        granted = {row.mailbox_id for row in MailboxAuthorization.select(MailboxAuthorization.mailbox).join(
            Mailbox).where(Mailbox.profile == profile.id)}
        own = [box for box in boxes if box.id in granted]
        enabled = next((box for box in own if box.incoming_enabled or box.outgoing_enabled), None)
        if enabled is not None:
            return snapshot(enabled), "the profile's first enabled mailbox with its own authorization"
        first_approved = next((box for box in own if approved(box)), None)
        if first_approved is not None:
            return snapshot(first_approved), ("the profile's first approved mailbox with its own authorization, "
                                              "none of those being enabled")
    enabled = next((box for box in boxes if box.incoming_enabled or box.outgoing_enabled), None)
    if enabled is not None:
        return snapshot(enabled), "the profile's first enabled mailbox"
    first_approved = next((box for box in boxes if approved(box)), None)
    if first_approved is not None:
        return snapshot(first_approved), "the profile's first approved mailbox, none being enabled"
    raise NotFound(f"profile {profile.name!r} has no enabled or approved active mailbox to log in as: give one "
                   f"with --mailbox EMAIL")


def _protocol(profile: Profile, side: str) -> str:
    if side == "outgoing":
        return "smtp"
    return "pop3" if profile.type == ProfileType.POP3_SMTP else "imap"


def _log_in(profile: ProfileSnapshot, side: str, given: Credentials, box: MailboxSnapshot) -> ProbeResult:
    direction = "incoming" if side == "incoming" else "outgoing"
    where = endpoint(profile, direction)
    if side == "outgoing":
        return smtp.probe(where, given, sender=box.email, recipient=box.email, send=False)
    probe = pop3.probe if profile.type == ProfileType.POP3_SMTP else imap.probe
    return probe(where, given)


def _claim_findings(claims: TokenClaims, profile: Profile, sides: list[str], now: datetime) -> list[Finding]:
    if not claims.jwt:
        return []
    found: list[Finding] = []
    name = shlex.quote(profile.name)
    if claims.expires_at is not None and claims.expires_at <= now:
        found.append(Finding("TOKEN_EXPIRED", (
            f"the token expired at {claims.expires_at:%Y-%m-%d %H:%M:%S} UTC, yet the provider issued it just now: "
            f"this machine's clock is ahead (it reads {now:%H:%M:%S} UTC); set it right (timedatectl, NTP)")))
    elif claims.not_before is not None and claims.not_before > now + CLOCK_SKEW:
        found.append(Finding("TOKEN_EXPIRED", (
            f"the token is valid only from {claims.not_before:%Y-%m-%d %H:%M:%S} UTC: this machine's clock is "
            f"behind (it reads {now:%H:%M:%S} UTC); set it right (timedatectl, NTP)")))
    if profile.oauth_provider != OAuthProvider.MICROSOFT365:
        return found
    audiences = {audience.rstrip("/") for audience in claims.audience}
    if audiences and not audiences & EXCHANGE_AUDIENCES:
        found.append(Finding("TOKEN_AUDIENCE", (
            f"the token is for {', '.join(sorted(audiences))}, not Exchange Online, so its mail servers refuse it: "
            f"set the profile's scope to {EXCHANGE_SCOPE} (`mbxtui profile edit {name} --oauth-scope "
            f"{EXCHANGE_SCOPE}`)")))
    if claims.tenant and profile.oauth_tenant and _is_guid(profile.oauth_tenant) \
            and claims.tenant.lower() != profile.oauth_tenant.lower():
        found.append(Finding("TOKEN_TENANT", (
            f"the token was issued by tenant {claims.tenant}, not the profile's {profile.oauth_tenant}: set "
            f"--oauth-tenant to the directory id of the tenant the mailboxes are in (`mbxtui profile edit {name} "
            f"--oauth-tenant ID`)")))
    if claims.scopes and not claims.roles:
        return found  # a delegated token: its scopes, not app roles, say what it may do
    for side in sides:
        role = ROLES[_protocol(profile, side)]
        if role not in claims.roles:
            found.append(Finding(ErrorCode.OAUTH_PERMISSION_MISSING.value, (
                f"the token has no role {role} (it has: {', '.join(claims.roles) or 'none'}): grant it in Entra ID "
                f"> App registrations > the app {profile.oauth_client_id} > API permissions > Add a permission > "
                f"APIs my organization uses > Office 365 Exchange Online > Application permissions > {role}, then "
                f"Grant admin consent")))
    return found


def _explained(findings: list[Finding], protocol: str) -> bool:
    """A refused login that a finding about the token already accounts for."""
    role = ROLES[protocol]
    return any(f.code in ("TOKEN_AUDIENCE", "TOKEN_TENANT", "TOKEN_EXPIRED") or role in f.message for f in findings)


def _login_finding(result: ProbeResult, protocol: str, claims: TokenClaims | None, profile: Profile,
                   box: MailboxSnapshot) -> Finding:
    failure = result.failure
    assert failure is not None
    role = ROLES[protocol]
    if (failure.code == ErrorCode.OAUTH_PERMISSION_MISSING and claims is not None and claims.jwt
            and role in claims.roles):
        return Finding(failure.code.value, (
            f"the token holds {role}, yet the {protocol.upper()} server refused it for {box.email}: the mailbox has "
            f"not granted the app access. In Exchange Online PowerShell: `New-ServicePrincipal -AppId "
            f"{profile.oauth_client_id} -ObjectId OBJECT_ID` (the enterprise application's object id), then "
            f"`Add-MailboxPermission -Identity {box.email} -User OBJECT_ID -AccessRights FullAccess` "
            f"({failure.message})"))
    return Finding(failure.code.value, f"{protocol.upper()}: {failure.message}")


def _is_guid(text: str) -> bool:
    parts = text.split("-")
    return [len(part) for part in parts] == [8, 4, 4, 4, 12] and all(
        c in "0123456789abcdefABCDEF" for c in "".join(parts))
