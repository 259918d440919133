"""The check at the heart of one Test & Enable of one mailbox (R9–R13), without touching the
database: the rule checks made before any network step, then the probes of each direction the
mailbox uses."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Callable

from mbxtui.core.endpoint_binding import binding_of, oauth_binding_of, plaintext_refusal, unconfirmed_sentence
from mbxtui.core.enums import EXCHANGE_TYPES, OAuthProvider, ProfileType
from mbxtui.core.oauth import tokens
from mbxtui.core.oauth import delegated
from mbxtui.core.oauth.tokens import TokenError
from mbxtui.core.oauth.settings import OAuthSettings, settings_of
from mbxtui.core.probes import imap, pop3, smtp
from mbxtui.core.probes.base import Credentials, Endpoint, ErrorCode, Failure, ProbeResult, Step, StepResult
from mbxtui.core.secret_value import Secret


@dataclass(frozen=True)
class ProfileSnapshot:
    id: int
    name: str
    type: str
    active: bool
    incoming_host: str
    incoming_port: int
    incoming_tls: str
    incoming_auth: str
    outgoing_host: str
    outgoing_port: int
    outgoing_tls: str
    outgoing_auth: str
    username: str
    ca_file: str | None
    timeout_seconds: int
    verify_delivery: bool
    max_connections: int
    password_bound_to: str | None = None
    token_bound_to: str | None = None
    plaintext_confirmed_for: str | None = None
    oauth_provider: str | None = None
    oauth_tenant: str | None = None
    oauth_client_id: str | None = None
    oauth_issuer: str | None = None
    oauth_scope: str | None = None
    oauth_credential: str | None = None
    oauth_credential_bound_to: str | None = None


def profile_snapshot(profile) -> ProfileSnapshot:
    """The settings of a ``Profile`` row a check needs, frozen for a worker thread."""
    return ProfileSnapshot(**{name: getattr(profile, name) for name in ProfileSnapshot.__dataclass_fields__})


@dataclass(frozen=True)
class MailboxSnapshot:
    id: int
    email: str
    active: bool
    regarding: str
    incoming_method: str
    outgoing_method: str
    act_method: str
    username: str
    approved: bool  # approved, or approval not required for its kind
    forward_mailbox_available: bool  # an enabled forward mailbox exists on its profile (R10)
    password_bound_to: str | None = None  # R34: the endpoint its secrets were set for
    token_bound_to: str | None = None


def mailbox_snapshot(mailbox, *, approved: bool, forward_mailbox_available: bool) -> MailboxSnapshot:
    """The fields of a ``Mailbox`` row a check or a cycle needs, frozen for a worker thread, with
    the two facts that take other rows to know."""
    derived = {"approved": approved, "forward_mailbox_available": forward_mailbox_available}
    return MailboxSnapshot(**derived, **{name: getattr(mailbox, name)
                                         for name in MailboxSnapshot.__dataclass_fields__ if name not in derived})


@dataclass
class MailboxCheckResult:
    """A probe result per direction the mailbox uses (``incoming``, ``outgoing``, ``act``)."""

    directions: dict[str, ProbeResult] = field(default_factory=dict)

    @property
    def failures(self) -> dict[str, Failure]:
        return {d: r.failure for d, r in self.directions.items() if r.failure is not None}

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        """The steps of each direction as plain JSON-ready values (kept with the job)."""
        return {
            direction: {
                "protocol": probe.protocol,
                "ok": probe.ok,
                "steps": [{"step": s.step.value, "ok": s.ok, "seconds": round(s.seconds, 4), "detail": s.detail}
                          for s in probe.steps],
                "failure": None if probe.failure is None else {
                    "step": probe.failure.step.value, "code": probe.failure.code.value,
                    "transient": probe.failure.transient, "message": probe.failure.message},
            }
            for direction, probe in self.directions.items()
        }


def rule_failure(code: ErrorCode, message: str) -> ProbeResult:
    return ProbeResult(protocol="rules", steps=[StepResult(Step.CHECK, False, 0.0, message)],
                       failure=Failure(Step.CHECK, code, message))


def rule_success(message: str) -> ProbeResult:
    return ProbeResult(protocol="rules", steps=[StepResult(Step.CHECK, True, 0.0, message)])


def directions_in_use(mailbox: MailboxSnapshot) -> list[str]:
    return [d for d in ("incoming", "outgoing", "act") if getattr(mailbox, f"{d}_method") != "none"]


def precheck(mailbox: MailboxSnapshot, profile: ProfileSnapshot | None) -> ProbeResult | None:
    """R9: what must hold before anything is sent; a failure applies to every direction."""
    if not mailbox.active:
        return rule_failure(ErrorCode.MAILBOX_INACTIVE,
                            f"the mailbox {mailbox.email} is inactive: activate it (and its user or queue) first")
    if profile is None:
        return rule_failure(ErrorCode.NO_PROFILE,
                            f"the mailbox {mailbox.email} has no email server profile: set one, or apply the default email settings")
    if not profile.active:
        return rule_failure(ErrorCode.PROFILE_INACTIVE,
                            f"the email server profile {profile.name!r} is inactive: activate it or choose another profile")
    if not mailbox.approved:
        return rule_failure(ErrorCode.NOT_APPROVED,
                            f"the email address {mailbox.email} is not approved: a global_admin or service_admin must approve it")
    return None


SecretLookup = Callable[[str, int, str], "Secret | None"]  # (kind, record id, what) -> secret


@dataclass(frozen=True)
class Withheld:
    """Credentials that are not sent (R34), or a token the provider did not give; ``message`` says
    why and what to do."""

    message: str
    code: ErrorCode = ErrorCode.NO_CREDENTIALS
    step: Step = Step.CHECK


def credentials_for(direction: str, mailbox: MailboxSnapshot, profile: ProfileSnapshot,
                    secret: SecretLookup) -> Credentials | Withheld:
    """R4: the mailbox's own credentials only when the profile authenticates with ``mailbox``.
    R34: a secret goes only to the endpoint it was set or confirmed for, and in clear only to a
    loopback host or where a global_admin confirmed it."""
    side = "incoming" if direction in ("incoming", "act") else "outgoing"
    auth = getattr(profile, f"{side}_auth")
    login = mailbox.username or mailbox.email
    if auth == "none":
        return Credentials("none")
    refusal = plaintext_refusal(profile, side)
    if refusal is not None:
        return Withheld(refusal)
    endpoint_now = binding_of(profile)

    def unless_moved(owner: str, value: Secret | None, bound_to: str | None, what: str) -> Withheld | None:
        if not value or bound_to == endpoint_now:
            return None
        who = mailbox.email if owner == "mailbox" else profile.name
        return Withheld(unconfirmed_sentence(owner, who, what, getattr(profile, f"{side}_host"),
                                             getattr(profile, f"{side}_port")))

    if auth == "mailbox":
        value = secret("mailbox", mailbox.id, "password")
        return (unless_moved("mailbox", value, mailbox.password_bound_to, "password")
                or Credentials("password", login, value))
    if auth == "profile":
        value = secret("profile", profile.id, "password")
        return (unless_moved("profile", value, profile.password_bound_to, "password")
                or Credentials("password", profile.username, value, authorization_identity=login))
    oauth = settings_of(profile)
    if oauth is not None:
        own_grant = secret("mailbox", mailbox.id, delegated.REFRESH_TOKEN)
        if own_grant:
            return (unless_moved("mailbox", own_grant, mailbox.token_bound_to, "authorization")
                    or _delegated_credentials(mailbox, oauth, own_grant, secret))
        return _issued_credentials(side, mailbox, profile, oauth, secret)
    own = secret("mailbox", mailbox.id, "oauth2-token")
    if own:
        return unless_moved("mailbox", own, mailbox.token_bound_to, "oauth2-token") or Credentials("oauth2", login, own)
    shared = secret("profile", profile.id, "oauth2-token")
    return (unless_moved("profile", shared, profile.token_bound_to, "oauth2-token")
            or Credentials("oauth2", login, shared))


def _issued_credentials(side: str, mailbox: MailboxSnapshot, profile: ProfileSnapshot, oauth: OAuthSettings,
                        secret: SecretLookup) -> Credentials | Withheld:
    """XOAUTH2 as the mailbox (``user=`` its address) with a token from the profile's provider, fetched
    with the client credential the profile keeps in the keyring, only while that credential is
    confirmed for the profile's endpoint and OAuth settings (R34)."""
    credential = secret("profile", profile.id, "oauth-credential") if profile.oauth_credential else None
    if not credential:
        return Withheld(f"profile {profile.name!r} has no client credential for its OAuth provider "
                        f"{profile.oauth_provider}: set it with `mbxtui profile set-oauth {shlex.quote(profile.name)} "
                        f"--client-secret-stdin` (or --certificate-file, --service-account-file)")
    if profile.oauth_credential_bound_to != oauth_binding_of(profile):
        return Withheld(unconfirmed_sentence("profile", profile.name, "oauth-credential",
                                             getattr(profile, f"{side}_host"), getattr(profile, f"{side}_port")))
    subject = mailbox.email if oauth.provider == OAuthProvider.GOOGLE else None
    try:
        token = tokens.token(oauth, profile.oauth_credential, credential, subject)
    except TokenError as failure:
        return Withheld(failure.message, failure.code, Step.TOKEN)
    kind = profile.oauth_credential
    return Credentials("oauth2", mailbox.email, token, token_issued=True,
                       on_token_refused=lambda: tokens.discard(oauth, kind, credential, subject, token))


