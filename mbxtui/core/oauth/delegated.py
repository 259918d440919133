"""Delegated OAuth2 for one mailbox (issue 13): a person authorizes the mailbox once with the
device-code flow (RFC 8628: a URL and a code typed elsewhere, so it works over SSH), and every later
token comes from the refresh token that flow gave, kept in the keyring only.

A generic provider is spoken to directly (its discovery document's ``device_authorization_endpoint``
and ``token_endpoint``); Microsoft 365 through ``msal``'s PublicClientApplication, unmodified.
A refresh token the provider rotates is handed to ``save`` before the access token is given out, so
that a crash can never leave the keyring holding a refresh token the provider has stopped honouring.
Refresh tokens answered ``invalid_grant`` (expired or revoked) end in ``OAUTH_REAUTHORIZE``, with the
command that fixes it. A grant taken back (``mailbox deauthorize``) is revoked at the provider where
it has an RFC 7009 endpoint."""

from __future__ import annotations

import hashlib
import shlex
import threading
import warnings
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any, Callable

import requests

from mbxtui.core import clock
from mbxtui.core.enums import OAuthProvider
from mbxtui.core.oauth.settings import OAuthSettings
from mbxtui.core.oauth.tokens import RENEW_BEFORE, TokenError
from mbxtui.core.probes.base import ErrorCode
from mbxtui.core.secret_value import Secret

# msal warns "Attempted too soon" on stderr when by the wall clock a poll follows the last one within
# the interval: after a backward jump every poll does (the warning was printed on the terminal of the
# person authorizing), though each waited the interval out.
warnings.filterwarnings("ignore", message="Attempted too soon", category=UserWarning, module="msal")

REFRESH_TOKEN = "oauth-refresh-token"  # the keyring's name for a mailbox's refresh token
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SLOW_DOWN_STEP = 5  # RFC 8628 3.5
FAILURE_REMEMBERED = 5.0


def authorize_command(email: str) -> str:
    return f"mbxtui mailbox authorize {shlex.quote(email)}"


def public_client_sentence(profile_name: str, authorized: int = 0, example: str | None = None) -> str:
    """What ``profile test`` says of a profile with no client credential (a public client): what it
    checked, what it could not, and the per-mailbox check that can (``authorized`` of its mailboxes
    have their own authorization, ``example`` one of them)."""
    name = shlex.quote(profile_name)
    said = (f"profile {profile_name!r} has no client credential, so it acts only for mailboxes authorized one by "
            f"one: there is no app token to fetch for it, so its OAuth provider was not contacted and its servers "
            f"were checked only up to TLS, without logging in")
    if authorized and example:
        return (f"{said}; {authorized} of its mailboxes are authorized: check one, its token and its logins, with "
                f"`mbxtui profile diagnose {name} --mailbox {shlex.quote(example)}` (or Test & Enable it)")
    return (f"{said}; none of its mailboxes is authorized yet: authorize one with `mbxtui mailbox authorize EMAIL`, "
            f"then check it with `mbxtui profile diagnose {name} --mailbox EMAIL` (a confidential client sets its "
            f"secret with `mbxtui profile set-oauth {name} --client-secret-stdin`)")


@dataclass(frozen=True)
class DeviceCode:
    """What the person is shown: where to go and the code to type there."""

    verification_uri: str
    user_code: str
    expires_in: float


@dataclass(frozen=True)
class UserGrant:
    """A provider's answer to a device-code or refresh grant."""

    access_token: Secret
    expires_in: float
    refresh_token: Secret | None  # None: the provider kept the refresh token it had
    refresh_expires_in: float | None  # the provider's refresh_token_expires_in, when it gives one


