"""Test & Enable and processing on a Microsoft 365-style profile: the token comes from the profile's
provider (a local HTTPS identity provider speaking the real protocol, msal unmodified), and the real
lab Dovecot (its oauth2 passdb, checking each token by introspection at the same provider) and an
SMTP server taking XOAUTH2 decide whether it may act for the mailbox (tests/lab/oauth_mail.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from mbxtui.core.jobs import queue as jobs
from mbxtui.core.oauth import tokens
from mbxtui.core.profile_check import check_profile
from mbxtui.core.services import credentials, profiles
from mbxtui.core.sync.runner import SyncRunner
from tests.integration.conftest import Org, stored_bytes
from tests.lab.oauth_mail import IMAP_ROLE, POP_ROLE, SMTP_ROLE, OAuthMail
from tests.lab.oauth_fixtures import oauth_mail  # noqa: F401  (fixture)

pytestmark = pytest.mark.servers

ALICE = "alice@example.test"
BOB = "bob@example.test"
TENANT = "9e6b3c1a-oauth-lab"
SECRET = "Lab~client.secret-5Yh8Qw2"


@pytest.fixture(autouse=True)
def fresh_tokens() -> Iterator[None]:
    tokens.forget_tokens()
    yield
    tokens.forget_tokens()


def oauth_profile(org: Org, oauth: OAuthMail, name: str, client_id: str, *, secret: str = SECRET,
                  **fields: object) -> None:
    """A microsoft365 profile whose authority is the local provider, with its client secret set."""
    org.profile(name, **{"incoming_port": oauth.ports["imaps"], "outgoing_port": oauth.ports["smtp"],
                         "incoming_auth": "oauth2", "outgoing_auth": "oauth2", "oauth_provider": "microsoft365",
                         "oauth_tenant": TENANT, "oauth_client_id": client_id, "oauth_issuer": oauth.provider.url,
                         **fields})
    credentials.set_profile_oauth(org.admin, name, "client_secret", secret, org.store)


def codes(org: Org, email: str) -> dict[str, str]:
    result = jobs.last_result(org.row(email).id)
    return {direction: probe["failure"]["code"] for direction, probe in result.directions.items() if probe["failure"]}


def steps(org: Org, email: str, direction: str) -> list[tuple[str, str]]:
    result = jobs.last_result(org.row(email).id)
    return [(step["step"], step["detail"]) for step in result.directions[direction]["steps"]]


def test_test_and_enable_fetches_a_token_and_logs_in_with_xoauth2_on_imap_and_smtp(org: Org, oauth_mail: OAuthMail):
    oauth_mail.provider.register(TENANT, "app-e2e", secret=SECRET)
    oauth_profile(org, oauth_mail, "M365", "app-e2e")
    org.mailbox(ALICE, "M365")
    delivered_before = len(org.lab.messages(ALICE))

    summary = org.test_enable(ALICE)

    assert (summary.tested, summary.passed) == (1, 1), codes(org, ALICE)
    row = org.row(ALICE)
    assert (row.incoming_enabled, row.outgoing_enabled, row.overall_status) == (True, True, "success")
    assert ("authenticate", f"as {ALICE}") in steps(org, ALICE, "incoming")
    assert ("authenticate", f"as {ALICE}") in steps(org, ALICE, "outgoing")
    assert steps(org, ALICE, "incoming")[-1][0] == "verify_delivery"  # the message SMTP took, read back
    assert len(org.lab.messages(ALICE)) == delivered_before + 1
    assert oauth_mail.provider.requests_of("app-e2e") == 1, "one token for both directions"
    assert oauth_mail.provider.introspections >= 1, "Dovecot checked the token at the provider"


def test_pop3_logs_in_with_xoauth2_too(org: Org, oauth_mail: OAuthMail):
    oauth_mail.provider.register(TENANT, "app-pop3", secret=SECRET)
    oauth_profile(org, oauth_mail, "M365 POP", "app-pop3", type="pop3_smtp", incoming_port=oauth_mail.ports["pop3s"],
                  verify_delivery=False)
    org.mailbox(ALICE, "M365 POP", outgoing_method="none")

    assert org.test_enable(ALICE).passed == 1, codes(org, ALICE)
    assert ("authenticate", f"as {ALICE}") in steps(org, ALICE, "incoming")


def test_pop3_wants_pop_access_as_app_and_refuses_a_token_with_only_imap_access_as_app(org: Org,
                                                                                     oauth_mail: OAuthMail):
    oauth_mail.provider.register(TENANT, "app-imap-only", secret=SECRET, roles=(IMAP_ROLE, SMTP_ROLE))
    oauth_profile(org, oauth_mail, "M365 POP only IMAP", "app-imap-only", type="pop3_smtp",
                  incoming_port=oauth_mail.ports["pop3s"], verify_delivery=False)
    org.mailbox(ALICE, "M365 POP only IMAP", outgoing_method="none")

    assert org.test_enable(ALICE).passed == 0

    assert codes(org, ALICE) == {"incoming": "OAUTH_PERMISSION_MISSING"}, oauth_mail.log_tail()
    text = org.row(ALICE).last_error_text
    assert "POP3 server" in text and POP_ROLE in text, text

    oauth_mail.provider.clients[(TENANT, "app-imap-only")].roles = (POP_ROLE, SMTP_ROLE)  # granted since
    assert org.test_enable(ALICE).passed == 1, codes(org, ALICE)


def test_a_google_service_account_acts_as_each_mailbox_with_a_token_of_its_own(org: Org, oauth_mail: OAuthMail):
    key_file = oauth_mail.provider.service_account("sync@mbxtui-lab.iam.gserviceaccount.com")
    org.profile("Workspace", incoming_port=oauth_mail.ports["imaps"], outgoing_port=oauth_mail.ports["smtp"],
                incoming_auth="oauth2", outgoing_auth="oauth2", oauth_provider="google")
    credentials.set_profile_oauth(org.admin, "Workspace", "service_account", json.dumps(key_file), org.store)
    for email in (ALICE, BOB):
        org.mailbox(email, "Workspace")

    summary = org.test_enable(ALICE, BOB)

    assert (summary.tested, summary.passed) == (2, 2), (codes(org, ALICE), codes(org, BOB))
    assert oauth_mail.provider.requests_of("sync@mbxtui-lab.iam.gserviceaccount.com") == 2, "one per subject"


def test_one_token_request_per_profile_for_all_its_mailboxes_until_near_expiry(org: Org, oauth_mail: OAuthMail):
    oauth_mail.provider.register(TENANT, "app-shared", secret=SECRET)
    oauth_profile(org, oauth_mail, "M365", "app-shared")
    for email in (ALICE, BOB):
        org.mailbox(email, "M365")

    summary = org.test_enable(ALICE, BOB)
    assert (summary.tested, summary.passed) == (2, 2)
    assert oauth_mail.provider.requests_of("app-shared") == 1

    org.test_enable(ALICE, BOB)
    assert oauth_mail.provider.requests_of("app-shared") == 1, "still valid: reused"


def test_processing_renews_the_token_before_it_expires_between_cycles(org: Org, oauth_mail: OAuthMail):
    oauth_mail.provider.register(TENANT, "app-renewed", secret=SECRET)
    oauth_mail.provider.token_lifetime = 2
    try:
        oauth_profile(org, oauth_mail, "M365", "app-renewed", verify_delivery=False)
        org.mailbox(ALICE, "M365", outgoing_method="none")
        assert org.test_enable(ALICE).passed == 1
        first = SyncRunner(org.store, clock=org.clock).run_once([ALICE], ignore_interval=True)
        assert [(m.email, m.ok) for m in first.mailboxes] == [(ALICE, True)]
        assert oauth_mail.provider.requests_of("app-renewed") == 1, "the cycle used the test's token"
        time.sleep(1.2)  # past half the token's life: renewed while the old one is still valid
        second = SyncRunner(org.store, clock=org.clock).run_once([ALICE], ignore_interval=True)
        assert [(m.email, m.ok, m.error_code) for m in second.mailboxes] == [(ALICE, True, None)]
        assert oauth_mail.provider.requests_of("app-renewed") == 2
    finally:
        oauth_mail.provider.token_lifetime = 3600


def test_a_wrong_client_secret_fails_for_good_before_any_mail_server_is_contacted(org: Org, oauth_mail: OAuthMail):
    oauth_mail.provider.register(TENANT, "app-rejected", secret=SECRET)
    oauth_profile(org, oauth_mail, "M365", "app-rejected", secret="an-old-secret-value")
    org.mailbox(ALICE, "M365")
    introspections = oauth_mail.provider.introspections

    summary = org.test_enable(ALICE)

    assert (summary.failed, summary.postponed) == (1, 0)
    assert codes(org, ALICE) == {"incoming": "OAUTH_CLIENT_REJECTED", "outgoing": "OAUTH_CLIENT_REJECTED"}
    assert [step for step, _ in steps(org, ALICE, "incoming")] == ["oauth_token"]
    row = org.row(ALICE)
    assert (row.incoming_enabled, row.outgoing_enabled, row.transient_failures) == (False, False, 0)
    assert "AADSTS7000215" in row.last_error_text and "mbxtui profile set-oauth" in row.last_error_text
    assert {alert.code for alert in org.alerts(ALICE, level="error")} == {"OAUTH_CLIENT_REJECTED"}
    assert oauth_mail.provider.introspections == introspections, "no token reached a mail server"


def test_the_provider_down_is_transient_and_retried(org: Org, oauth_mail: OAuthMail):
    oauth_mail.provider.register(TENANT, "app-down", secret=SECRET)
    oauth_profile(org, oauth_mail, "M365", "app-down")
    org.mailbox(ALICE, "M365")
    oauth_mail.provider.unavailable = True
    try:
        summary = org.test_enable(ALICE)
    finally:
        oauth_mail.provider.unavailable = False

    assert (summary.tested, summary.postponed) == (1, 1)
    assert codes(org, ALICE) == {"incoming": "OAUTH_PROVIDER_UNREACHABLE", "outgoing": "OAUTH_PROVIDER_UNREACHABLE"}
    row = org.row(ALICE)
    assert row.transient_failures == 1 and row.postponed_until is not None
    assert {alert.code for alert in org.alerts(ALICE, level="warning")} == {"OAUTH_PROVIDER_UNREACHABLE"}
    assert not org.alerts(ALICE, level="error")

    tokens.forget_tokens()
    org.clock.advance(minutes=5)
    summary = org.runner().run()
    assert (summary.tested, summary.passed) == (1, 1), "the retry gets its token once the provider is back"


def test_a_token_the_mail_server_refuses_is_a_missing_permission_and_is_not_sent_again(org: Org, oauth_mail: OAuthMail):
    oauth_mail.provider.register(TENANT, "app-smtp-only", secret=SECRET, roles=(SMTP_ROLE,))
    oauth_profile(org, oauth_mail, "M365", "app-smtp-only")
    org.mailbox(ALICE, "M365")

    org.test_enable(ALICE)

    assert codes(org, ALICE) == {"incoming": "OAUTH_PERMISSION_MISSING"}
    text = org.row(ALICE).last_error_text
    assert IMAP_ROLE in text and "Add-MailboxPermission" in text
    assert org.row(ALICE).outgoing_enabled and not org.row(ALICE).incoming_enabled

    # Granted since: the refused token was forgotten, the next test carries a new one with the role.
    oauth_mail.provider.clients[(TENANT, "app-smtp-only")].roles = (IMAP_ROLE, SMTP_ROLE)
    assert org.test_enable(ALICE).passed == 1
    assert oauth_mail.provider.requests_of("app-smtp-only") == 2


def test_a_changed_tenant_withholds_the_client_secret_until_confirmed(org: Org, oauth_mail: OAuthMail):
    oauth_mail.provider.register(TENANT, "app-moved", secret=SECRET)
    oauth_profile(org, oauth_mail, "M365", "app-moved")
    org.mailbox(ALICE, "M365")
    profiles.update(org.admin, "M365", oauth_tenant="another-tenant")

    org.test_enable(ALICE)

    assert codes(org, ALICE) == {"incoming": "NO_CREDENTIALS", "outgoing": "NO_CREDENTIALS"}
    assert "mbxtui profile confirm-secret M365" in org.row(ALICE).last_error_text
    assert oauth_mail.provider.requests_of("app-moved") == 0


def test_the_token_and_the_client_secret_never_reach_the_database_logs_or_output(org: Org, oauth_mail: OAuthMail):
    oauth_mail.provider.register(TENANT, "app-leak", secret=SECRET)
    oauth_profile(org, oauth_mail, "M365", "app-leak")
    org.mailbox(ALICE, "M365")
    log = org.workdir / "mbxtui.log"

    runs = [org.cli("--log-file", str(log), "test-enable", ALICE, "--wait", "--json"),
            org.cli("--log-file", str(log), "sync", "--once", "--now", "--json"),
            org.cli("--log-file", str(log), "mailbox", "show", ALICE, "--json"),
            org.cli("--log-file", str(log), "profile", "show", "M365", "--json"),
            org.cli("--log-file", str(log), "alerts", "list", "--json"),
            org.cli("--log-file", str(log), "audit", "list", "--json")]

    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[1].returncode == 0, runs[1].stderr
    assert [(r["email"], r["ok"]) for r in json.loads(runs[1].stdout)["results"]] == [(ALICE, True)], "processing"
    issued = list(oauth_mail.provider.issued)  # this test's tokens, and those of the tests before it
    assert oauth_mail.provider.requests_of("app-leak") == 2, "test-enable and sync each fetched their own token"
    places = {f"{' '.join(run.args[3:6])} {stream}": text.encode()
              for run in runs for stream, text in (("stdout", run.stdout), ("stderr", run.stderr))}
    places["log file"] = log.read_bytes()
    places["database"] = stored_bytes(org.db_path)
    for secret in [SECRET, *issued]:
        for place, content in places.items():
            assert secret.encode() not in content, f"a secret in the {place}"


def test_a_profile_test_checks_that_the_provider_gives_its_client_a_token(org: Org, oauth_mail: OAuthMail):
    oauth_mail.provider.register(TENANT, "app-profile-test", secret=SECRET)
    oauth_profile(org, oauth_mail, "M365", "app-profile-test")
    checked = check_profile(org.admin, "M365", org.store)
    assert checked.passed and list(checked.directions) == ["oauth2", "incoming", "outgoing"]
    assert [step["step"] for step in checked.directions["oauth2"]["steps"]] == ["oauth_token"]

    credentials.set_profile_oauth(org.admin, "M365", "client_secret", "a-wrong-secret", org.store)
    checked = check_profile(org.admin, "M365", org.store)
    assert not checked.passed
    assert checked.directions["oauth2"]["failure"]["code"] == "OAUTH_CLIENT_REJECTED"
