"""One token request to a profile's provider, through the provider's own library where it has one
(``msal`` for Microsoft 365, ``google-auth`` for Google) and OpenID Connect discovery plus the
client credentials grant for a generic provider. Every failure becomes a ``TokenError`` with its
code (R14: the provider unreachable is transient, a refused client permanent) and a sentence; the
sentences quote what the provider said, never what was sent."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import requests

from mbxtui.core.enums import OAuthCredential, OAuthProvider
from mbxtui.core.oauth.client_credentials import certificate_credential
from mbxtui.core.oauth.settings import OAuthSettings
from mbxtui.core.oauth.tokens import IssuedToken, TokenError
from mbxtui.core.probes.base import ErrorCode
from mbxtui.core.secret_value import Secret

_MAX_SAID = 200


class _ProviderBusy(Exception):
    """A 5xx or 429 answer: the provider is there but cannot answer now."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class _Session(requests.Session):
    """HTTP to the provider with the profile's CA file given on every request: a Session's own
    ``verify`` loses to ``REQUESTS_CA_BUNDLE`` in the environment, a request's does not. Busy
    answers are raised here, so that no library hides them in a reply it cannot parse."""

    def __init__(self, ca_file: str | None, timeout: float) -> None:
        super().__init__()
        self._ca = ca_file or True
        self._timeout = timeout

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs["verify"] = self._ca
        kwargs.setdefault("timeout", self._timeout)
        response = super().request(method, url, *args, **kwargs)
        if response.status_code >= 500 or response.status_code == 429:
            raise _ProviderBusy(response.status_code)
        return response


def fetch(settings: OAuthSettings, kind: str, credential: Secret, subject: str | None) -> IssuedToken:
    """A new access token for ``settings``' client (``subject``: the mailbox, for Google)."""
    session = _Session(settings.ca_file, settings.timeout)
    try:
        if settings.provider == OAuthProvider.MICROSOFT365:
            return _microsoft365(settings, kind, credential, session)
        if settings.provider == OAuthProvider.GOOGLE:
            return _google(settings, credential, subject, session)
        return _generic(settings, credential, session)
    except TokenError:
        raise
    except _ProviderBusy as busy:
        raise _unreachable(settings, f"it answered HTTP {busy.status}") from None
    except requests.exceptions.SSLError as exc:
        raise TokenError(ErrorCode.TLS_CERTIFICATE,
                         f"the certificate of the OAuth provider {settings.where} was refused ({_reason(exc)}): "
                         f"set the profile's CA file, or check the provider's URL") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise _unreachable(settings, _reason(exc)) from None
    except requests.exceptions.RequestException as exc:
        raise _unreachable(settings, _reason(exc)) from None
    finally:
        session.close()


def _unreachable(settings: OAuthSettings, why: str) -> TokenError:
    return TokenError(ErrorCode.OAUTH_PROVIDER_UNREACHABLE,
                      f"no token from the OAuth provider {settings.where} ({why}): nothing was sent to the "
                      f"mail server; it is tried again later, check the network and the provider's status")


def _rejected(settings: OAuthSettings, said: str, client: str | None = None) -> TokenError:
    return TokenError(ErrorCode.OAUTH_CLIENT_REJECTED,
                      f"the OAuth provider {settings.where} refused client {client or settings.client_id or ''!r} "
                      f"(provider said: {said}): check the profile's client id, tenant and scope, and set the "
                      f"client's secret or certificate again with `mbxtui profile set-oauth`")


def _misdated(settings: OAuthSettings, answer: dict[str, Any], client: str | None = None) -> TokenError | None:
    """The provider refused the client's signed assertion (a certificate's, a service account's) as
    dated outside its valid time: this host's clock, which dates it, is wrong (after a jump, or never
    set), not the credential. Entra ID allows 5 minutes of skew; Google's assertions live an hour."""
    said = str(answer.get("error_description") or "")
    if "AADSTS700024" not in said and not ("Invalid JWT" in said and "timeframe" in said):
        return None
    host = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return TokenError(ErrorCode.OAUTH_CLIENT_REJECTED,
                      f"the OAuth provider {settings.where} refused the signed assertion of client "
                      f"{client or settings.client_id or ''!r} as dated outside its valid time (provider said: "
                      f"{_said(answer)}): this host's clock dates it and reads {host} UTC: set it right if it is more "
                      f"than a few minutes off (timedatectl; NTP); the credential itself was not judged")


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if "refused" in text.lower():
        return "connection refused"
    if isinstance(exc, requests.exceptions.Timeout) or "timed out" in text.lower():
        return "timed out"
    return text[:_MAX_SAID]


def _said(answer: dict[str, Any]) -> str:
    error = str(answer.get("error") or "error")
    description = " ".join(str(answer.get("error_description") or "").split())
    text = f"{error}: {description}" if description else error
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)[:_MAX_SAID]