class DeviceFlowEnded(Exception):
    """The device-code flow ended without a token: ``message`` is one sentence for the person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _providers() -> Any:
    from mbxtui.core.oauth import providers  # the HTTP libraries load on the first token, not with the CLI

    return providers


def _scopes(settings: OAuthSettings) -> list[str]:
    return (settings.scope or "").split()


# --- the device-code flow ---------------------------------------------------------------------------

def device_flow(settings: OAuthSettings, email: str, on_code: Callable[[DeviceCode], None],
                stop: threading.Event | None = None) -> UserGrant:
    """Run the device-code flow for ``email``; ``on_code`` shows the code, the flow then waits for
    the person (bounded by the code's expiry, or until ``stop`` is set)."""
    providers = _providers()
    session = providers._Session(settings.ca_file, settings.timeout)
    stop = stop or threading.Event()
    try:
        if settings.provider == OAuthProvider.MICROSOFT365:
            return _microsoft365_device_flow(settings, email, on_code, stop, session)
        return _generic_device_flow(settings, email, on_code, stop, session)
    except (TokenError, DeviceFlowEnded):
        raise
    except Exception as exc:
        raise _transport_error(settings, exc) from None
    finally:
        session.close()


def _transport_error(settings: OAuthSettings, exc: Exception) -> Exception:
    providers = _providers()
    if isinstance(exc, providers._ProviderBusy):
        return providers._unreachable(settings, f"it answered HTTP {exc.status}")
    if isinstance(exc, requests.exceptions.SSLError):
        return TokenError(ErrorCode.TLS_CERTIFICATE,
                          f"the certificate of the OAuth provider {settings.where} was refused "
                          f"({providers._reason(exc)}): set the profile's CA file, or check the provider's URL")
    if isinstance(exc, requests.exceptions.RequestException):
        return providers._unreachable(settings, providers._reason(exc))
    if isinstance(exc, ValueError) and isinstance(exc.__cause__, Exception):
        return _transport_error(settings, exc.__cause__)
    return exc


def _ended(settings: OAuthSettings, email: str, answer: dict[str, Any]) -> DeviceFlowEnded:
    error = answer.get("error")
    if error == "expired_token":
        return DeviceFlowEnded(f"the code expired before it was entered and approved: nothing was stored; run "
                               f"`{authorize_command(email)}` again and enter the new code in time")
    if error == "access_denied":
        return DeviceFlowEnded(f"the sign-in was declined at {settings.where}: nothing was stored; run "
                               f"`{authorize_command(email)}` again and approve the request")
    return DeviceFlowEnded(f"the OAuth provider {settings.where} ended the authorization "
                           f"(provider said: {_providers()._said(answer)}): nothing was stored; check the "
                           f"profile's client id and scope, then run `{authorize_command(email)}` again")


def _endpoints(settings: OAuthSettings, session: Any) -> dict[str, Any]:
    discovery = session.get(f"{settings.issuer}/.well-known/openid-configuration")
    try:
        document = discovery.json() if discovery.ok else {}
    except ValueError:
        document = {}
    if not isinstance(document, dict) or not str(document.get("token_endpoint", "")).startswith("https://"):
        raise TokenError(ErrorCode.OAUTH_CLIENT_REJECTED,
                         f"{settings.issuer}/.well-known/openid-configuration is not the OpenID configuration of "
                         f"a provider with an https token endpoint (HTTP {discovery.status_code}): check the "
                         f"profile's --oauth-issuer")
    return document


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}


def _generic_device_flow(settings: OAuthSettings, email: str, on_code: Callable[[DeviceCode], None],
                         stop: threading.Event, session: Any) -> UserGrant:
    document = _endpoints(settings, session)
    device_endpoint = document.get("device_authorization_endpoint")
    if not isinstance(device_endpoint, str) or not device_endpoint.startswith("https://"):
        raise TokenError(ErrorCode.OAUTH_CLIENT_REJECTED,
                         f"the OAuth provider {settings.where} offers no device authorization endpoint "
                         f"(its discovery document has no https device_authorization_endpoint): enable the "
                         f"device-code grant for client {settings.client_id!r} at the provider")
    form = {"client_id": settings.client_id or ""}
    if settings.scope:
        form["scope"] = settings.scope
    started = session.post(device_endpoint, data=form, headers={"Accept": "application/json"})
    flow = _json(started)
    if "device_code" not in flow or "user_code" not in flow:
        raise _ended(settings, email, flow or {"error": f"HTTP {started.status_code}"})
    expires_at = clock.monotonic() + float(flow.get("expires_in", 600))
    interval = max(1.0, float(flow.get("interval", 5)))
    on_code(DeviceCode(str(flow.get("verification_uri_complete") or flow.get("verification_uri", "")),
                       str(flow["user_code"]), float(flow.get("expires_in", 600))))
    poll = {"grant_type": DEVICE_CODE_GRANT, "device_code": str(flow["device_code"]),
            "client_id": settings.client_id or ""}
    while True:
        answer = _json(session.post(document["token_endpoint"], data=poll, headers={"Accept": "application/json"}))
        if "access_token" in answer:
            return _user_grant(settings, email, answer)
        error = answer.get("error")
        if error == "slow_down":
            interval += SLOW_DOWN_STEP
        elif error != "authorization_pending":
            raise _ended(settings, email, answer)
        if clock.monotonic() + interval > expires_at:
            raise _ended(settings, email, {"error": "expired_token"})
        if stop.wait(interval):
            raise DeviceFlowEnded("the authorization was stopped before it was approved: nothing was stored")


