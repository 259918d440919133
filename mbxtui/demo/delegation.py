"""Delegated authorization at the demo's identity provider: a person authorizes one mailbox with
its own credentials (``mbxtui mailbox authorize EMAIL``), as Entra ID lets an app registration that
allows public client flows do.

* The device-code flow (RFC 8628): the client gets a device code and a user code; the person opens
  the provider's sign-in page (``/devicelogin`` on the provider's port), enters the code, signs in
  with the mailbox's address and password and approves (or declines); the client's polls are
  answered ``authorization_pending`` until then, ``slow_down`` when faster than the interval,
  ``expired_token`` after the code's life.
* Refresh with rotation: every refresh gives a new refresh token and refuses the old one from then
  on (``invalid_grant``, Entra ID's AADSTS70000), as it refuses a revoked one.
* Revocation (RFC 7009): a refresh token handed back is refused from then on, with the access tokens
  of its grant (the sandbox stops taking them); the answer is 200 whether or not it was known.

Every answer is ``(HTTP status, JSON body)``; the provider's handler sends them.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_LIFETIME = 900  # seconds, as Entra ID gives a device code
DEVICE_INTERVAL = 5  # seconds between polls, as Entra ID asks
SLOW_DOWN_STEP = 5  # RFC 8628 3.5
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels, no digits: nothing to misread or spell


@dataclass
class _Device:
    client_id: str
    scope: str
    user_code: str
    expires_at: float
    interval: int
    last_poll: float = 0.0
    approved_for: str | None = None
    declined: bool = False
    redeemed: bool = False


@dataclass(frozen=True)
class _Grant:
    client_id: str
    subject: str
    session: str  # the access tokens of the grant carry it (``sid``): revoking the grant ends them
    scope: str


def _invalid_grant(what: str) -> tuple[int, dict]:
    return 400, {"error": "invalid_grant", "error_description":
                 f"AADSTS70000: The provided value for the input parameter '{what}' is not valid. Token has been "
                 f"expired or revoked."}


class Delegations:
    """Thread-safe: the provider answers each request in a thread of its own. ``issue(client_id,
    subject, session)`` makes an access token acting as ``subject``; ``end_session(session)`` stops
    the sandbox taking those of a revoked grant; ``sign_in(address, password)`` checks the person."""

    def __init__(self, issue: Callable[[str, str, str], str], end_session: Callable[[str], None],
                 sign_in: Callable[[str, str], bool], clients: Callable[[str], bool],
                 lifetime: int = DEVICE_LIFETIME, interval: int = DEVICE_INTERVAL) -> None:
        self._issue = issue
        self._end_session = end_session
        self._sign_in = sign_in
        self._known_client = clients
        self.lifetime = lifetime
        self.interval = interval
        self._devices: dict[str, _Device] = {}  # by device code
        self._grants: dict[str, _Grant] = {}  # by current refresh token
        self._lock = threading.Lock()

    def start(self, client_id: str, scope: str, verification_uri: str) -> tuple[int, dict]:
        """RFC 8628 3.1-3.2: a device authorization request."""
        if not self._known_client(client_id):
            return 400, {"error": "unauthorized_client", "error_description":
                         f"AADSTS700016: Application with identifier '{client_id[:100]}' was not found."}
        device_code = secrets.token_urlsafe(32)
        user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(9))
        now = time.time()
        with self._lock:
            self._devices = {code: d for code, d in self._devices.items() if d.expires_at > now}
            self._devices[device_code] = _Device(client_id, scope, user_code, now + self.lifetime, self.interval)
        return 200, {"device_code": device_code, "user_code": user_code, "verification_uri": verification_uri,
                     "expires_in": self.lifetime, "interval": self.interval,
                     "message": f"To sign in, use a web browser to open the page {verification_uri} and enter the "
                                f"code {user_code} to authenticate."}

    def decide(self, user_code: str, login: str, password: str, approve: bool) -> tuple[bool, str]:
        """The person at the sign-in page: ``(done, sentence for the page)``."""
        user_code = "".join(user_code.split()).upper()
        login = login.strip().lower()
        with self._lock:
            device = next((d for d in self._devices.values() if d.user_code == user_code), None)
            if device is None or device.expires_at < time.time() or device.redeemed:
                return False, "That code is unknown or has expired: start the authorization again for a new one."
            if device.approved_for is not None or device.declined:
                return False, "That code was already used."
        if not self._sign_in(login, password):
            return False, "The address or password is wrong (every demo mailbox's password is fernhill-demo)."
        with self._lock:
            if approve:
                device.approved_for = login
                return True, f"Signed in as {login}: the app may now act for this mailbox. You may close this page."
            device.declined = True
            return True, "Declined: the app was not given access."

    def poll(self, form: dict[str, str]) -> tuple[int, dict]:
        """RFC 8628 3.4-3.5: the client's poll of the token endpoint with its device code."""
        now = time.time()
        with self._lock:
            device = self._devices.get(form.get("device_code", ""))
            if device is None or device.redeemed or device.client_id != form.get("client_id"):
                return _invalid_grant("device_code")
            too_soon = now - device.last_poll < device.interval - 0.5
            device.last_poll = now
            if now > device.expires_at:
                return 400, {"error": "expired_token", "error_description":
                             "AADSTS70020: The provided value for the input parameter 'device_code' is not valid. "
                             "This device code has expired."}
            if device.declined:
                return 400, {"error": "access_denied", "error_description":
                             "AADSTS70000: The user has declined to authorize the application."}
            if too_soon:
                device.interval += SLOW_DOWN_STEP
                return 400, {"error": "slow_down", "error_description": "AADSTS70000: polled too fast."}
            if device.approved_for is None:
                return 400, {"error": "authorization_pending", "error_description":
                             "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending. Continue polling."}
            device.redeemed = True
            grant = _Grant(device.client_id, device.approved_for, secrets.token_urlsafe(12), device.scope)
        return 200, self._tokens(grant)

    def refresh(self, form: dict[str, str]) -> tuple[int, dict]:
        """The refresh_token grant, with rotation: the token sent is refused from now on."""
        with self._lock:
            grant = self._grants.get(form.get("refresh_token", ""))
            if grant is None or grant.client_id != form.get("client_id"):
                return _invalid_grant("refresh_token")
            del self._grants[form["refresh_token"]]
        return 200, self._tokens(grant)

    def _tokens(self, grant: _Grant) -> dict:
        access = self._issue(grant.client_id, grant.subject, grant.session)
        refresh = secrets.token_urlsafe(48)
        with self._lock:
            self._grants[refresh] = grant
        lifetime = 3599
        return {"token_type": "Bearer", "scope": grant.scope, "expires_in": lifetime, "ext_expires_in": lifetime,
                "access_token": access, "refresh_token": refresh}

    def revoke(self, form: dict[str, str]) -> tuple[int, dict]:
        """RFC 7009 2.1-2.2: the client names itself (a public client sends its id only); the grant
        of a refresh token is ended with its access tokens; 200 whether or not the token was known."""
        token = form.get("token", "")
        if not token:
            return 400, {"error": "invalid_request", "error_description": "the token parameter is missing"}
        with self._lock:
            grant = self._grants.get(token)
            if grant is None:
                return 200, {}
            if grant.client_id != form.get("client_id"):
                return 400, {"error": "unauthorized_client", "error_description":
                             "the token was not issued to this client"}
            del self._grants[token]
        self._end_session(grant.session)
        return 200, {}

    def live_grants(self, subject: str) -> int:
        """How many grants of ``subject`` a refresh token still holds (for the tests)."""
        with self._lock:
            return sum(1 for grant in self._grants.values() if grant.subject == subject.lower())
