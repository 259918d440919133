"""The bearer-token SASL responses the sandbox servers take: XOAUTH2 (Google's and Microsoft's)
and OAUTHBEARER (RFC 7628), read into the mailbox they log in as and the token they carry."""

from __future__ import annotations

import base64
import json

TOKEN_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")


def bearer_login(mechanism: str, response: str) -> tuple[str, str]:
    """(user, token) of a decoded response; empty strings for what it lacks."""
    head, _, rest = response.partition("\x01") if mechanism == "OAUTHBEARER" else ("", "", response)
    fields = dict(part.split("=", 1) for part in rest.split("\x01") if "=" in part)
    token = fields.get("auth", "").removeprefix("Bearer ")
    if mechanism != "OAUTHBEARER":
        return fields.get("user", ""), token
    # The GS2 header: "n,a=USER," with "," and "=" in USER written =2C and =3D.
    authzid = next((part[2:] for part in head.split(",") if part.startswith("a=")), "")
    return authzid.replace("=2C", ",").replace("=3D", "="), token


def oauthbearer_error(scope: str) -> str:
    """RFC 7628 3.2.2: the failure a server sends as a challenge before it fails the exchange."""
    error = {"status": "invalid_token", "schemes": "bearer", "scope": scope}
    return base64.b64encode(json.dumps(error).encode()).decode("ascii")
