"""``mbxtui profile diagnose`` against the real lab: a token from the local provider (msal unmodified;
JWTs as Entra ID issues them where the test asks), its claims read, IMAP and SMTP logins as a mailbox at
Dovecot's oauth2 passdb and the lab's SMTP server, and what is wrong said with where to change it.
Every run is swept for the tokens the provider issued: none may reach the output."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from mbxtui.core.models import Mailbox
from mbxtui.core.oauth import tokens
from mbxtui.core.services import credentials
from tests.integration.conftest import Org
from tests.lab.oauth_mail import IMAP_ROLE, SMTP_ROLE, OAuthMail
from tests.lab.oauth_fixtures import oauth_mail  # noqa: F401  (fixture)

pytestmark = pytest.mark.servers

ALICE = "alice@example.test"
BOB = "bob@example.test"
TENANT = "3f0c9a7e-diagnose-lab"
SECRET = "Lab~diagnose.secret-9Hm4"
EXCHANGE = "https://outlook.office365.com"


@pytest.fixture(autouse=True)
def fresh_provider(oauth_mail: OAuthMail) -> Iterator[None]:
    tokens.forget_tokens()
    yield
    oauth_mail.provider.jwt_audience, oauth_mail.provider.token_lifetime = None, 3600
    tokens.forget_tokens()


def oauth_profile(org: Org, oauth: OAuthMail, client_id: str, *, profile: dict | None = None,
                  **registration: object) -> None:
    oauth.provider.register(TENANT, client_id, secret=SECRET, **registration)  # type: ignore[arg-type]
    fields = {"incoming_port": oauth.ports["imaps"], "outgoing_port": oauth.ports["smtp"], "incoming_auth": "oauth2",
              "outgoing_auth": "oauth2", **(profile or {})}
    org.profile("M365", oauth_provider="microsoft365", oauth_tenant=TENANT, oauth_client_id=client_id,
                oauth_issuer=oauth.provider.url, **fields)
    credentials.set_profile_oauth(org.admin, "M365", "client_secret", SECRET, org.store)
    org.mailbox(ALICE, "M365")


def diagnose(org: Org, oauth: OAuthMail, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """The text run and the --json run, each swept for every token the provider issued (and its
    parts: a JWT's claims are read, never its encoded payload shown) and for the client secret."""
    text = org.cli("profile", "diagnose", "M365", *args)
    as_json = org.cli("profile", "diagnose", "M365", *args, "--json")
    issued = list(oauth.provider.issued)
    assert issued, "the provider issued a token"
    for run in (text, as_json):
        output = run.stdout + run.stderr
        assert SECRET not in output
        for token in issued:
            assert not [part for part in token.split(".") if len(part) > 16 and part in output], "a token leaked"
    assert text.returncode == as_json.returncode, (text.stderr, as_json.stderr)
    return text, json.loads(as_json.stdout)


def codes(result: dict) -> list[str]:
    return [finding["code"] for finding in result["findings"]]


def test_a_working_profile_shows_the_tokens_claims_passes_both_logins_and_exits_0(org: Org, oauth_mail: OAuthMail):
    oauth_mail.provider.jwt_audience = EXCHANGE
    oauth_profile(org, oauth_mail, "app-diag-ok")

    text, result = diagnose(org, oauth_mail)

    assert text.returncode == 0, text.stdout + text.stderr
    assert result["passed"] and result["findings"] == []
    assert (result["mailbox"], result["mailbox_chosen"]) == (ALICE, "the profile's first approved mailbox, none being enabled")
    claims = result["token"]["claims"]
    assert (claims["jwt"], claims["audience"], claims["tenant"]) == (True, [EXCHANGE], TENANT)
    assert set(claims["roles"]) >= {IMAP_ROLE, SMTP_ROLE} and claims["expires_at"]
    assert {protocol: login["ok"] for protocol, login in result["logins"].items()} == {"imap": True, "smtp": True}
    assert f"tenant (tid): {TENANT}" in text.stdout and f"roles: {IMAP_ROLE}" in text.stdout
    assert "login IMAP with XOAUTH2: passed" in text.stdout and "nothing wrong" in text.stdout


def test_a_token_without_the_imap_role_says_to_grant_it_in_entra_id(org: Org, oauth_mail: OAuthMail):
    oauth_mail.provider.jwt_audience = EXCHANGE
    oauth_profile(org, oauth_mail, "app-diag-no-imap", roles=(SMTP_ROLE,))

    text, result = diagnose(org, oauth_mail)

    assert text.returncode == 1
    assert codes(result) == ["OAUTH_PERMISSION_MISSING"], result["findings"]
    message = result["findings"][0]["message"]
    assert f"the token has no role {IMAP_ROLE}" in message
    assert "Entra ID > App registrations" in message and "API permissions" in message and "admin consent" in message
    assert (result["logins"]["imap"]["ok"], result["logins"]["smtp"]["ok"]) == (False, True)
    assert f"no role {IMAP_ROLE}" in text.stdout


def test_a_pop3_profile_needs_pop_access_as_app_and_a_side_without_oauth2_is_said_not_checked(
        org: Org, oauth_mail: OAuthMail):
    oauth_mail.provider.jwt_audience = EXCHANGE
    oauth_profile(org, oauth_mail, "app-diag-pop3", roles=(IMAP_ROLE, SMTP_ROLE),
                  profile={"type": "pop3_smtp", "incoming_port": oauth_mail.ports["pop3s"], "outgoing_auth": "none",
                           "verify_delivery": False})

    text, result = diagnose(org, oauth_mail)

    assert text.returncode == 1
    assert codes(result) == ["OAUTH_PERMISSION_MISSING"] and "no role POP.AccessAsApp" in result["findings"][0]["message"]
    assert list(result["logins"]) == ["pop3"] and list(result["not_checked"]) == ["smtp"]
    assert "login SMTP: not checked (its authentication is none, not oauth2" in text.stdout


def test_a_token_for_another_audience_says_which_scope_to_set(org: Org, oauth_mail: OAuthMail):
    oauth_mail.provider.jwt_audience = "https://graph.microsoft.com"
    oauth_profile(org, oauth_mail, "app-diag-graph")

    text, result = diagnose(org, oauth_mail)

    assert text.returncode == 1
    assert codes(result) == ["TOKEN_AUDIENCE"], result["findings"]
    assert "--oauth-scope https://outlook.office365.com/.default" in result["findings"][0]["message"]


def test_a_mailbox_that_has_not_granted_the_app_is_named_with_the_command_that_grants_it(org: Org,
                                                                                          oauth_mail: OAuthMail):
    oauth_mail.provider.jwt_audience = EXCHANGE
    oauth_profile(org, oauth_mail, "app-diag-other-domain", domain="other.test")

    text, result = diagnose(org, oauth_mail)

    assert text.returncode == 1
    assert codes(result) == ["OAUTH_PERMISSION_MISSING", "OAUTH_PERMISSION_MISSING"], result["findings"]
    assert all("has not granted the app access" in f["message"] and f"Add-MailboxPermission -Identity {ALICE}"
               in f["message"] for f in result["findings"])


def test_a_token_expired_as_it_is_issued_points_at_the_clock(org: Org, oauth_mail: OAuthMail):
    oauth_mail.provider.jwt_audience, oauth_mail.provider.token_lifetime = EXCHANGE, -120
    oauth_profile(org, oauth_mail, "app-diag-clock")

    text, result = diagnose(org, oauth_mail)

    assert text.returncode == 1
    assert codes(result) == ["TOKEN_EXPIRED"], result["findings"]
    assert "clock is ahead" in result["findings"][0]["message"]


def test_an_opaque_token_is_said_so_and_missing_consent_is_its_own_code(org: Org, oauth_mail: OAuthMail):
    oauth_profile(org, oauth_mail, "app-diag-opaque")

    text, result = diagnose(org, oauth_mail)

    assert text.returncode == 0, text.stdout
    assert result["token"]["claims"]["jwt"] is False and "not a JWT" in text.stdout

    oauth_mail.provider.clients[(TENANT, "app-diag-opaque")].consented = False
    tokens.forget_tokens()
    refused = org.cli("profile", "diagnose", "M365", "--json")
    assert refused.returncode == 1
    result = json.loads(refused.stdout)
    assert (result["token"]["ok"], result["logins"], codes(result)) == (False, {}, ["OAUTH_CONSENT_MISSING"])
    assert "Grant admin consent" in result["findings"][0]["message"]


def test_the_mailbox_is_the_first_enabled_one_unless_one_is_given(org: Org, oauth_mail: OAuthMail):
    oauth_profile(org, oauth_mail, "app-diag-choice")
    org.mailbox(BOB, "M365")
    Mailbox.update(outgoing_enabled=True).where(Mailbox.email == BOB).execute()

    _, chosen = diagnose(org, oauth_mail)
    _, given = diagnose(org, oauth_mail, "--mailbox", ALICE)
    unknown = org.cli("profile", "diagnose", "M365", "--mailbox", "nobody@example.test")

    assert (chosen["mailbox"], chosen["mailbox_chosen"]) == (BOB, "the profile's first enabled mailbox")
    assert (given["mailbox"], given["mailbox_chosen"]) == (ALICE, "given with --mailbox")
    assert unknown.returncode == 1 and "no mailbox 'nobody@example.test' uses profile 'M365'" in unknown.stderr


def test_a_profile_without_an_oauth_provider_is_refused_with_the_command_that_checks_it(org: Org):
    org.profile("Plain")

    refused = org.cli("profile", "diagnose", "Plain")

    assert refused.returncode == 1 and refused.stdout == ""
    assert "does not fetch OAuth2 tokens" in refused.stderr and "mbxtui profile test Plain" in refused.stderr
