"""A local OAuth2 identity provider for the lab, speaking the real protocol over HTTPS on 127.0.0.1
(the lab's CA), so that msal and google-auth run unmodified against it.

    provider = OAuthProvider(certificates).start()
    provider.register("tenant-a", "client-1", secret="s3cret")           # or certificate=PEM
    msal authority: f"{provider.url}/tenant-a" (instance_discovery=False)
    generic issuer: f"{provider.url}/generic"

What it serves:
- GET /TENANT/v2.0/.well-known/openid-configuration (as Entra ID; an unknown tenant: 400), and the
  same document at /generic/.well-known/openid-configuration;
- POST /TENANT/oauth2/v2.0/token and /generic/token: the client credentials grant with a client
  secret (client_secret_post) or a signed client assertion (RS256 with the registered certificate's
  key, as msal sends it), answering as Entra ID does: AADSTS7000215 (invalid_client) for a wrong
  secret, AADSTS700016 (unauthorized_client) for an unknown client, AADSTS700024 for an assertion
  dated where this process's clock refuses it (Google's "Invalid JWT: ... reasonable timeframe" likewise);
- POST /google/token: Google's JWT bearer grant for a service account (``service_account()`` makes one,
  delegated for a domain: a subject outside it gets ``unauthorized_client``);
- POST /introspect on a second, plain-HTTP port (``introspection_url``, for Dovecot's oauth2 passdb):
  ``{"active": true, "email": "CLIENT@DOMAIN", "scope": ROLES}`` for a token it issued and that has
  not expired; the email's domain is the one the client is granted (``username_format = %d``).

- delegated authorization of a user (RFC 8628, the device-code flow a person completes elsewhere):
  POST /TENANT/oauth2/v2.0/devicecode and /generic/device give a device code and a user code
  (``device_lifetime`` seconds, polled no faster than ``device_interval``: ``slow_down``, as are the first
  ``slow_down_polls`` polls); the token
  endpoints answer the device-code grant ``authorization_pending`` until the lab-only ``approve(USER_CODE,
  EMAIL)`` (or ``deny``), then an access token acting as EMAIL and a refresh token, ``expired_token``
  after the code's expiry;
- the refresh_token grant with rotation: every refresh gives a new refresh token and refuses the old
  one from then on (``invalid_grant``, as Entra ID's AADSTS70000 / Google's "Token has been expired or
  revoked."); ``refresh_token_expires_in`` is sent when set; ``revoke_user(EMAIL)`` revokes a user's
  grants; POST /generic/revoke (RFC 7009, named ``revocation_endpoint`` in the generic discovery
  document only: Entra ID has none) revokes one refresh token and the access tokens of its grant.

Tokens are opaque random strings, ``token_lifetime`` seconds long. ``token_requests`` counts the
grants per client; ``unavailable = True`` answers 503 to everything on the HTTPS port.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs

import jwt
from cryptography import x509

from .certs import LabCertificates

HOST = "127.0.0.1"
ALL_ROLES = ("IMAP.AccessAsApp", "POP.AccessAsApp", "SMTP.SendAsApp")
GENERIC = "generic"
GOOGLE = "google"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_AUDIENCE = "https://oauth2.googleapis.com/token"  # what google-auth signs for, whatever the token_uri
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
SLOW_DOWN_STEP = 5  # RFC 8628 3.5: the client adds 5 seconds to its interval on slow_down


@dataclass
class Client:
    tenant: str
    client_id: str
    secret: str | None
    certificate_pem: bytes | None
    roles: tuple[str, ...]
    domain: str
    consented: bool = True  # False: the grant answers AADSTS65001 (no admin consent)


@dataclass
class Issued:
    client: Client
    roles: tuple[str, ...]  # as granted when it was issued: a token carries its roles
    expires_at: float
    subject: str | None = None  # Google: the user a service account acts as


@dataclass
class DeviceAuthorization:
    """One device-code flow: waiting for a person until ``approved_for`` (their address) or ``denied``."""

    client: Client
    device_code: str
    user_code: str
    expires_at: float
    interval: int
    last_poll: float = 0.0
    approved_for: str | None = None
    denied: bool = False
    polls: int = 0
    slowed_down: int = 0
    redeemed: bool = False  # its tokens were given: the code is spent


@dataclass
class RefreshGrant:
    """A user's grant to a client, as its current refresh token holds it."""

    client: Client
    subject: str
    expires_at: float | None