def _delegated_credentials(mailbox: MailboxSnapshot, oauth: OAuthSettings, refresh_token: Secret,
                           secret: SecretLookup) -> Credentials | Withheld:
    """XOAUTH2 as the mailbox with a token from its own authorization (``mailbox authorize``); a
    rotated refresh token is saved through the lookup's ``save`` before the token is used."""
    save = getattr(secret, "save", None)
    if save is None:
        return Withheld(f"the refresh token of mailbox {mailbox.email} cannot be saved here: run this from "
                        f"the worker or `mbxtui sync`")
    try:
        token = delegated.token(oauth, mailbox.id, mailbox.email, refresh_token,
                                lambda rotated: save("mailbox", mailbox.id, delegated.REFRESH_TOKEN, rotated))
    except TokenError as failure:
        return Withheld(failure.message, failure.code, Step.TOKEN)
    return Credentials("oauth2", mailbox.email, token, token_issued=True,
                       on_token_refused=lambda: delegated.discard(oauth, mailbox.id, token))


def withheld_failure(withheld: Withheld) -> ProbeResult:
    """Nothing is sent: the direction fails before any connection is made."""
    if withheld.step == Step.CHECK:
        return rule_failure(withheld.code, withheld.message)
    return ProbeResult(protocol="oauth2", steps=[StepResult(withheld.step, False, 0.0, withheld.message)],
                       failure=Failure(withheld.step, withheld.code, withheld.message))


