"""The demo's own OAuth2 provider: a Microsoft Entra ID look-alike on 127.0.0.1 over HTTPS (the demo
CA), from which the "Exchange Online (OAuth2)" profile's unmodified msal client gets app-only tokens
(client credentials with a client secret) and a mailbox its own (``mbxtui mailbox authorize``: the
device-code flow, delegation.py), and against which the sandbox mail servers check them.

What it serves, as Entra ID does for a tenant:

* ``GET /TENANT/v2.0/.well-known/openid-configuration`` (an unknown tenant: 400, AADSTS90002);
* ``POST /TENANT/oauth2/v2.0/token``: the client credentials grant, answering a wrong secret with
  AADSTS7000215 (invalid_client) and an unknown client with AADSTS700016 (unauthorized_client); the
  device-code grant and the refresh_token grant (rotated at every refresh);
* ``POST /TENANT/oauth2/v2.0/devicecode``: a device code and the user code to enter at
  ``GET /devicelogin``, the sign-in page where the person approves it (``POST /devicelogin``);
* the same as a generic OpenID Connect provider at the issuer ``/fernhill``
  (``/fernhill/.well-known/openid-configuration``, ``/fernhill/token``, ``/fernhill/device``) with
  the RFC 7009 revocation endpoint ``/fernhill/revoke`` that Entra ID does not have.

Tokens are JWTs shaped as Entra ID's app-only tokens (aud, iss, tid, appid, roles, exp), signed with
a key the process draws at start (HS256: only this process checks them), so that ``profile
diagnose`` reads their claims as it reads a real tenant's. An app token acts for the mailboxes of
the demo domain its app was granted: every one but ``UNGRANTED_MAILBOX``, whose access was never
given to the app's service principal (as ``Add-MailboxPermission`` would), so the sandbox refuses
its login as Exchange Online does. A delegated token (``upn``, ``scp``) acts for the one mailbox
whose person signed in, that one included, until its grant is revoked.
"""

from __future__ import annotations

import json
import logging
import secrets
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from html import escape
from typing import Callable
from urllib.parse import parse_qs

import jwt  # PyJWT, which msal brings

from mbxtui.demo.delegation import DEVICE_GRANT, Delegations

log = logging.getLogger("mbxtui.demo.servers")

TENANT = "7f3a9c52-1e4b-4d8a-b6f0-2c5e8a1d9b34"  # Fernhill's directory (tenant) id
CLIENT_ID = "c4a8e1f2-6b3d-4a9e-8f17-d25b0c6e3a91"  # the mbxtui app registration
CLIENT_SECRET = "Fhl8Q~demo.app-secret_2Wn5"
AUDIENCE = "https://outlook.office365.com"
ROLES = ("IMAP.AccessAsApp", "POP.AccessAsApp", "SMTP.SendAsApp")
USER_SCOPES = "IMAP.AccessAsUser.All POP.AccessAsUser.All SMTP.Send"  # what a delegated token may do
GENERIC = "fernhill"  # the realm where the provider speaks as a generic OpenID Connect provider
SIGN_IN_PAGE = "/devicelogin"
SCOPE = f"{AUDIENCE}/.default"
TOKEN_LIFETIME = 3599  # seconds, as Entra ID answers
UNGRANTED_MAILBOX = "noor.haddad@fernhill.example"
MAX_FORM_BYTES = 64 * 1024
REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class IssuedToken:
    client_id: str
    audience: str
    expires_at: float  # time.time()