@dataclass
class OAuthProvider:
    certificates: LabCertificates
    token_lifetime: int = 3600
    unavailable: bool = False
    device_lifetime: int = 600
    device_interval: int = 1
    refresh_token_expires_in: int | None = None
    slow_down_polls: int = 0  # the first polls of each device code answered slow_down, whatever their pace
    revocation: str | None = "revoke"  # "refuse": the endpoint answers 400; None: discovery names none
    revocations: list[str] = field(default_factory=list)  # the tokens POSTed to the revocation endpoint
    on_revocation: Callable[[], None] | None = None  # what else happens while a revocation is answered
    devices: dict[str, DeviceAuthorization] = field(default_factory=dict)
    refresh_grants: dict[str, RefreshGrant] = field(default_factory=dict)
    refused_refresh_tokens: list[str] = field(default_factory=list)  # rotated away or revoked
    refreshes: int = 0
    jwt_audience: str | None = None  # set: client credentials tokens are JWTs for this audience, as Entra ID's
    clients: dict[tuple[str, str], Client] = field(default_factory=dict)
    issued: dict[str, Issued] = field(default_factory=dict)
    token_requests: dict[str, int] = field(default_factory=dict)
    introspections: int = 0
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return self._servers[0].server_address[1]

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def introspection_url(self) -> str:
        return f"http://{HOST}:{self._servers[1].server_address[1]}/introspect"

    def register(self, tenant: str, client_id: str, *, secret: str | None = None,
                 certificate_pem: bytes | None = None, roles: tuple[str, ...] = ALL_ROLES,
                 domain: str = "example.test", consented: bool = True) -> Client:
        client = Client(tenant, client_id, secret, certificate_pem, roles, domain, consented)
        self.clients[(tenant, client_id)] = client
        return client

    def service_account(self, client_email: str, *, domain: str = "example.test",
                        roles: tuple[str, ...] = ALL_ROLES) -> dict:
        """A Google service account delegated for ``domain``: its JSON key file, ``token_uri`` here."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        self.clients[(GOOGLE, client_email)] = Client(GOOGLE, client_email, None, public, roles, domain)
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": "mbxtui-lab", "private_key_id": secrets.token_hex(8),
                "private_key": private, "client_email": client_email, "client_id": secrets.token_hex(10),
                "token_uri": f"{self.url}/{GOOGLE}/token"}

    def requests_of(self, client_id: str) -> int:
        with self._lock:
            return self.token_requests.get(client_id, 0)

    def start(self) -> OAuthProvider:
        context = self.certificates.server_context()
        secure = ThreadingHTTPServer((HOST, 0), _handler(self, secure=True))
        secure.socket = context.wrap_socket(secure.socket, server_side=True)
        plain = ThreadingHTTPServer((HOST, 0), _handler(self, secure=False))
        for server in (secure, plain):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, name="lab oauth provider", daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    # --- what the handlers do ------------------------------------------------------------------

    def discovery(self, realm: str) -> tuple[int, dict]:
        if realm != GENERIC and not any(tenant == realm for tenant, _ in self.clients):
            return 400, {"error": "invalid_tenant", "error_description":
                         f"AADSTS90002: Tenant '{realm}' not found."}
        base = f"{self.url}/{realm}"
        token_endpoint = f"{base}/token" if realm == GENERIC else f"{base}/oauth2/v2.0/token"
        device_endpoint = f"{base}/device" if realm == GENERIC else f"{base}/oauth2/v2.0/devicecode"
        document = {"issuer": base if realm == GENERIC else f"{base}/v2.0", "token_endpoint": token_endpoint,
                    "device_authorization_endpoint": device_endpoint,
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "jwks_uri": f"{base}/discovery/v2.0/keys", "response_types_supported": ["code"],
                    "subject_types_supported": ["pairwise"], "id_token_signing_alg_values_supported": ["RS256"]}
        if realm == GENERIC and self.revocation is not None:  # Entra ID's document names none
            document["revocation_endpoint"] = f"{base}/revoke"
        return 200, document

    def grant(self, realm: str, endpoint: str, form: dict[str, str]) -> tuple[int, dict]:
        client_id = form.get("client_id", "")
        with self._lock:
            self.token_requests[client_id] = self.token_requests.get(client_id, 0) + 1
        if form.get("grant_type") == DEVICE_CODE:
            return self.device_token(form)
        if form.get("grant_type") == "refresh_token":
            return self.refresh(form)
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "client_credentials only"}
        client = next((c for (tenant, cid), c in self.clients.items()
                       if cid == client_id and (tenant == realm or realm == GENERIC)), None)
        if client is None:
            return 400, {"error": "unauthorized_client", "error_description":
                         f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                         f"directory '{realm}'."}
        if self._assertion_out_of_time(client, endpoint, form):
            return 401, {"error": "invalid_client", "error_description":
                         "AADSTS700024: Client assertion is not within its valid time range. Review the "
                         "documentation at https://docs.microsoft.com/azure/active-directory/develop/"
                         "active-directory-certificate-credentials ."}
        if not self._authenticated(client, endpoint, form):
            return 401, {"error": "invalid_client", "error_description":
                         f"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
                         f"request is the client secret value, not the client secret ID, for a secret added "
                         f"to app '{client_id}'."}
        if not client.consented:
            return 400, {"error": "invalid_grant", "suberror": "consent_required", "error_description":
                         f"AADSTS65001: The user or administrator has not consented to use the application with "
                         f"ID '{client_id}'. Send an interactive authorization request for this user and resource."}
        token = secrets.token_urlsafe(32) if self.jwt_audience is None else jwt.encode(
            {"aud": self.jwt_audience, "iss": f"https://sts.windows.net/{realm}/", "tid": realm, "appid": client_id,
             "roles": list(client.roles), "iat": int(time.time()), "exp": int(time.time()) + self.token_lifetime},
            secrets.token_bytes(32), algorithm="HS256")
        with self._lock:
            self.issued[token] = Issued(client, client.roles, time.time() + self.token_lifetime)
        return 200, {"token_type": "Bearer", "expires_in": self.token_lifetime,
                     "ext_expires_in": self.token_lifetime, "access_token": token}

    def jwt_bearer(self, endpoint: str, form: dict[str, str]) -> tuple[int, dict]:
        """Google's token endpoint for a service account's signed JWT (``sub``: the user it acts as)."""
        try:
            unverified = jwt.decode(form.get("assertion", ""), options={"verify_signature": False})
        except jwt.PyJWTError:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT."}
        client_email = str(unverified.get("iss", ""))
        with self._lock:
            self.token_requests[client_email] = self.token_requests.get(client_email, 0) + 1
        client = self.clients.get((GOOGLE, client_email))
        if form.get("grant_type") != JWT_BEARER or client is None or client.certificate_pem is None:
            return 400, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}
        try:
            from cryptography.hazmat.primitives import serialization

            claims = jwt.decode(form["assertion"], serialization.load_pem_public_key(client.certificate_pem),
                                algorithms=["RS256"], audience=[endpoint, GOOGLE_AUDIENCE])
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):  # signed by a clock far from ours
            return 400, {"error": "invalid_grant", "error_description":
                         "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                         "timeframe. Check your iat and exp values in the JWT claim."}
        except jwt.PyJWTError:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        subject = claims.get("sub")
        if subject and str(subject).rpartition("@")[2].lower() != client.domain:
            return 401, {"error": "unauthorized_client", "error_description":
                         "Client is unauthorized to retrieve access tokens using this method, or client not "
                         "authorized for any of the scopes requested."}
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.issued[token] = Issued(client, client.roles, time.time() + self.token_lifetime, subject)
        return 200, {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}

    def _assertion_out_of_time(self, client: Client, endpoint: str, form: dict[str, str]) -> bool:
        """A client assertion signed with the client's key, dated (iat, nbf, exp) where this clock refuses it."""
        if form.get("client_assertion_type") != ASSERTION_TYPE or not client.certificate_pem:
            return False
        key = x509.load_pem_x509_certificate(client.certificate_pem).public_key()
        try:
            jwt.decode(form.get("client_assertion", ""), key, algorithms=["RS256", "PS256"], audience=endpoint)
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
            return True
        except jwt.PyJWTError:
            return False
        return False

    def _authenticated(self, client: Client, endpoint: str, form: dict[str, str]) -> bool:
        if form.get("client_assertion_type") == ASSERTION_TYPE and client.certificate_pem:
            key = x509.load_pem_x509_certificate(client.certificate_pem).public_key()
            try:
                claims = jwt.decode(form.get("client_assertion", ""), key, algorithms=["RS256", "PS256"],
                                    audience=endpoint)
            except jwt.PyJWTError:
                return False
            return claims.get("iss") == claims.get("sub") == client.client_id
        return client.secret is not None and secrets.compare_digest(form.get("client_secret", ""), client.secret)

    # --- delegated authorization (device code, refresh with rotation, revocation) ---------------

    def _client_of(self, realm: str, client_id: str) -> Client | None:
        return next((c for (tenant, cid), c in self.clients.items()
                     if cid == client_id and (tenant == realm or realm == GENERIC)), None)

    def _public_or_authenticated(self, client: Client, endpoint: str, form: dict[str, str]) -> bool:
        """A public client (no secret, no certificate: a device's app) sends only its id."""
        if client.secret is None and client.certificate_pem is None:
            return True
        return self._authenticated(client, endpoint, form)

    def device_authorize(self, realm: str, form: dict[str, str]) -> tuple[int, dict]:
        client = self._client_of(realm, form.get("client_id", ""))
        if client is None:
            return 400, {"error": "unauthorized_client", "error_description":
                         f"AADSTS700016: Application with identifier '{form.get('client_id', '')}' was not found "
                         f"in the directory '{realm}'."}
        device_code = secrets.token_urlsafe(32)
        user_code = "-".join(secrets.token_hex(2).upper() for _ in range(2))
        flow = DeviceAuthorization(client, device_code, user_code, time.time() + self.device_lifetime,
                                   self.device_interval)
        with self._lock:
            self.devices[device_code] = flow
        verification = f"{self.url}/{realm}/verify"
        return 200, {"device_code": device_code, "user_code": user_code, "verification_uri": verification,
                     "expires_in": self.device_lifetime, "interval": self.device_interval,
                     "message": f"To sign in, use a web browser to open the page {verification} and enter "
                                f"the code {user_code} to authenticate."}

    def approve(self, user_code: str, email: str) -> None:
        """Lab only: the person signs in as ``email`` and approves the code."""
        with self._lock:
            flow = next(f for f in self.devices.values() if f.user_code == user_code)
            flow.approved_for = email.lower()

    def device(self, user_code: str) -> DeviceAuthorization:
        with self._lock:
            return next(f for f in self.devices.values() if f.user_code == user_code)

    def deny(self, user_code: str) -> None:
        with self._lock:
            next(f for f in self.devices.values() if f.user_code == user_code).denied = True

    def device_token(self, form: dict[str, str]) -> tuple[int, dict]:
        with self._lock:
            flow = self.devices.get(form.get("device_code", ""))
            if flow is None or flow.redeemed or flow.client.client_id != form.get("client_id"):
                return 400, {"error": "invalid_grant", "error_description": "AADSTS70000: unknown device code."}
            now = time.time()
            flow.polls += 1
            too_soon = now - flow.last_poll < flow.interval - 0.05
            flow.last_poll = now
            if now > flow.expires_at:
                return 400, {"error": "expired_token", "error_description":
                             "AADSTS70020: The provided value for the input parameter 'device_code' is not valid. "
                             "This device code has expired."}
            if flow.denied:
                return 400, {"error": "access_denied", "error_description": "AADSTS70000: the user declined."}
            if too_soon or flow.polls <= self.slow_down_polls:
                flow.interval += SLOW_DOWN_STEP
                flow.slowed_down += 1
                return 400, {"error": "slow_down", "error_description": "polled faster than the interval"}
            if flow.approved_for is None:
                return 400, {"error": "authorization_pending", "error_description":
                             "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending."}
            flow.redeemed = True
            return 200, self._user_tokens(flow.client, flow.approved_for, form.get("scope", ""))

    def _user_tokens(self, client: Client, subject: str, scope: str) -> dict:
        """Caller holds the lock."""
        access = secrets.token_urlsafe(32)
        refresh = secrets.token_urlsafe(48)
        self.issued[access] = Issued(client, client.roles, time.time() + self.token_lifetime, subject)
        lifetime = self.refresh_token_expires_in
        self.refresh_grants[refresh] = RefreshGrant(client, subject, time.time() + lifetime if lifetime else None)
        answer = {"token_type": "Bearer", "scope": scope or " ".join(client.roles), "expires_in": self.token_lifetime,
                  "ext_expires_in": self.token_lifetime, "access_token": access, "refresh_token": refresh}
        if lifetime:
            answer["refresh_token_expires_in"] = lifetime
        return answer

    def refresh(self, form: dict[str, str]) -> tuple[int, dict]:
        with self._lock:
            self.refreshes += 1
            old = form.get("refresh_token", "")
            grant = self.refresh_grants.get(old)
            if (grant is None or grant.client.client_id != form.get("client_id")
                    or (grant.expires_at is not None and grant.expires_at < time.time())):
                return 400, {"error": "invalid_grant", "error_description":
                             "AADSTS70000: The provided value for the input parameter 'refresh_token' or "
                             "'assertion' is not valid. Token has been expired or revoked."}
            del self.refresh_grants[old]
            self.refused_refresh_tokens.append(old)
            return 200, self._user_tokens(grant.client, grant.subject, form.get("scope", ""))

    def revoke_user(self, email: str) -> int:
        """The user (or an admin) revokes every grant of ``email``: its refresh tokens are refused."""
        with self._lock:
            revoked = [token for token, grant in self.refresh_grants.items() if grant.subject == email.lower()]
            for token in revoked:
                del self.refresh_grants[token]
                self.refused_refresh_tokens.append(token)
            return len(revoked)

    def revoke_token(self, form: dict[str, str]) -> tuple[int, dict]:
        """RFC 7009 2.1-2.2: the client names itself (a public client sends its id), the token is
        revoked with the access tokens of its grant (2.1: SHOULD), and the answer is 200 whether or
        not the token was known (2.2); a token of another client is refused (``unauthorized_client``),
        a request without one is ``invalid_request``. ``revocation = "refuse"`` answers 400 to all."""
        if self.on_revocation is not None:
            self.on_revocation()
        with self._lock:
            self.revocations.append(form.get("token", ""))
            if self.revocation == "refuse":
                return 400, {"error": "unsupported_token_type",
                             "error_description": "the authorization server does not revoke this type of token"}
            token = form.get("token", "")
            if not token:
                return 400, {"error": "invalid_request", "error_description": "the token parameter is missing"}
            grant = self.refresh_grants.get(token)
            if grant is None:
                return 200, {}
            client = grant.client
            if client.client_id != form.get("client_id") or not self._public_or_authenticated(
                    client, f"{self.url}/{GENERIC}/revoke", form):
                return 400, {"error": "unauthorized_client",
                             "error_description": "the token was not issued to this client"}
            del self.refresh_grants[token]
            self.refused_refresh_tokens.append(token)
            for access, issued in list(self.issued.items()):
                if issued.client is client and issued.subject == grant.subject:
                    del self.issued[access]
        return 200, {}

    def live_refresh_tokens(self, email: str) -> list[str]:
        with self._lock:
            return [token for token, grant in self.refresh_grants.items() if grant.subject == email.lower()]

    def introspect(self, token: str) -> dict:
        """What a resource server learns of a token: active, who, what it may do."""
        with self._lock:
            self.introspections += 1
            issued = self.issued.get(token)
        if issued is None or issued.expires_at < time.time():
            return {"active": False, "email": "nobody@invalid.invalid"}
        client = issued.client
        email = issued.subject or f"{client.client_id}@{client.domain}"
        return {"active": True, "email": email, "scope": " ".join(issued.roles),
                "client_id": client.client_id, "exp": int(issued.expires_at)}

    def may(self, token: str, login: str, role: str) -> bool:
        """Whether ``token`` lets its app act as ``login`` with ``role`` (the lab's SMTP asks this)."""
        info = self.introspect(token)
        return (info["active"] and login.rpartition("@")[2].lower() == info["email"].rpartition("@")[2]
                and role in info["scope"].split())