def endpoint(profile: ProfileSnapshot, direction: str) -> Endpoint:
    side = "incoming" if direction in ("incoming", "act") else "outgoing"
    return Endpoint(
        host=getattr(profile, f"{side}_host"), port=getattr(profile, f"{side}_port"),
        tls=getattr(profile, f"{side}_tls"), timeout=float(profile.timeout_seconds), ca_file=profile.ca_file,
    )


def incoming_probe(profile: ProfileSnapshot) -> Callable[..., ProbeResult]:
    return pop3.probe if profile.type == ProfileType.POP3_SMTP else imap.probe


def check_mailbox(mailbox: MailboxSnapshot, profile: ProfileSnapshot | None, secret: SecretLookup,
                  *, verify_wait: float = 5.0) -> MailboxCheckResult:
    """Test every direction the mailbox uses, the way processing would connect. Opens at most one
    connection at a time, so one mailbox test holds one slot of its profile's connection bound."""
    result = MailboxCheckResult()
    used = directions_in_use(mailbox)
    blocked = precheck(mailbox, profile)
    if blocked is not None:
        for direction in used or ["incoming"]:
            result.directions[direction] = blocked
        return result
    assert profile is not None
    if "act" in used and profile.type not in EXCHANGE_TYPES:
        result.directions["act"] = rule_failure(
            ErrorCode.ACT_UNSUPPORTED,
            f"appointments, contacts and tasks are not supported by this profile type ({profile.type}): "
            "set ACT to none, or use an Exchange profile")
    sent_message_id = None
    if "outgoing" in used:
        outgoing_creds = credentials_for("outgoing", mailbox, profile, secret)
        outgoing = (withheld_failure(outgoing_creds) if isinstance(outgoing_creds, Withheld) else
                    smtp.probe(endpoint(profile, "outgoing"), outgoing_creds, sender=mailbox.email,
                               recipient=mailbox.email))
        result.directions["outgoing"] = outgoing
        sent_message_id = outgoing.message_id if outgoing.ok else None
    if mailbox.incoming_method == "forward_mailbox":
        result.directions["incoming"] = (
            rule_success("an enabled forward mailbox on this profile receives for it")
            if mailbox.forward_mailbox_available else
            rule_failure(ErrorCode.NO_FORWARD_MAILBOX,
                         f"no enabled forward mailbox exists on profile {profile.name!r}: create one "
                         "(New Forward Mailbox) and Test & Enable it, or set incoming to server_side_sync"))
    elif "incoming" in used or ("act" in used and profile.type in EXCHANGE_TYPES):
        verify = sent_message_id if (profile.verify_delivery and profile.type != ProfileType.POP3_SMTP) else None
        creds = credentials_for("incoming", mailbox, profile, secret)
        probe = incoming_probe(profile)
        if isinstance(creds, Withheld):
            incoming = withheld_failure(creds)
        elif probe is imap.probe:
            incoming = probe(endpoint(profile, "incoming"), creds, verify_message_id=verify, verify_wait=verify_wait)
        else:
            incoming = probe(endpoint(profile, "incoming"), creds)
        delivery_failed = incoming.failure is not None and incoming.failure.code == ErrorCode.DELIVERY_NOT_CONFIRMED
        if delivery_failed:
            # The inbox opened; what failed is the message sent by the outgoing test.
            result.directions["outgoing"] = ProbeResult(
                protocol="smtp", steps=result.directions["outgoing"].steps + incoming.steps[-1:],
                failure=incoming.failure, message_id=sent_message_id)
            incoming = ProbeResult(protocol=incoming.protocol, steps=incoming.steps[:-1])
        if "incoming" in used:
            result.directions["incoming"] = incoming
        if "act" in used and profile.type in EXCHANGE_TYPES:
            # Exchange serves appointments, contacts and tasks over the same mailbox connection.
            result.directions["act"] = incoming
    return result
