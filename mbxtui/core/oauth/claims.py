"""What an access token says about itself, read without verifying it: a JWT's audience, tenant,
roles or scopes and lifetime, for ``profile diagnose``. Nothing here is trusted (the mail server
decides), and nothing of the token itself is kept: only the claims a person needs to read.

An opaque token (Google's ``ya29...``, most OpenID providers' reference tokens) and an encrypted JWT
carry nothing readable; ``TokenClaims.jwt`` is then false."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from mbxtui.core.secret_value import Secret

_MAX_VALUE = 200
_MAX_ITEMS = 50


@dataclass(frozen=True)
class TokenClaims:
    jwt: bool
    audience: tuple[str, ...] = ()
    tenant: str | None = None  # Entra ID's tid
    issuer: str | None = None
    app: str | None = None  # appid / azp / client_id: the client it was issued to
    roles: tuple[str, ...] = ()  # app permissions (client credentials)
    scopes: tuple[str, ...] = ()  # delegated permissions (scp, scope)
    expires_at: datetime | None = None
    not_before: datetime | None = None
    issued_at: datetime | None = None
    why_unreadable: str = field(default="")

    def as_dict(self) -> dict[str, Any]:
        def moment(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat(timespec="seconds")

        return {"jwt": self.jwt, "audience": list(self.audience), "tenant": self.tenant, "issuer": self.issuer,
                "app": self.app, "roles": list(self.roles), "scopes": list(self.scopes),
                "expires_at": moment(self.expires_at), "not_before": moment(self.not_before),
                "issued_at": moment(self.issued_at), "why_unreadable": self.why_unreadable or None}


def read_claims(token: Secret) -> TokenClaims:
    """The claims of ``token`` if it is a signed JWT (JWS compact form), read without checking the
    signature."""
    parts = token.reveal().split(".")
    if len(parts) == 5:
        return TokenClaims(jwt=False, why_unreadable="an encrypted JWT (JWE): only its audience can read it")
    if len(parts) != 3:
        return TokenClaims(jwt=False, why_unreadable="not a JWT (an opaque token): only its issuer and the mail "
                                                     "server can read what it allows")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        payload = None
    if not isinstance(payload, dict):
        return TokenClaims(jwt=False, why_unreadable="not a JWT: its middle part is not base64 JSON")
    return TokenClaims(
        jwt=True,
        audience=_texts(payload.get("aud")),
        tenant=_text(payload.get("tid")),
        issuer=_text(payload.get("iss")),
        app=_text(payload.get("appid") or payload.get("azp") or payload.get("client_id")),
        roles=_texts(payload.get("roles")),
        scopes=_texts(payload.get("scp") if payload.get("scp") is not None else payload.get("scope")),
        expires_at=_moment(payload.get("exp")),
        not_before=_moment(payload.get("nbf")),
        issued_at=_moment(payload.get("iat")),
    )


def _text(value: object) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = " ".join(str(value).split())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)[:_MAX_VALUE]


def _texts(value: object) -> tuple[str, ...]:
    """A claim that is a list, or one string of space-separated values (``scp``)."""
    items = value if isinstance(value, list) else str(value).split() if isinstance(value, str) else []
    return tuple(text for text in (_text(item) for item in items[:_MAX_ITEMS]) if text)


def _moment(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(value, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
