"""Reading an access token's claims without verifying it (core/oauth/claims.py), for profile diagnose."""

from __future__ import annotations

import base64
import json

import jwt

from mbxtui.core.oauth.claims import read_claims
from mbxtui.core.secret_value import Secret

KEY = "a lab key long enough for HS256 without warnings"


def test_an_entra_id_app_token_gives_its_audience_tenant_roles_and_expiry():
    token = jwt.encode({"aud": "https://outlook.office365.com", "tid": "t-1", "appid": "app", "iss": "https://sts",
                        "roles": ["IMAP.AccessAsApp", "SMTP.SendAsApp"], "exp": 2_000_000_000, "iat": 1_999_996_400},
                       KEY, algorithm="HS256")

    claims = read_claims(Secret(token))

    assert (claims.jwt, claims.audience, claims.tenant, claims.app) == (True, ("https://outlook.office365.com",), "t-1",
                                                                        "app")
    assert claims.roles == ("IMAP.AccessAsApp", "SMTP.SendAsApp") and claims.scopes == ()
    assert claims.as_dict()["expires_at"] == "2033-05-18T03:33:20+00:00"


def test_a_delegated_token_gives_its_space_separated_scopes_and_an_audience_list():
    token = jwt.encode({"aud": ["a", "b"], "scp": "IMAP.AccessAsUser.All  SMTP.Send"}, KEY, algorithm="HS256")

    claims = read_claims(Secret(token))

    assert (claims.audience, claims.scopes, claims.roles) == (("a", "b"), ("IMAP.AccessAsUser.All", "SMTP.Send"), ())


def test_opaque_encrypted_and_garbled_tokens_are_said_not_to_be_readable():
    garbled_middle = base64.urlsafe_b64encode(b"not json").decode().rstrip("=")

    opaque, encrypted, garbled = (read_claims(Secret(text)) for text in
                                  ("ya29.opaque-google-token", "a.b.c.d.e", f"x.{garbled_middle}.y"))

    assert not (opaque.jwt or encrypted.jwt or garbled.jwt)
    assert "not a JWT (an opaque token)" in opaque.why_unreadable
    assert "encrypted" in encrypted.why_unreadable and "base64 JSON" in garbled.why_unreadable


def test_claims_are_shown_as_text_without_control_characters_or_odd_types():
    payload = base64.urlsafe_b64encode(json.dumps(
        {"tid": "evil\x1b[31mred", "roles": ["ok", {"nested": 1}], "exp": "soon"}).encode()).decode().rstrip("=")

    claims = read_claims(Secret(f"h.{payload}.s"))

    assert claims.tenant == "evil\\x1b[31mred" and claims.roles == ("ok",) and claims.expires_at is None