def _handler(provider: OAuthProvider, *, secure: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def _form(self) -> dict[str, str]:
            length = int(self.headers.get("Content-Length") or 0)
            parsed = parse_qs(self.rfile.read(length).decode("utf-8"), keep_blank_values=True)
            return {key: values[0] for key, values in parsed.items()}

        def do_GET(self) -> None:
            if not secure:
                return self._answer(404, {"error": "not_found"})
            if provider.unavailable:
                return self._answer(503, {"error": "temporarily_unavailable"})
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[1:] in (["v2.0", ".well-known", "openid-configuration"], [".well-known", "openid-configuration"]):
                return self._answer(*provider.discovery(parts[0]))
            self._answer(404, {"error": "not_found"})

        def do_POST(self) -> None:
            form = self._form()
            path = self.path.split("?")[0]
            if not secure:
                if path == "/introspect":
                    return self._answer(200, provider.introspect(form.get("token", "")))
                return self._answer(404, {"error": "not_found"})
            if provider.unavailable:
                return self._answer(503, {"error": "temporarily_unavailable"})
            realm = path.strip("/").split("/")[0]
            if path == f"/{GOOGLE}/token":
                return self._answer(*provider.jwt_bearer(f"{provider.url}{path}", form))
            if path in (f"/{realm}/oauth2/v2.0/devicecode", f"/{GENERIC}/device"):
                return self._answer(*provider.device_authorize(realm, form))
            if path == f"/{GENERIC}/revoke":
                return self._answer(*provider.revoke_token(form))
            if path in (f"/{realm}/oauth2/v2.0/token", f"/{GENERIC}/token"):
                return self._answer(*provider.grant(realm, f"{provider.url}{path}", form))
            self._answer(404, {"error": "not_found"})

    return Handler


def client_certificate() -> tuple[bytes, bytes]:
    """A self-signed app certificate and its key (PEM), as an app registration holds one."""
    import trustme

    ca = trustme.CA(organization_name="mbxtui lab app", key_type=trustme.KeyType.RSA)
    issued = ca.issue_cert("mbxtui-lab-app", key_type=trustme.KeyType.RSA)
    return issued.cert_chain_pems[0].bytes(), issued.private_key_pem.bytes()

