"""A mailbox with its own OAuth2 authorization (``mbxtui mailbox authorize``, issue 13): the
device-code flow against the lab's local HTTPS provider (tests/lab/oauth_provider.py: device
authorization, refresh with rotation, revocation), then Test & Enable and processing logging in with
XOAUTH2 as the mailbox at the lab's OAuth Dovecot and SMTP server, which check the delegated token by
introspection at the same provider."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from mbxtui.core.jobs import queue as jobs
from mbxtui.core.models import Alert, AuditEntry, MailboxAuthorization
from mbxtui.core.oauth import delegated, tokens
from mbxtui.core.oauth.delegated import DeviceCode
from mbxtui.core.oauth.settings import settings_of
from mbxtui.core.oauth.tokens import TokenError
from mbxtui.core.probes.base import ErrorCode
from mbxtui.core.secret_value import Secret
from mbxtui.core.services import authorizations, credentials, profiles
from mbxtui.core.services.authorizations import AuthorizationFailed
from mbxtui.core.sync.runner import SyncRunner
from tests.integration.conftest import Org, stored_bytes
from tests.lab.oauth_fixtures import oauth_mail  # noqa: F401  (fixture)
from tests.lab.oauth_mail import OAuthMail

pytestmark = pytest.mark.servers

ALICE = "alice@example.test"
BOB = "bob@example.test"
CLIENT = "mbxtui-device-app"  # a public client: no secret, as a device's app registration is
TENANT = "5b1f0c2e-delegated-lab"


@pytest.fixture(autouse=True)
def fresh_provider(oauth_mail: OAuthMail) -> Iterator[None]:
    provider = oauth_mail.provider
    provider.register(TENANT, CLIENT)
    tokens.forget_tokens()
    delegated.forget_tokens()
    yield
    tokens.forget_tokens()
    delegated.forget_tokens()
    provider.device_lifetime, provider.device_interval, provider.slow_down_polls = 600, 1, 0
    provider.refresh_token_expires_in = None


def delegated_profile(org: Org, oauth: OAuthMail, name: str = "Delegated", **fields: object) -> None:
    values = {"incoming_port": oauth.ports["imaps"], "outgoing_port": oauth.ports["smtp"],
              "incoming_auth": "oauth2", "outgoing_auth": "oauth2", "oauth_provider": "generic",
              "oauth_issuer": f"{oauth.provider.url}/generic", "oauth_client_id": CLIENT, **fields}
    org.profile(name, **values)


def approving(oauth: OAuthMail, email: str, after: float = 0.0, codes: list[DeviceCode] | None = None):
    """What ``mailbox authorize`` shows the code with: here the person approves it, ``after`` seconds later."""
    def on_code(code: DeviceCode) -> None:
        if codes is not None:
            codes.append(code)
        threading.Timer(after, oauth.provider.approve, (code.user_code, email)).start()

    return on_code


def refresh_token_of(org: Org, email: str) -> str | None:
    return org.store.get(credentials.secret_key("mailbox", org.row(email).id, delegated.REFRESH_TOKEN))


def sync(org: Org, *emails: str):
    return {m.email: m for m in SyncRunner(org.store, clock=org.clock).run_once(list(emails),
                                                                                 ignore_interval=True).mailboxes}


def codes_of(org: Org, email: str) -> dict[str, str]:
    result = jobs.last_result(org.row(email).id)
    return {direction: probe["failure"]["code"] for direction, probe in result.directions.items() if probe["failure"]}


def test_authorize_then_test_and_enable_and_processing_log_in_as_the_mailbox(org: Org, oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail)
    org.mailbox(ALICE, "Delegated")
    shown: list[DeviceCode] = []

    done = authorizations.authorize(org.admin, ALICE, org.store, approving(oauth_mail, ALICE, 1.5, shown))

    flow = oauth_mail.provider.device(shown[0].user_code)
    assert flow.polls >= 2 and flow.redeemed, "it waited while the approval was pending"
    assert shown[0].verification_uri.startswith(oauth_mail.provider.url)
    assert refresh_token_of(org, ALICE) in oauth_mail.provider.live_refresh_tokens(ALICE)
    record = MailboxAuthorization.get(MailboxAuthorization.mailbox == org.row(ALICE).id)
    assert (record.authorized_by, record.last_refresh_error) == (org.admin.login, None)
    assert done.refresh_expires_on is not None

    summary = org.test_enable(ALICE)
    assert (summary.tested, summary.passed) == (1, 1), codes_of(org, ALICE)
    cycled = sync(org, ALICE)
    assert cycled[ALICE].ok, cycled[ALICE].error


def test_a_rotated_refresh_token_is_saved_at_once_and_the_old_one_is_refused(org: Org, oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail)
    org.mailbox(ALICE, "Delegated")
    authorizations.authorize(org.admin, ALICE, org.store, approving(oauth_mail, ALICE))
    first = refresh_token_of(org, ALICE)
    refreshes = oauth_mail.provider.refreshes

    assert org.test_enable(ALICE).passed == 1, codes_of(org, ALICE)
    second = refresh_token_of(org, ALICE)
    assert oauth_mail.provider.refreshes == refreshes + 1
    assert second != first and second in oauth_mail.provider.live_refresh_tokens(ALICE)
    assert first in oauth_mail.provider.refused_refresh_tokens

    delegated.forget_tokens()  # a new process: only the keyring remembers
    assert sync(org, ALICE)[ALICE].ok, "the saved refresh token works"
    assert oauth_mail.provider.refreshes == refreshes + 2
    settings = settings_of(profiles.get("Delegated"))
    assert settings is not None
    with pytest.raises(TokenError) as refused:
        delegated.refresh(settings, ALICE, Secret(first or ""))
    assert refused.value.code == ErrorCode.OAUTH_REAUTHORIZE
    record = MailboxAuthorization.get(MailboxAuthorization.mailbox == org.row(ALICE).id)
    assert record.last_refresh_error is None and record.last_refresh_on is not None


def test_a_refresh_token_read_before_another_thread_rotated_it_is_not_sent(org: Org, oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail)
    org.mailbox(ALICE, "Delegated")
    authorizations.authorize(org.admin, ALICE, org.store, approving(oauth_mail, ALICE))
    read_early = Secret(refresh_token_of(org, ALICE) or "")
    settings = settings_of(profiles.get("Delegated"))
    assert settings is not None
    mailbox_id = org.row(ALICE).id
    saved: list[Secret] = []

    first = delegated.token(settings, mailbox_id, ALICE, read_early, saved.append)
    delegated.discard(settings, mailbox_id, first)  # the mail server refused it: the next one is refreshed
    second = delegated.token(settings, mailbox_id, ALICE, read_early, saved.append)

    assert second.reveal() != first.reveal()
    assert len(saved) == 2 and saved[-1].reveal() in oauth_mail.provider.live_refresh_tokens(ALICE)
    assert read_early.reveal() in oauth_mail.provider.refused_refresh_tokens


def test_a_revoked_authorization_is_oauth_reauthorize_with_the_command_and_others_go_on(org: Org,
                                                                                      oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail)
    org.mailbox(ALICE, "Delegated")
    org.mailbox(BOB, "Delegated")
    for email in (ALICE, BOB):
        authorizations.authorize(org.admin, email, org.store, approving(oauth_mail, email))
    assert org.test_enable(ALICE, BOB).passed == 2

    assert oauth_mail.provider.revoke_user(ALICE) >= 1
    delegated.forget_tokens()
    cycled = sync(org, ALICE, BOB)

    assert cycled[BOB].ok, cycled[BOB].error
    assert (cycled[ALICE].ok, cycled[ALICE].error_code) == (False, "OAUTH_REAUTHORIZE")
    sentence = f"authorize it again with `mbxtui mailbox authorize {ALICE}`"
    assert sentence in (cycled[ALICE].error or "")
    row = org.row(ALICE)
    assert (row.incoming_enabled, row.last_error_code) == (False, "OAUTH_REAUTHORIZE"), "a permanent failure"
    assert sentence in [a.text for a in org.alerts(ALICE, code="OAUTH_REAUTHORIZE")][-1]
    record = MailboxAuthorization.get(MailboxAuthorization.mailbox == row.id)
    assert sentence in (record.last_refresh_error or "")
    assert org.row(BOB).incoming_enabled
    [lost] = AuditEntry.select().where(AuditEntry.action == "mailbox.authorization_lost")
    assert lost.summary.startswith("worker ") and f"mailbox {ALICE} refused" in lost.summary
    assert "OAUTH_REAUTHORIZE" in lost.summary and sentence in lost.summary
    delegated.forget_tokens()
    assert org.test_enable(ALICE).passed == 0
    assert AuditEntry.select().where(AuditEntry.action == "mailbox.authorization_lost").count() == 1, "once a loss"

    authorizations.authorize(org.admin, ALICE, org.store, approving(oauth_mail, ALICE))
    assert org.test_enable(ALICE).passed == 1, "authorized again, it works again"


def test_a_warning_alert_comes_days_before_the_refresh_token_can_expire(org: Org, oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail)
    org.mailbox(ALICE, "Delegated")
    org.mailbox(BOB, "Delegated")
    oauth_mail.provider.refresh_token_expires_in = int(timedelta(days=30).total_seconds())
    authorizations.authorize(org.admin, BOB, org.store, approving(oauth_mail, BOB))
    oauth_mail.provider.refresh_token_expires_in = int(timedelta(days=5).total_seconds())
    authorizations.authorize(org.admin, ALICE, org.store, approving(oauth_mail, ALICE))

    sync(org, ALICE, BOB)  # a pass warns once; its refreshes moved nothing past the warning days
    sync(org, ALICE, BOB)

    warnings = Alert.select().where(Alert.code == authorizations.EXPIRING)
    assert [(a.mailbox_id, a.level) for a in warnings] == [(org.row(ALICE).id, "warning")]
    assert f"renew it before then with `mbxtui mailbox authorize {ALICE}`" in warnings[0].text


def test_a_code_that_expires_unapproved_stores_nothing(org: Org, oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail)
    org.mailbox(ALICE, "Delegated")
    oauth_mail.provider.device_lifetime = 2

    with pytest.raises(AuthorizationFailed) as failed:
        authorizations.authorize(org.admin, ALICE, org.store, lambda code: None)

    assert str(failed.value).startswith("the code expired before it was entered and approved: nothing was stored")
    assert refresh_token_of(org, ALICE) is None
    assert MailboxAuthorization.select().count() == 0 and not org.row(ALICE).token_set


def test_slow_down_makes_the_device_flow_poll_five_seconds_slower(org: Org, oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail)
    org.mailbox(ALICE, "Delegated")
    oauth_mail.provider.slow_down_polls = 1
    oauth_mail.provider.device_lifetime = 20  # a client that kept its pace would be slowed down until then
    shown: list[DeviceCode] = []

    started = time.monotonic()
    authorizations.authorize(org.admin, ALICE, org.store, approving(oauth_mail, ALICE, 0.0, shown))

    flow = oauth_mail.provider.device(shown[0].user_code)
    assert (flow.slowed_down, flow.redeemed) == (1, True)
    assert time.monotonic() - started >= 6


def test_a_microsoft365_profile_authorizes_through_msal(org: Org, oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail, "M365", oauth_provider="microsoft365", oauth_tenant=TENANT,
                      oauth_issuer=oauth_mail.provider.url)
    org.mailbox(ALICE, "M365")

    authorizations.authorize(org.admin, ALICE, org.store, approving(oauth_mail, ALICE, 1.5))
    delegated.forget_tokens()

    assert org.test_enable(ALICE).passed == 1, codes_of(org, ALICE)
    assert oauth_mail.provider.refreshes >= 1 and refresh_token_of(org, ALICE) in \
        oauth_mail.provider.live_refresh_tokens(ALICE)


def _started_authorize(org: Org, *options: str, json_output: bool = False):
    process = org.cli_start(*options, "mailbox", "authorize", ALICE, *(["--json"] if json_output else []))
    assert process.stdout is not None
    return process, process.stdout.readline()


def test_ctrl_c_while_waiting_stores_nothing_and_says_so(org: Org, oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail)
    org.mailbox(ALICE, "Delegated")

    process, first = _started_authorize(org)
    assert "enter the code" in first, first
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)

    assert process.returncode == 130
    assert err.strip() == (f"mbxtui: the authorization of {ALICE} was interrupted before it was approved: nothing "
                           f"was stored; run `mbxtui mailbox authorize {ALICE}` again to start over")
    assert refresh_token_of(org, ALICE) is None and MailboxAuthorization.select().count() == 0


def test_no_refresh_or_access_token_reaches_the_database_the_log_or_any_output(org: Org, oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail)
    org.mailbox(ALICE, "Delegated")
    log = org.workdir / "mbxtui.log"

    process, first = _started_authorize(org, "--log-file", str(log), json_output=True)
    code = json.loads(first)
    oauth_mail.provider.approve(code["user_code"], ALICE)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert json.loads(out)["authorized"] is True
    runs = [org.cli("--log-file", str(log), "test-enable", ALICE, "--wait", "--json"),
            org.cli("--log-file", str(log), "sync", "--once", "--now", "--json"),
            org.cli("--log-file", str(log), "mailbox", "show", ALICE, "--json"),
            org.cli("--log-file", str(log), "alerts", "list", "--json"),
            org.cli("--log-file", str(log), "audit", "list", "--json")]
    assert all(run.returncode == 0 for run in runs), [run.stderr for run in runs]
    assert [(r["email"], r["ok"]) for r in json.loads(runs[1].stdout)["results"]] == [(ALICE, True)]

    provider = oauth_mail.provider
    secrets = [*provider.issued, *provider.live_refresh_tokens(ALICE), *provider.refused_refresh_tokens,
               *(flow.device_code for flow in provider.devices.values())]
    assert len(provider.refused_refresh_tokens) >= 1, "the sync rotated a refresh token"
    places = {f"{' '.join(run.args[3:6])} {stream}": text.encode()
              for run in runs for stream, text in (("stdout", run.stdout), ("stderr", run.stderr))}
    places.update({"authorize stdout": (first + out).encode(), "authorize stderr": err.encode(),
                   "log file": log.read_bytes(), "database": stored_bytes(org.db_path)})
    for secret in secrets:
        for place, content in places.items():
            assert secret.encode() not in content, f"a token in the {place}"