def _issued(settings: OAuthSettings, answer: dict[str, Any]) -> IssuedToken:
    if "access_token" not in answer:
        if _consent_missing(answer):
            raise TokenError(ErrorCode.OAUTH_CONSENT_MISSING,
                             f"the OAuth provider {settings.where} refused a token: no administrator has consented to "
                             f"client {settings.client_id or ''!r} (provider said: {_said(answer)}): grant admin consent "
                             f"in Entra ID > App registrations > the app > API permissions > Grant admin consent")
        if answer.get("error"):  # RFC 6749 5.2: the client, its grant or its scope refused
            raise _misdated(settings, answer) or _rejected(settings, _said(answer))
        raise _unreachable(settings, "its answer held no access token")
    try:
        expires_in = float(answer.get("expires_in", 3600))
    except (TypeError, ValueError):
        expires_in = 3600.0
    return IssuedToken(Secret(str(answer["access_token"])), expires_in)


def _consent_missing(answer: dict[str, Any]) -> bool:
    """Entra ID's AADSTS65001 (``consent_required``): the app is known, its permissions not consented."""
    return ("consent_required" in (answer.get("error"), answer.get("suberror"))
            or "AADSTS65001" in str(answer.get("error_description") or ""))


def _microsoft365(settings: OAuthSettings, kind: str, credential: Secret, session: _Session) -> IssuedToken:
    import msal

    if kind == OAuthCredential.CERTIFICATE:
        held = certificate_credential(credential.reveal())
        client_credential: Any = {"private_key": held.private_key, "thumbprint": held.thumbprint}
    else:
        client_credential = credential.reveal()
    try:
        app = msal.ConfidentialClientApplication(
            settings.client_id, client_credential=client_credential, authority=settings.authority,
            http_client=session, instance_discovery=settings.issuer is None, timeout=settings.timeout,
            token_cache=msal.TokenCache())
    except ValueError as exc:  # msal: the tenant's OpenID configuration could not be read
        if isinstance(exc.__cause__, (requests.exceptions.RequestException, _ProviderBusy)):
            raise exc.__cause__ from None
        raise TokenError(ErrorCode.OAUTH_CLIENT_REJECTED,
                         f"the OAuth provider {settings.where} does not know tenant {settings.tenant!r} "
                         f"({' '.join(str(exc).split())[:_MAX_SAID]}): check the profile's --oauth-tenant "
                         f"(the directory id of the app registration)") from None
    return _issued(settings, app.acquire_token_for_client(scopes=[settings.scope]))


def _generic(settings: OAuthSettings, credential: Secret, session: _Session) -> IssuedToken:
    discovery = session.get(f"{settings.issuer}/.well-known/openid-configuration")
    try:
        token_endpoint = discovery.json()["token_endpoint"] if discovery.ok else None
    except (ValueError, KeyError, TypeError):
        token_endpoint = None
    if not isinstance(token_endpoint, str) or not token_endpoint.startswith("https://"):
        raise TokenError(ErrorCode.OAUTH_CLIENT_REJECTED,
                         f"{settings.issuer}/.well-known/openid-configuration is not the OpenID configuration of "
                         f"a provider with an https token endpoint (HTTP {discovery.status_code}): check the "
                         f"profile's --oauth-issuer")
    form = {"grant_type": "client_credentials", "client_id": settings.client_id or "",
            "client_secret": credential.reveal()}
    if settings.scope:
        form["scope"] = settings.scope
    answer = session.post(token_endpoint, data=form, headers={"Accept": "application/json"})
    try:
        body = answer.json()
    except ValueError:
        raise _unreachable(settings, f"it answered HTTP {answer.status_code} without JSON") from None
    return _issued(settings, body if isinstance(body, dict) else {})


def _google(settings: OAuthSettings, credential: Secret, subject: str | None, session: _Session) -> IssuedToken:
    from google.auth import exceptions as google_errors
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    info = json.loads(credential.reveal())
    account = service_account.Credentials.from_service_account_info(
        info, scopes=[settings.scope], subject=subject)
    try:
        account.refresh(Request(session))
    except google_errors.RefreshError as exc:
        answer = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {"error": str(exc.args[0])}
        if answer.get("error") == "unauthorized_client":
            raise TokenError(ErrorCode.OAUTH_PERMISSION_MISSING,
                             f"Google refused a token for {subject!r} to service account "
                             f"{info.get('client_email')!r} (provider said: {_said(answer)}): grant its client id "
                             f"domain-wide delegation of {settings.scope} in the Admin console") from None
        raise (_misdated(settings, answer, info.get("client_email"))
               or _rejected(settings, _said(answer), info.get("client_email"))) from None
    except google_errors.TransportError as exc:
        cause = exc.__cause__ or exc.__context__ or exc
        if isinstance(cause, _ProviderBusy):
            raise cause from None
        if isinstance(cause, requests.exceptions.SSLError):
            raise cause from None
        raise _unreachable(settings, _reason(cause)) from None
    return IssuedToken(Secret(account.token), _seconds_left(account.expiry))


def _seconds_left(expiry: datetime | None) -> float:
    """google-auth turns the answer's ``expires_in`` into ``expiry``, naive UTC by the wall clock as
    it read when the answer came; read back against the same clock at once, it is ``expires_in``
    again. Against a reading taken before the request, a jump of the wall clock while it ran was
    added to the token's life (3 h forward: used 3 h after it expired), and ``expiry.timestamp()``
    read it as local time (TZ=America/New_York: 5 h too long; east of UTC, shorter)."""
    if expiry is None:
        return 3600.0
    return (expiry - datetime.now(timezone.utc).replace(tzinfo=None)).total_seconds()