def _microsoft365_device_flow(settings: OAuthSettings, email: str, on_code: Callable[[DeviceCode], None],
                              stop: threading.Event, session: Any) -> UserGrant:
    app = _public_client(settings, session)
    flow = app.initiate_device_flow(scopes=_scopes(settings))
    if "user_code" not in flow:
        raise _ended(settings, email, flow)
    # msal's own end of the wait is flow["expires_at"], a moment of the wall clock: set 3 h forward
    # while the person typed the code, it ended the flow at once ("the code expired"). The code's
    # life is counted here on the monotonic clock instead.
    expires_at = clock.monotonic() + float(flow["expires_in"])
    on_code(DeviceCode(str(flow.get("verification_uri", "")), str(flow["user_code"]), float(flow["expires_in"])))
    answer = app.acquire_token_by_device_flow(
        flow, exit_condition=lambda f: stop.is_set() or clock.monotonic() > expires_at)
    if "access_token" in answer:
        return _user_grant(settings, email, answer)
    if stop.is_set():
        raise DeviceFlowEnded("the authorization was stopped before it was approved: nothing was stored")
    if answer.get("error") == "authorization_pending":  # msal stopped polling at the code's expiry
        answer = {"error": "expired_token"}
    raise _ended(settings, email, answer)


def _public_client(settings: OAuthSettings, session: Any) -> Any:
    import msal

    try:
        return msal.PublicClientApplication(
            settings.client_id, authority=settings.authority, http_client=session,
            instance_discovery=settings.issuer is None, timeout=settings.timeout, token_cache=msal.TokenCache())
    except ValueError as exc:
        cause = exc.__cause__
        if isinstance(cause, Exception) and (isinstance(cause, requests.exceptions.RequestException)
                                             or isinstance(cause, _providers()._ProviderBusy)):
            raise cause from None
        raise TokenError(ErrorCode.OAUTH_CLIENT_REJECTED,
                         f"the OAuth provider {settings.where} does not know tenant {settings.tenant!r}: check "
                         f"the profile's --oauth-tenant (the directory id of the app registration)") from None


def _user_grant(settings: OAuthSettings, email: str, answer: dict[str, Any]) -> UserGrant:
    def seconds(key: str) -> float | None:
        try:
            return float(answer[key]) if key in answer else None
        except (TypeError, ValueError):
            return None

    refresh = answer.get("refresh_token")
    return UserGrant(Secret(str(answer["access_token"])), seconds("expires_in") or 3600.0,
                     Secret(str(refresh)) if refresh else None, seconds("refresh_token_expires_in"))


# --- refreshing -------------------------------------------------------------------------------------

def reauthorize_error(settings: OAuthSettings, email: str, said: str) -> TokenError:
    return TokenError(ErrorCode.OAUTH_REAUTHORIZE,
                      f"the authorization of mailbox {email} at the OAuth provider {settings.where} has expired "
                      f"or was revoked (provider said: {said}): authorize it again with "
                      f"`{authorize_command(email)}`")


def refresh(settings: OAuthSettings, email: str, refresh_token: Secret) -> UserGrant:
    """New tokens from ``refresh_token``; raises ``TokenError`` (``OAUTH_REAUTHORIZE`` when the
    provider answers ``invalid_grant``)."""
    providers = _providers()
    session = providers._Session(settings.ca_file, settings.timeout)
    try:
        if settings.provider == OAuthProvider.MICROSOFT365:
            answer = _public_client(settings, session).acquire_token_by_refresh_token(
                refresh_token.reveal(), scopes=_scopes(settings))
        else:
            document = _endpoints(settings, session)
            form = {"grant_type": "refresh_token", "refresh_token": refresh_token.reveal(),
                    "client_id": settings.client_id or ""}
            if settings.scope:
                form["scope"] = settings.scope
            answer = _json(session.post(document["token_endpoint"], data=form, headers={"Accept": "application/json"}))
    except TokenError:
        raise
    except Exception as exc:
        raise _transport_error(settings, exc) from None
    finally:
        session.close()
    if "access_token" in answer:
        return _user_grant(settings, email, answer)
    if answer.get("error") == "invalid_grant":
        raise reauthorize_error(settings, email, providers._said(answer))
    if answer.get("error"):
        raise providers._rejected(settings, providers._said(answer))
    raise providers._unreachable(settings, "its answer held no access token")


