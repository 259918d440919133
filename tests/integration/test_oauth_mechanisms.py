"""OAUTHBEARER (RFC 7628) beside XOAUTH2, the server's OAuth2 error challenge read, and the codes of
SMTP AUTH turned off and of a missing admin consent, against the real lab: Dovecot's oauth2 passdb and
the lab's SMTP server (tests/lab/oauth_mail.py), tokens from the local provider through msal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mbxtui.core.oauth import providers
from mbxtui.core.oauth.settings import OAuthSettings
from mbxtui.core.oauth.tokens import TokenError
from mbxtui.core.probes import Credentials, Endpoint, ErrorCode, imap, is_transient, pop3, smtp
from mbxtui.core.secret_value import Secret
from tests.lab import MailLab
from tests.lab.oauth_mail import EVERY_MAILBOX, IMAP_ROLE, POP_ROLE, SMTP_ROLE, OAuthMail, start_oauth_mail

pytestmark = pytest.mark.servers

ALICE = "alice@example.test"
TENANT = "5d1c0b2e-mechanisms-lab"
SECRET = "Lab~mechanisms.secret-7Kq2"


def _started(mail_lab: MailLab, workdir: Path, **options: object) -> Iterator[OAuthMail]:
    started = start_oauth_mail(mail_lab, workdir, **options)  # type: ignore[arg-type]
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def both(mail_lab: MailLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthMail]:
    yield from _started(mail_lab, tmp_path_factory.mktemp("oauth-both"))


@pytest.fixture(scope="module")
def bearer_only(mail_lab: MailLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthMail]:
    yield from _started(mail_lab, tmp_path_factory.mktemp("oauth-bearer"), mechanisms=("OAUTHBEARER",))


def issued_token(oauth: OAuthMail, client_id: str, **registration: object) -> Secret:
    oauth.provider.register(TENANT, client_id, secret=SECRET, **registration)  # type: ignore[arg-type]
    settings = OAuthSettings(0, "microsoft365", TENANT, client_id, oauth.provider.url,
                             "https://outlook.office365.com/.default", oauth.ca_file, 10.0)
    return providers.fetch(settings, "client_secret", Secret(SECRET), None).value


def logins(oauth: OAuthMail, token: Secret) -> dict[str, object]:
    credentials = Credentials("oauth2", ALICE, token, token_issued=True)
    at = lambda port: Endpoint(oauth.host, oauth.ports[port], "starttls", timeout=10, ca_file=oauth.ca_file)  # noqa: E731
    return {"imap": imap.probe(at("imap"), credentials), "pop3": pop3.probe(at("pop3"), credentials),
            "smtp": smtp.probe(at("smtp"), credentials, sender=ALICE, recipient=ALICE, send=False)}


def test_xoauth2_is_used_where_the_server_offers_both(both: OAuthMail):
    results = logins(both, issued_token(both, "app-both"))

    assert {name: (r.ok, r.mechanism) for name, r in results.items()} == {
        "imap": (True, "XOAUTH2"), "pop3": (True, "XOAUTH2"), "smtp": (True, "XOAUTH2")}, results


def test_an_entra_id_length_token_logs_in_with_its_response_after_the_continuation(both: OAuthMail):
    both.provider.jwt_audience = "https://outlook.office365.com"  # a JWT: far longer than an opaque token
    try:
        token = issued_token(both, "app-long-token")
    finally:
        both.provider.jwt_audience = None
    assert len(token.reveal()) > 400

    results = logins(both, token)

    # SMTP takes 512 octets on the AUTH line (RFC 4954 4): the lab's server refuses a longer line.
    assert {name: r.ok for name, r in results.items()} == {"imap": True, "pop3": True, "smtp": True}, results


def test_oauthbearer_is_used_where_the_server_offers_it_alone(bearer_only: OAuthMail):
    results = logins(bearer_only, issued_token(bearer_only, "app-bearer"))

    assert {name: (r.ok, r.mechanism) for name, r in results.items()} == {
        "imap": (True, "OAUTHBEARER"), "pop3": (True, "OAUTHBEARER"), "smtp": (True, "OAUTHBEARER")}, results


def test_an_oauthbearer_refusal_ends_the_exchange_and_names_the_scope_the_server_wants(bearer_only: OAuthMail):
    token = issued_token(bearer_only, "app-bearer-no-smtp", roles=(IMAP_ROLE, POP_ROLE))

    results = logins(bearer_only, token)

    assert results["imap"].ok and results["pop3"].ok, results
    failure = results["smtp"].failure
    assert failure is not None and failure.code == ErrorCode.OAUTH_PERMISSION_MISSING, failure
    assert "535 5.7.3" in failure.message, "the %x01 answer ends the exchange with the server's verdict"
    assert f"status 401; scope {SMTP_ROLE}" in failure.message, "what the server's JSON challenge said"
    assert token.reveal() not in failure.message


def test_dovecots_oauthbearer_error_challenge_is_read_on_imap_and_pop3(bearer_only: OAuthMail):
    results = logins(bearer_only, issued_token(bearer_only, "app-bearer-no-imap", roles=(SMTP_ROLE,)))

    for protocol in ("imap", "pop3"):
        failure = results[protocol].failure
        assert failure is not None and failure.code == ErrorCode.OAUTH_PERMISSION_MISSING, failure
        assert "status invalid_token" in failure.message, failure.message  # {"status":"invalid_token"}, base64
    assert results["smtp"].ok


def test_a_token_set_by_hand_that_the_server_refuses_is_read_from_the_error_challenge(bearer_only: OAuthMail):
    results = logins(bearer_only, Secret("not-a-token-the-provider-issued"))
    hand_set = Credentials("oauth2", ALICE, Secret("not-a-token-the-provider-issued"))
    at = Endpoint(bearer_only.host, bearer_only.ports["smtp"], "starttls", timeout=10, ca_file=bearer_only.ca_file)

    refused = smtp.probe(at, hand_set, sender=ALICE, recipient=ALICE, send=False).failure

    assert all(not r.ok for r in results.values())
    assert refused is not None and refused.code == ErrorCode.AUTH_FAILED, refused
    assert "invalid or expired" in refused.message
    assert f"status 401, scope {SMTP_ROLE}" in refused.message, "what the server's JSON challenge said"


@pytest.mark.parametrize(("disabled", "where"), [(ALICE, "Set-CASMailbox -Identity alice@example.test"),
                                                 (EVERY_MAILBOX, "Set-TransportConfig")])
def test_smtp_auth_turned_off_is_its_own_permanent_code_naming_where_to_turn_it_on(both: OAuthMail, disabled: str,
                                                                                    where: str):
    token = issued_token(both, "app-smtp-off")
    both.smtp_auth_disabled.add(disabled)
    try:
        failure = logins(both, token)["smtp"].failure
    finally:
        both.smtp_auth_disabled.clear()

    assert failure is not None and failure.code == ErrorCode.SMTP_AUTH_DISABLED, failure
    assert not is_transient(failure.code)
    assert "5.7.139" in failure.message and where in failure.message


def test_no_admin_consent_is_its_own_permanent_code(both: OAuthMail):
    with pytest.raises(TokenError) as refused:
        issued_token(both, "app-unconsented", consented=False)

    assert refused.value.code == ErrorCode.OAUTH_CONSENT_MISSING
    assert not is_transient(refused.value.code)
    assert "AADSTS65001" in refused.value.message and "Grant admin consent" in refused.value.message
