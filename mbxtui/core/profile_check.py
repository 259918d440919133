"""The connection check of a profile itself: its incoming and outgoing servers, logged in with the
profile's own credentials where it has them, otherwise up to TLS (no mailbox is touched and no
message is sent)."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from typing import Any

from mbxtui.core.endpoint_binding import binding_of, oauth_binding_of, plaintext_refusal, unconfirmed_sentence
from mbxtui.core.enums import OAuthProvider, ProfileType
from mbxtui.core.oauth import delegated, tokens
from mbxtui.core.oauth.settings import settings_of
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.probes import imap, pop3, smtp
from mbxtui.core.probes.base import Credentials, ErrorCode, Failure, ProbeResult, Step, StepResult
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import authorization_identity, credentials, profiles
from mbxtui.core.mailbox_check import (
    MailboxCheckResult, Withheld, endpoint, profile_snapshot, rule_failure, withheld_failure,
)


def _profile_credentials(side: str, profile, store: SecretStore | None) -> Credentials | Withheld:
    """The profile's own credentials for ``side``, if it has them and they may go there (R34)."""
    auth = getattr(profile, f"{side}_auth")
    if store is None or auth not in ("profile", "oauth2") or (auth == "oauth2" and profile.oauth_provider):
        return Credentials("none")  # a provider's tokens act for mailboxes: the servers are checked up to TLS
    what = credentials.PASSWORD if auth == "profile" else credentials.TOKEN
    secret = credentials.profile_secret(store, profile.id, what)
    if not secret:
        return Credentials("none")
    refusal = plaintext_refusal(profile, side)
    if refusal is not None:
        return Withheld(refusal)
    bound_to = profile.password_bound_to if what == credentials.PASSWORD else profile.token_bound_to
    if bound_to != binding_of(profile):
        return Withheld(unconfirmed_sentence("profile", profile.name, what, getattr(profile, f"{side}_host"),
                                             getattr(profile, f"{side}_port")))
    return Credentials("password" if auth == "profile" else "oauth2", profile.username, secret)


def _token_check(profile: Any, store: SecretStore | None) -> ProbeResult | None:
    """Whether the profile's OAuth provider gives its client a token (Google: for the service
    account itself); None when the profile has no provider."""
    settings = settings_of(profile)
    if settings is None or store is None:
        return None
    secret = (credentials.profile_secret(store, profile.id, credentials.OAUTH_CREDENTIAL)
              if profile.oauth_credential else None)
    if not profile.oauth_credential and profile.oauth_provider != OAuthProvider.GOOGLE:
        said = delegated.public_client_sentence(profile.name, *authorization_identity.authorized_on(profile.id))
        return ProbeResult("oauth2", [StepResult(Step.CHECK, True, 0.0, said)])
    if not secret:
        return rule_failure(ErrorCode.NO_CREDENTIALS,
                            f"profile {profile.name!r} has no client credential for its OAuth provider: set it with "
                            f"`mbxtui profile set-oauth {shlex.quote(profile.name)} --client-secret-stdin` (or "
                            f"--certificate-file, --service-account-file)")
    if profile.oauth_credential_bound_to != oauth_binding_of(profile):
        return rule_failure(ErrorCode.NO_CREDENTIALS, unconfirmed_sentence(
            "profile", profile.name, credentials.OAUTH_CREDENTIAL, settings.where, 443))
    started = time.perf_counter()
    try:
        tokens.token(settings, profile.oauth_credential, secret)
    except tokens.TokenError as failure:
        return ProbeResult("oauth2", [StepResult(Step.TOKEN, False, time.perf_counter() - started)],
                           Failure(Step.TOKEN, failure.code, failure.message))
    return ProbeResult("oauth2", [StepResult(Step.TOKEN, True, time.perf_counter() - started,
                                             f"a token from {settings.where}")])


@dataclass(frozen=True)
class ProfileCheck:
    """The outcome of a profile's connection check: ``directions`` holds the steps of each side as
    Test & Enable results are kept (``MailboxCheckResult.as_dict``)."""

    profile: str
    passed: bool
    directions: dict[str, dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        """As ``mbxtui profile test --json`` prints it."""
        return {"profile": self.profile, "passed": self.passed, "directions": self.directions}


def check_profile(actor: Actor, name: str, store: SecretStore | None) -> ProfileCheck:
    """Returns the steps of each side, as Test & Enable results are shown."""
    require(actor, Permission.TEST)
    row = profiles.get(name)
    snapshot = profile_snapshot(row)
    incoming_creds = _profile_credentials("incoming", row, store)
    outgoing_creds = _profile_credentials("outgoing", row, store)
    probe = pop3.probe if row.type == ProfileType.POP3_SMTP else imap.probe
    result = MailboxCheckResult()
    token_check = _token_check(row, store)
    if token_check is not None:
        result.directions["oauth2"] = token_check
    result.directions["incoming"] = (
        withheld_failure(incoming_creds) if isinstance(incoming_creds, Withheld) else
        probe(endpoint(snapshot, "incoming"), incoming_creds, connection_only=incoming_creds.kind == "none"))
    result.directions["outgoing"] = (
        withheld_failure(outgoing_creds) if isinstance(outgoing_creds, Withheld) else
        smtp.probe(endpoint(snapshot, "outgoing"), outgoing_creds, sender=row.username or "postmaster",
                   recipient=row.username or "postmaster", send=False))
    return ProfileCheck(row.name, result.passed, result.as_dict())