class TokenRegistry:
    """Issues the provider's tokens and checks them for the sandbox mail servers in the same
    process; remembers the unexpired ones it issued (for the tests' leak checks). Thread-safe: the
    provider answers in threads of its own, the servers on their event loop."""

    def __init__(self, domain: str, lifetime: float = TOKEN_LIFETIME) -> None:
        self.domain = domain.lower()
        self.lifetime = lifetime
        self.ungranted = {UNGRANTED_MAILBOX}
        self._key = secrets.token_bytes(32)
        self._issued: dict[str, IssuedToken] = {}
        self._ended_sessions: set[str] = set()
        self._lock = threading.Lock()

    def issue(self, client_id: str, audience: str) -> str:
        return self._sign(client_id, audience, {"roles": list(ROLES), "sub": client_id})

    def issue_delegated(self, client_id: str, subject: str, session: str) -> str:
        """A token acting as the person ``subject`` who authorized the app (grant ``session``)."""
        return self._sign(client_id, AUDIENCE, {"scp": USER_SCOPES, "upn": subject, "sub": subject, "sid": session})

    def end_session(self, session: str) -> None:
        """The grant ``session`` was revoked: its access tokens are refused from now on."""
        with self._lock:
            self._ended_sessions.add(session)

    def _sign(self, client_id: str, audience: str, acting: dict) -> str:
        now = time.time()
        claims = {"aud": audience, "iss": f"https://sts.windows.net/{TENANT}/", "iat": int(now), "nbf": int(now),
                  "exp": int(now + self.lifetime), "tid": TENANT, "appid": client_id,
                  "uti": secrets.token_urlsafe(16), "ver": "1.0", **acting}
        token = jwt.encode(claims, self._key, algorithm="HS256")
        with self._lock:
            self._issued = {value: held for value, held in self._issued.items() if held.expires_at > now}
            self._issued[token] = IssuedToken(client_id, audience, now + self.lifetime)
        return token

    def issued_tokens(self) -> list[str]:
        """Every token issued and not yet forgotten (for the tests' leak checks)."""
        with self._lock:
            return list(self._issued)

    def allows(self, token: str, mailbox: str) -> bool:
        """Whether ``token`` is one this provider signed, unexpired, for Exchange Online, to the demo's
        app in its tenant, and that app was granted access to ``mailbox``."""
        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"], audience=AUDIENCE,
                                options={"require": ["exp", "aud", "tid", "appid"]})
        except jwt.PyJWTError:
            return False
        mailbox = mailbox.strip().lower()
        if claims["tid"] != TENANT or claims["appid"] != CLIENT_ID or mailbox.rpartition("@")[2] != self.domain:
            return False
        if "upn" in claims:
            with self._lock:
                ended = claims.get("sid") in self._ended_sessions
            return claims["upn"] == mailbox and not ended
        return mailbox not in self.ungranted


class IdentityProvider:
    """The HTTPS token endpoint; :meth:`start` returns its port, :meth:`stop` closes it."""

    def __init__(self, registry: TokenRegistry, context: ssl.SSLContext, host: str,
                 sign_in: Callable[[str, str], bool] = lambda login, password: False) -> None:
        self.registry = registry
        self.delegations = Delegations(registry.issue_delegated, registry.end_session, sign_in,
                                       lambda client_id: client_id == CLIENT_ID)
        self._context = context
        self._host = host
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> int:
        server = ThreadingHTTPServer((self._host, 0), _handler(self))
        server.daemon_threads = True
        # The handshake happens in the request's thread: a client that never finishes it cannot
        # hold up the others.
        server.socket = self._context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        threading.Thread(target=server.serve_forever, name="mbxtui-demo-identity-provider", daemon=True).start()
        self._server = server
        return server.server_address[1]

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def url(self, port: int) -> str:
        return f"https://{self._host}:{port}"

    def discovery(self, base: str, tenant: str) -> tuple[int, dict]:
        if tenant == GENERIC:
            issuer = f"{base}/{GENERIC}"
            return 200, {"issuer": issuer, "token_endpoint": f"{issuer}/token",
                         "device_authorization_endpoint": f"{issuer}/device", "revocation_endpoint": f"{issuer}/revoke",
                         "grant_types_supported": ["client_credentials", "refresh_token", DEVICE_GRANT],
                         "response_types_supported": ["code"], "subject_types_supported": ["public"],
                         "id_token_signing_alg_values_supported": ["RS256"]}
        if tenant != TENANT:
            return 400, {"error": "invalid_tenant",
                         "error_description": f"AADSTS90002: Tenant '{tenant[:100]}' not found."}
        authority = f"{base}/{tenant}"
        return 200, {"issuer": f"{authority}/v2.0", "token_endpoint": f"{authority}/oauth2/v2.0/token",
                     "device_authorization_endpoint": f"{authority}/oauth2/v2.0/devicecode",
                     "authorization_endpoint": f"{authority}/oauth2/v2.0/authorize",
                     "jwks_uri": f"{authority}/discovery/v2.0/keys", "response_types_supported": ["code"],
                     "subject_types_supported": ["pairwise"], "id_token_signing_alg_values_supported": ["RS256"]}

    def grant(self, tenant: str, form: dict[str, str]) -> tuple[int, dict]:
        client_id = form.get("client_id", "")
        if tenant not in (TENANT, GENERIC) and form.get("grant_type") in (DEVICE_GRANT, "refresh_token"):
            return 400, {"error": "invalid_tenant",
                         "error_description": f"AADSTS90002: Tenant '{tenant[:100]}' not found."}
        if form.get("grant_type") == DEVICE_GRANT:
            return self.delegations.poll(form)
        if form.get("grant_type") == "refresh_token":
            return self.delegations.refresh(form)
        if tenant == GENERIC:
            tenant = TENANT
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type",
                         "error_description": "AADSTS70003: The app requested an unsupported grant type."}
        if tenant != TENANT or client_id != CLIENT_ID:
            return 400, {"error": "unauthorized_client", "error_description":
                         f"AADSTS700016: Application with identifier '{client_id[:100]}' was not found in the "
                         f"directory '{tenant[:100]}'."}
        if not secrets.compare_digest(form.get("client_secret", "").encode(), CLIENT_SECRET.encode()):
            return 401, {"error": "invalid_client", "error_description":
                         "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
                         f"request is the client secret value, not the client secret ID, for a secret added "
                         f"to app '{client_id}'."}
        if SCOPE not in form.get("scope", "").split():
            return 400, {"error": "invalid_scope", "error_description":
                         f"AADSTS1002012: The provided value for scope is not valid. Use {SCOPE}."}
        token = self.registry.issue(client_id, AUDIENCE)
        lifetime = int(self.registry.lifetime)
        return 200, {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                     "access_token": token}