# --- revoking ---------------------------------------------------------------------------------------

MICROSOFT_NO_REVOCATION = (
    "Microsoft 365 offers no endpoint to revoke one refresh token, so the grant stays valid at Microsoft until "
    "it expires: to end it at once, revoke the user's sessions (Entra ID > Users > the user > Revoke sessions, "
    "or Revoke-MgUserSignInSession)")


@dataclass(frozen=True)
class Revocation:
    """What the provider did with a refresh token handed back (RFC 7009): ``revoked`` True (it said
    so), False (it refused or could not be reached), None (it has no way to revoke one)."""

    revoked: bool | None
    sentence: str


def revoke(settings: OAuthSettings, refresh_token: Secret) -> Revocation:
    """Revoke ``refresh_token`` at the provider's RFC 7009 endpoint (a generic provider's
    ``revocation_endpoint`` from its discovery document: Google's is https://oauth2.googleapis.com/revoke).
    Never raises: a provider that is down or refuses is a ``Revocation`` that says so and why."""
    if settings.provider == OAuthProvider.MICROSOFT365:
        return Revocation(None, MICROSOFT_NO_REVOCATION)
    providers = _providers()
    session = providers._Session(settings.ca_file, settings.timeout)
    endpoint = None
    try:
        document = _endpoints(settings, session)
        endpoint = document.get("revocation_endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith("https://"):
            return Revocation(None, f"the OAuth provider {settings.where} names no https revocation endpoint in its "
                                    f"discovery document, so the grant stays valid there until it expires: revoke "
                                    f"it in the provider's own console to end it at once")
        answer = session.post(endpoint, data={"token": refresh_token.reveal(), "token_type_hint": "refresh_token",
                                              "client_id": settings.client_id or ""},
                              headers={"Accept": "application/json"})
    except TokenError as failure:
        return Revocation(False, f"the revocation failed: {failure.message}")
    except Exception as exc:
        if isinstance(exc, providers._ProviderBusy):
            why = f"it answered HTTP {exc.status}"
        elif isinstance(exc, requests.exceptions.SSLError):
            why = f"its certificate was refused: {providers._reason(exc)}"
        elif isinstance(exc, requests.exceptions.RequestException):
            why = providers._reason(exc)
        else:
            raise
        return Revocation(False, f"the revocation at {endpoint or settings.where} failed ({why}), so the grant may "
                                 f"still be valid there: revoke it in the provider's own console")
    finally:
        session.close()
    if answer.status_code == 200:
        return Revocation(True, f"the grant was revoked at {endpoint}")
    return Revocation(False, f"the OAuth provider refused the revocation at {endpoint} (HTTP {answer.status_code}, "
                             f"provider said: {providers._said(_json(answer) or {'error': 'no JSON answer'})}), so "
                             f"the grant may still be valid there: revoke it in the provider's own console")


@dataclass(frozen=True)
class RefreshOutcome:
    """What the last refresh of a mailbox's token came to, for its record (kept in memory until
    the process writes it: a cycle's thread touches no database)."""

    mailbox_id: int
    at: float  # seconds since the epoch by the core's clock (on PostgreSQL the server's), as every moment written
    error: str | None  # the sentence of a failure, None when it succeeded
    rotated: bool = False  # the provider gave a new refresh token (saved)
    refresh_expires_in: float | None = None  # the new refresh token's lifetime, when the provider said
    code: ErrorCode | None = None  # of a failure: OAUTH_REAUTHORIZE when the provider no longer honours the grant


@dataclass
class _Entry:
    access: Secret | None = None
    renew_at: float = 0.0
    latest_refresh: Secret | None = None
    replaced: set[str] = field(default_factory=set)  # digests of refresh tokens rotated away
    failure: TokenError | None = None
    failed_until: float = 0.0


def _now() -> float:
    """When a refresh happened, for its record: the core's clock, whose ``now()`` every other moment
    of the database is written by (a host 3 h behind a PostgreSQL server dated its refreshes, and so
    the refresh token's expiry and its OAUTH_EXPIRING warning, 3 h early against the server's clock)."""
    return clock.now().replace(tzinfo=timezone.utc).timestamp()


def _digest(value: Secret) -> str:
    return hashlib.sha256(value.reveal().encode("utf-8")).hexdigest()


class DelegatedTokens:
    """The access tokens of the mailboxes with their own authorization: one per mailbox and
    provider settings, shared by every thread of a process, renewed from the refresh token."""

    def __init__(self, refresher: Callable[[OAuthSettings, str, Secret], UserGrant] = refresh) -> None:
        self._refresh = refresher
        self._entries: dict[tuple[OAuthSettings, int], _Entry] = {}
        self._locks: dict[tuple[OAuthSettings, int], threading.Lock] = {}
        self._guard = threading.Lock()
        self._outcomes: dict[int, RefreshOutcome] = {}

    def token(self, settings: OAuthSettings, mailbox_id: int, email: str, refresh_token: Secret,
              save: Callable[[Secret], None]) -> Secret:
        """A valid access token for the mailbox; a rotated refresh token goes to ``save`` first."""
        key = (settings, mailbox_id)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            entry = self._entries.setdefault(key, _Entry())
            now = clock.monotonic()
            if entry.access is not None and now < entry.renew_at:
                return entry.access
            if entry.failure is not None and now < entry.failed_until:
                raise entry.failure
            # A refresh token read before another thread rotated it: that thread's is the one to send.
            if entry.latest_refresh is not None and _digest(refresh_token) in entry.replaced:
                refresh_token = entry.latest_refresh
            try:
                grant = self._refresh(settings, email, refresh_token)
            except TokenError as failure:
                entry.failure, entry.failed_until = failure, clock.monotonic() + FAILURE_REMEMBERED
                self._record(RefreshOutcome(mailbox_id, _now(), failure.message, code=failure.code))
                raise
            if grant.refresh_token is not None and grant.refresh_token.reveal() != refresh_token.reveal():
                # Remembered before the keyring write: should it fail, this process still holds the
                # only refresh token the provider honours, and the next request saves it again.
                entry.replaced.add(_digest(refresh_token))
                entry.latest_refresh = grant.refresh_token
                save(grant.refresh_token)
            lifetime = max(grant.expires_in, 0.0)
            entry.access, entry.failure = grant.access_token, None
            entry.renew_at = clock.monotonic() + lifetime - min(RENEW_BEFORE, lifetime / 2)
            rotated = grant.refresh_token is not None
            self._record(RefreshOutcome(mailbox_id, _now(), None, rotated,
                                        grant.refresh_expires_in if rotated else None))
            return entry.access

    def discard(self, settings: OAuthSettings, mailbox_id: int, token: Secret) -> None:
        """Forget ``token`` (the mail server refused it): the next request refreshes."""
        with self._guard:
            entry = self._entries.get((settings, mailbox_id))
            if entry is not None and entry.access is not None and entry.access.reveal() == token.reveal():
                entry.access, entry.renew_at = None, 0.0

    def forget_mailbox(self, mailbox_id: int) -> None:
        """A new authorization: the mailbox's cached token and remembered failure go."""
        with self._guard:
            for key in [key for key in self._entries if key[1] == mailbox_id]:
                del self._entries[key]

    def _record(self, outcome: RefreshOutcome) -> None:
        with self._guard:
            self._outcomes[outcome.mailbox_id] = outcome

    def outcomes(self) -> list[RefreshOutcome]:
        """The refreshes since the last call, the last one per mailbox."""
        with self._guard:
            taken, self._outcomes = list(self._outcomes.values()), {}
        return taken

    def forget(self) -> None:
        with self._guard:
            self._entries.clear()
            self._locks.clear()
            self._outcomes.clear()


_process_tokens = DelegatedTokens()


def token(settings: OAuthSettings, mailbox_id: int, email: str, refresh_token: Secret,
          save: Callable[[Secret], None]) -> Secret:
    return _process_tokens.token(settings, mailbox_id, email, refresh_token, save)


def discard(settings: OAuthSettings, mailbox_id: int, token: Secret) -> None:
    _process_tokens.discard(settings, mailbox_id, token)


def forget_mailbox(mailbox_id: int) -> None:
    _process_tokens.forget_mailbox(mailbox_id)


def refresh_outcomes() -> list[RefreshOutcome]:
    return _process_tokens.outcomes()


def forget_tokens() -> None:
    _process_tokens.forget()
