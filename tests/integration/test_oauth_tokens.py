"""The token source (core/oauth) against a local HTTPS identity provider speaking the real protocol
(tests/lab/oauth_provider.py), through msal unmodified: tokens fetched with a client secret or a
certificate, shared by every thread, renewed before expiry, and each failure its code."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from mbxtui.core.oauth import tokens
from mbxtui.core.oauth.client_credentials import certificate_from_pem, service_account_from_json
from mbxtui.core.oauth.tokens import TokenError
from mbxtui.core.oauth.settings import OAuthSettings
from mbxtui.core.probes.base import ErrorCode, is_transient
from mbxtui.core.secret_value import Secret
from tests.lab.oauth_fixtures import lab_certificates, provider  # noqa: F401  (fixtures)
from tests.lab.oauth_provider import OAuthProvider, client_certificate

TENANT = "3f1c9c55-lab-tenant"
SECRET = "lab-client-secret~Qx7"


def _m365(provider: OAuthProvider, client_id: str, *, ca_file: Path | str | None = None,
          issuer: str | None = None, tenant: str = TENANT) -> OAuthSettings:
    return OAuthSettings(profile_id=1, provider="microsoft365", tenant=tenant, client_id=client_id,
                         issuer=issuer or provider.url, scope="https://outlook.office365.com/.default",
                         ca_file=str(ca_file or provider.certificates.ca_file), timeout=5.0)


def _failure(settings: OAuthSettings, kind: str, credential: str) -> TokenError:
    with pytest.raises(TokenError) as raised:
        tokens.token(settings, kind, Secret(credential))
    return raised.value


def test_a_client_secret_token_is_fetched_once_and_shared_by_every_thread(provider: OAuthProvider,
                                                                          monkeypatch: pytest.MonkeyPatch):
    # These machines set REQUESTS_CA_BUNDLE to the system's CAs: the profile's CA file must win anyway.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    provider.register(TENANT, "app-shared", secret=SECRET)
    settings = _m365(provider, "app-shared")
    seen: list[str] = []

    def ask() -> None:
        seen.append(tokens.token(settings, "client_secret", Secret(SECRET)).reveal())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and len(set(seen)) == 1 and seen[0] in provider.issued
    assert provider.requests_of("app-shared") == 1


def test_a_token_is_renewed_before_it_expires(provider: OAuthProvider):
    provider.register(TENANT, "app-short", secret=SECRET)
    provider.token_lifetime = 2
    settings = _m365(provider, "app-short")
    first = tokens.token(settings, "client_secret", Secret(SECRET)).reveal()
    assert tokens.token(settings, "client_secret", Secret(SECRET)).reveal() == first
    time.sleep(1.1)  # past half its life: renewed while it is still valid
    second = tokens.token(settings, "client_secret", Secret(SECRET)).reveal()
    assert second != first and provider.requests_of("app-short") == 2
    assert provider.introspect(first)["active"]


def test_a_certificate_signs_the_client_assertion(provider: OAuthProvider):
    certificate, key = client_certificate()
    provider.register(TENANT, "app-cert", certificate_pem=certificate)
    stored = certificate_from_pem("--certificate-file", key + certificate)
    token = tokens.token(_m365(provider, "app-cert"), "certificate", Secret(stored))
    assert provider.introspect(token.reveal())["active"]
    other_certificate, other_key = client_certificate()
    refused = _failure(_m365(provider, "app-cert"), "certificate",
                       certificate_from_pem("--certificate-file", other_key + other_certificate))
    assert refused.code == ErrorCode.OAUTH_CLIENT_REJECTED


def test_a_wrong_secret_or_an_unknown_client_is_rejected_for_good(provider: OAuthProvider):
    provider.register(TENANT, "app-known", secret=SECRET)
    wrong = _failure(_m365(provider, "app-known"), "client_secret", "not-the-secret")
    assert wrong.code == ErrorCode.OAUTH_CLIENT_REJECTED and not is_transient(wrong.code)
    assert "AADSTS7000215" in wrong.message and "mbxtui profile set-oauth" in wrong.message
    assert "not-the-secret" not in wrong.message
    unknown = _failure(_m365(provider, "app-unknown"), "client_secret", SECRET)
    assert unknown.code == ErrorCode.OAUTH_CLIENT_REJECTED and "AADSTS700016" in unknown.message
    tenant = _failure(_m365(provider, "app-known", tenant="no-such-tenant"), "client_secret", SECRET)
    assert tenant.code == ErrorCode.OAUTH_CLIENT_REJECTED and "--oauth-tenant" in tenant.message


def test_a_provider_down_or_busy_is_transient(provider: OAuthProvider, tmp_path: Path):
    provider.register(TENANT, "app-down", secret=SECRET)
    provider.unavailable = True
    busy = _failure(_m365(provider, "app-down"), "client_secret", SECRET)
    assert busy.code == ErrorCode.OAUTH_PROVIDER_UNREACHABLE and is_transient(busy.code)
    assert "HTTP 503" in busy.message
    closed = provider.url
    provider.stop()
    refused = _failure(_m365(provider, "app-down", issuer=closed), "client_secret", SECRET + "-other")
    assert refused.code == ErrorCode.OAUTH_PROVIDER_UNREACHABLE and "connection refused" in refused.message


def test_the_provider_certificate_is_checked_against_the_profiles_ca(provider: OAuthProvider):
    provider.register(TENANT, "app-ca", secret=SECRET)
    refused = _failure(_m365(provider, "app-ca", ca_file=provider.certificates.wrong_ca_file), "client_secret",
                       SECRET)
    assert refused.code == ErrorCode.TLS_CERTIFICATE and provider.requests_of("app-ca") == 0


def test_a_generic_provider_is_found_by_openid_discovery(provider: OAuthProvider):
    provider.register("generic", "keycloak-app", secret=SECRET)
    settings = OAuthSettings(profile_id=2, provider="generic", tenant=None, client_id="keycloak-app",
                             issuer=f"{provider.url}/generic", scope="mail", ca_file=str(provider.certificates.ca_file),
                             timeout=5.0)
    assert provider.introspect(tokens.token(settings, "client_secret", Secret(SECRET)).reveal())["active"]
    assert _failure(settings, "client_secret", "wrong").code == ErrorCode.OAUTH_CLIENT_REJECTED


def test_a_google_service_account_gets_one_token_per_mailbox_it_acts_as(provider: OAuthProvider):
    key_file = provider.service_account("mbxtui@lab.iam.gserviceaccount.com")
    stored = service_account_from_json("--service-account-file", json.dumps(key_file).encode())
    settings = OAuthSettings(profile_id=3, provider="google", tenant=None, client_id=None, issuer=None,
                             scope="https://mail.google.com/", ca_file=str(provider.certificates.ca_file), timeout=5.0)
    alice = tokens.token(settings, "service_account", Secret(stored), "alice@example.test")
    bob = tokens.token(settings, "service_account", Secret(stored), "bob@example.test")
    assert tokens.token(settings, "service_account", Secret(stored), "alice@example.test").reveal() == alice.reveal()
    assert provider.introspect(alice.reveal())["email"] == "alice@example.test"
    assert provider.introspect(bob.reveal())["email"] == "bob@example.test"
    assert provider.requests_of("mbxtui@lab.iam.gserviceaccount.com") == 2

    with pytest.raises(TokenError) as outside:
        tokens.token(settings, "service_account", Secret(stored), "eve@elsewhere.test")
    assert outside.value.code == ErrorCode.OAUTH_PERMISSION_MISSING
    assert "domain-wide delegation" in outside.value.message