def _handler(provider: IdentityProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = REQUEST_TIMEOUT

        def log_message(self, format: str, *args: object) -> None:
            pass  # the request line holds nothing secret, but the demo's log is for refusals

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def _page(self, status: int, sentence: str, form: bool) -> None:
            data = _sign_in_page(sentence, form).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def _base(self) -> str:
            return provider.url(self.server.server_address[1])

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            parts = path.strip("/").split("/")
            if path == SIGN_IN_PAGE:
                return self._page(200, "Enter the code the command printed, then sign in as the mailbox.", True)
            if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                return self._answer(*provider.discovery(self._base(), parts[0]))
            if parts == [GENERIC, ".well-known", "openid-configuration"]:
                return self._answer(*provider.discovery(self._base(), GENERIC))
            self._answer(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_FORM_BYTES:
                return self._answer(413, {"error": "invalid_request"})
            parsed = parse_qs(self.rfile.read(length).decode("utf-8", "replace"), keep_blank_values=True)
            form = {key: values[0] for key, values in parsed.items()}
            path = self.path.split("?")[0]
            parts = path.strip("/").split("/")
            if path == SIGN_IN_PAGE:
                done, sentence = provider.delegations.decide(form.get("code", ""), form.get("login", ""),
                                                             form.get("password", ""), form.get("decision") != "decline")
                if done:
                    log.info("OAuth2 %s: device code %s for %r", self.client_address[0],
                             "declined" if form.get("decision") == "decline" else "approved", form.get("login", "")[:100])
                return self._page(200 if done else 400, sentence, not done)
            if parts in ([TENANT, "oauth2", "v2.0", "devicecode"], [GENERIC, "device"]):
                return self._answer(*provider.delegations.start(form.get("client_id", ""), form.get("scope", ""),
                                                                f"{self._base()}{SIGN_IN_PAGE}"))
            if parts == [GENERIC, "revoke"]:
                return self._answer(*provider.delegations.revoke(form))
            if (len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]) or parts == [GENERIC, "token"]:
                status, body = provider.grant(parts[0], form)
                if status != 200 and body["error"] not in ("authorization_pending", "slow_down"):
                    log.info("OAuth2 %s: token refused to client %r (%s)", self.client_address[0],
                             form.get("client_id", "")[:100], body["error"])
                return self._answer(status, body)
            self._answer(404, {"error": "not_found"})

    return Handler


def _sign_in_page(sentence: str, form: bool) -> str:
    """The provider's sign-in page for a device code: the code, the mailbox's address and password,
    Approve or Decline."""
    fields = ("" if not form else
              f'<form method="post" action="{SIGN_IN_PAGE}">'
              '<p><label>Code <input name="code" autocomplete="off" autofocus></label></p>'
              '<p><label>Mailbox address <input name="login" type="email"></label></p>'
              '<p><label>Password <input name="password" type="password"></label></p>'
              '<p><button name="decision" value="approve">Approve</button> '
              '<button name="decision" value="decline">Decline</button></p></form>')
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>Fernhill sign-in (demo)</title></head>"
            f"<body><h1>Fernhill Logistics: sign in to authorize mbxtui</h1><p>{escape(sentence)}</p>{fields}"
            "</body></html>")
