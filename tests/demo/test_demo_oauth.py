"""The demo's Exchange Online (OAuth2) profile: msal, unmodified, gets app-only tokens from the
demo's own identity provider (HTTPS on 127.0.0.1, the demo CA), the sandbox's IMAP and SMTP take
them by XOAUTH2 for the mailboxes the app was granted, and refuse the one it was not as Exchange
Online does; and `profile detect` finds the sandbox's servers through the demo's DNS server."""

from __future__ import annotations

import base64
import imaplib
import json
import os
import shlex
import smtplib
import ssl
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import jwt
import pytest

from mbxtui.core.jobs import queue as jobs
from mbxtui.core.jobs.runner import EnablementRunner
from mbxtui.core.models import Alert, EmailActivity, Mailbox, Profile
from mbxtui.core.oauth import tokens
from mbxtui.core.permissions import SYSTEM
from mbxtui.core.secrets import KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV
from mbxtui.core.services import bulk, credentials, enablement, mailbox_views, profiles
from mbxtui.core.services.selection import Selection
from mbxtui.core.sync.runner import SyncRunner
from mbxtui.demo import DEMO_MASTER_PASSWORD, SERVERS_LOG_NAME, Demo, detect_command, seed
from mbxtui.demo import identity_provider
from mbxtui.demo.certs import CA_FILE_NAME

REPO_ROOT = Path(__file__).resolve().parents[2]
ORGANISATION = seed.plan()
GRANTED = [email for email in ORGANISATION.groups[seed.EXCHANGE_OAUTH] if email != ORGANISATION.ungranted]


def row(email: str) -> Mailbox:
    return Mailbox.get(Mailbox.email == email)


def failures(email: str) -> dict[str, tuple[str, str] | None]:
    result = jobs.last_result(row(email).id)
    assert result is not None, f"{email} has no finished test"
    return {direction: (probe["failure"]["code"], probe["failure"]["message"]) if probe["failure"] else None
            for direction, probe in result.directions.items()}


def leaked(demo: Demo, outputs: list[str] = (), also: list[str] = ()) -> list[str]:
    """Where the client secret (or ``also``) or a token the provider issued appears: the database
    (with its WAL), the servers' log, the given outputs."""
    secrets = [identity_provider.CLIENT_SECRET, *also, *demo.sandbox.mail.oauth.issued_tokens()]
    places = {path.name: path.read_bytes() for path in demo.directory.iterdir()
              if path.name.startswith(demo.db_path.name) or path.name.startswith(SERVERS_LOG_NAME)}
    places.update({f"output {number}": text.encode() for number, text in enumerate(outputs)})
    return [f"{'a token' if secret not in (secrets[0], *also) else 'a client secret'} in {place}"
            for secret in secrets for place, content in places.items() if secret.encode() in content]


def test_the_oauth_profile_takes_its_tokens_from_the_demo_provider_with_a_secret_kept_in_the_keyring(demo: Demo):
    profile = Profile.get(Profile.name == seed.EXCHANGE_OAUTH)
    assert (profile.type, profile.incoming_auth, profile.outgoing_auth) == ("imap_smtp", "oauth2", "oauth2")
    assert (profile.oauth_provider, profile.oauth_tenant, profile.oauth_client_id, profile.oauth_issuer) == (
        "microsoft365", identity_provider.TENANT, identity_provider.CLIENT_ID, demo.ports.oauth_url)
    assert profile.oauth_credential == "client_secret" and not profile.token_set, "no token pasted by hand"
    assert profiles.show(SYSTEM, seed.EXCHANGE_OAUTH).secret_endpoint == "confirmed"
    stored = demo.store.get(credentials.secret_key("profile", profile.id, credentials.OAUTH_CREDENTIAL))
    assert stored == identity_provider.CLIENT_SECRET, "set as `profile set-oauth` sets it: in the keyring"
    assert demo.sandbox.mail.oauth.issued_tokens(), "the first Test & Enable got tokens from the provider"
    assert leaked(demo) == []


def test_the_first_test_and_enable_enables_the_granted_mailboxes_and_fails_the_ungranted_one(demo: Demo):
    assert len(GRANTED) == seed.OAUTH_USERS - 1
    for email in GRANTED:
        assert failures(email) == {"incoming": None, "outgoing": None}, email
        mailbox = row(email)
        assert (mailbox.incoming_enabled, mailbox.outgoing_enabled, mailbox.overall_status) == (True, True, "success")
        steps = jobs.last_result(mailbox.id).directions["incoming"]["steps"]
        assert ("authenticate", f"as {email}") in [(step["step"], step["detail"]) for step in steps]

    ungranted = ORGANISATION.ungranted
    found = failures(ungranted)
    assert {direction: code for direction, (code, _) in found.items()} == {
        "incoming": "OAUTH_PERMISSION_MISSING", "outgoing": "OAUTH_PERMISSION_MISSING"}
    assert "server said: AUTHENTICATE failed." in found["incoming"][1]
    assert "IMAP.AccessAsApp" in found["incoming"][1] and "Add-MailboxPermission" in found["incoming"][1]
    assert "535 5.7.3" in found["outgoing"][1]
    mailbox = row(ungranted)
    assert (mailbox.incoming_enabled, mailbox.overall_status, mailbox.postponed_until) == (False, "failure", None)

    failed_view = mailbox_views.list_mailboxes(SYSTEM, view="failed", filter_text=ungranted)
    assert [r["email"] for r in failed_view.rows] == [ungranted], "in Test and Enable Failed"
    alert = Alert.get((Alert.mailbox == mailbox.id) & (Alert.dismissed == False))  # noqa: E712
    assert (alert.level, alert.code) == ("error", "OAUTH_PERMISSION_MISSING")
    assert "refused the OAuth2 token the provider issued" in alert.text


def test_test_and_enable_again_after_a_restart_fetches_a_token_from_the_provider_on_its_new_port(
        first_start, restarted_demo: Demo):
    tokens.forget_tokens()
    assert Profile.get(Profile.name == seed.EXCHANGE_OAUTH).oauth_issuer == restarted_demo.ports.oauth_url
    assert restarted_demo.ports.oauth != first_start.demo.ports.oauth
    assert restarted_demo.sandbox.mail.oauth.issued_tokens() == []
    group = ORGANISATION.groups[seed.EXCHANGE_OAUTH]
    enablement.schedule(restarted_demo.actor, Selection.of_emails(group))

    summary = EnablementRunner(restarted_demo.store, threads=8).run(until_idle=True)

    assert (summary.tested, summary.passed) == (len(group), len(GRANTED))
    issued = len(restarted_demo.sandbox.mail.oauth.issued_tokens())
    # One token shared by the profile's mailboxes; a refused token is forgotten, so the ungranted
    # mailbox's two refusals may each cost one more.
    assert 1 <= issued <= 3, f"{issued} tokens for {len(group)} mailboxes"
    assert all(failures(email) == {"incoming": None, "outgoing": None} for email in GRANTED)
    assert {code for code, _ in failures(ORGANISATION.ungranted).values()} == {"OAUTH_PERMISSION_MISSING"}
    assert leaked(restarted_demo) == []


def test_a_sync_cycle_reads_a_granted_mailbox_over_xoauth2(restarted_demo: Demo):
    tokens.forget_tokens()
    reader = GRANTED[0]
    bulk.bulk_edit(restarted_demo.actor, Selection.of_emails([reader]), tracking="all")  # R27: every message
    soon = format_datetime(datetime.now(timezone.utc) + timedelta(minutes=1))
    restarted_demo.sandbox.mail.deliver(reader, (
        f"From: buyer@outside.test\r\nTo: {reader}\r\nSubject: Purchase order 4471\r\n"
        f"Message-ID: <demo-oauth-sync@outside.test>\r\nDate: {soon}\r\n\r\nPlease confirm.\r\n").encode())

    [cycle] = SyncRunner(restarted_demo.store, threads=2).run_once([reader], ignore_interval=True).mailboxes

    assert (cycle.ok, cycle.error_code) == (True, None) and cycle.messages >= 1, cycle
    activities = EmailActivity.select().where(EmailActivity.message_id.contains("demo-oauth-sync@outside.test"))
    assert [(a.subject, a.direction) for a in activities] == [("Purchase order 4471", "incoming")], cycle
    assert restarted_demo.sandbox.mail.oauth.issued_tokens(), "the cycle logged in with the provider's token"
    assert leaked(restarted_demo) == []


def test_a_wrong_client_secret_is_refused_by_the_provider_with_oauth_client_rejected(restarted_demo: Demo):
    tokens.forget_tokens()
    wrong = "Fhl8Q~an-expired-secret_9Xz"
    credentials.set_profile_oauth(restarted_demo.actor, seed.EXCHANGE_OAUTH, "client_secret", wrong,
                                  restarted_demo.store)
    enablement.schedule(restarted_demo.actor, Selection.of_emails([GRANTED[0]]))

    EnablementRunner(restarted_demo.store, threads=2).run(until_idle=True)

    found = failures(GRANTED[0])
    assert {code for code, _ in found.values()} == {"OAUTH_CLIENT_REJECTED"}
    assert "AADSTS7000215" in found["incoming"][1] and "profile set-oauth" in found["incoming"][1]
    assert restarted_demo.sandbox.mail.oauth.issued_tokens() == []
    assert "token refused to client" in (restarted_demo.directory / SERVERS_LOG_NAME).read_text()
    assert leaked(restarted_demo, also=[wrong]) == []


def test_the_sandbox_refuses_a_token_it_did_not_issue_and_the_ungranted_mailbox(demo: Demo):
    mail = demo.sandbox.mail
    [issued] = mail.oauth.issued_tokens()[:1]
    assert mail.check_token(GRANTED[0], issued)
    assert not mail.check_token(ORGANISATION.ungranted, issued)
    claims = jwt.decode(issued, options={"verify_signature": False})
    assert (claims["aud"], claims["tid"], claims["appid"]) == (
        identity_provider.AUDIENCE, identity_provider.TENANT, identity_provider.CLIENT_ID)
    assert not mail.check_token(GRANTED[0], jwt.encode(claims, "a key of 32 bytes or more that the provider never had", algorithm="HS256"))
    assert not mail.check_token(GRANTED[0], "an opaque string")
    assert not mail.check_token("someone@elsewhere.example", issued)


def test_profile_detect_for_the_demo_domain_proposes_the_sandboxs_servers(restarted_demo: Demo):
    """The command the demo prints, as a newcomer types it (with --json, to read it here). On a copy
    of the demo: another process opens its database."""
    demo = restarted_demo
    command = detect_command(demo)
    assert command.startswith("mbxtui profile detect ") and f"127.0.0.1:{demo.ports.dns}" in command
    assert str(demo.directory / CA_FILE_NAME) in command
    environment = {**os.environ, "MBXTUI_DB": str(demo.db_path), "MBXTUI_DATA_DIR": str(demo.directory),
                   KEYRING_CHOICE_ENV: "file", MASTER_PASSWORD_ENV: DEMO_MASTER_PASSWORD}
    argv = [sys.executable, "-m", "mbxtui", *shlex.split(command)[1:]]

    shown = subprocess.run(argv, env=environment, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    found = subprocess.run([*argv, "--json"], env=environment, capture_output=True, text=True, timeout=60,
                           cwd=REPO_ROOT)

    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "SRV records: _imaps._tcp.fernhill.example: 1 record(s)" in shown.stdout
    assert f"kept       IMAP localhost:{demo.ports.imaps} implicit" in shown.stdout
    assert found.returncode == 0, found.stderr
    chosen = json.loads(found.stdout)["chosen"]
    assert {key: chosen[key] for key in ("incoming_host", "incoming_port", "outgoing_host", "outgoing_port",
                                         "incoming_source")} == {
        "incoming_host": "localhost", "incoming_port": demo.ports.imaps, "outgoing_host": "localhost",
        "outgoing_port": demo.ports.smtps, "incoming_source": "srv"}, chosen
    assert leaked(demo, [shown.stdout, shown.stderr, found.stdout, found.stderr]) == []


def test_imap_and_smtp_take_the_providers_token_by_oauthbearer_too(demo: Demo):
    """RFC 7628, as imaplib and smtplib speak it; a refused token gets the error challenge first."""
    trusting = ssl.create_default_context(cafile=str(demo.directory / CA_FILE_NAME))
    token = demo.sandbox.mail.oauth.issue(identity_provider.CLIENT_ID, identity_provider.AUDIENCE)

    def oauthbearer(user: str) -> bytes:
        return f"n,a={user},\x01auth=Bearer {token}\x01\x01".encode()

    with imaplib.IMAP4_SSL("127.0.0.1", demo.ports.imaps, ssl_context=trusting, timeout=10) as imap:
        assert "AUTH=OAUTHBEARER" in imap.capabilities
        assert imap.authenticate("OAUTHBEARER", lambda _: oauthbearer(GRANTED[0]))[0] == "OK"
    with imaplib.IMAP4_SSL("127.0.0.1", demo.ports.imaps, ssl_context=trusting, timeout=10) as imap:
        challenges: list[bytes] = []

        def refused(challenge: bytes) -> bytes:
            challenges.append(challenge)
            return b"\x01" if len(challenges) > 1 else oauthbearer(ORGANISATION.ungranted)

        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATE failed"):
            imap.authenticate("OAUTHBEARER", refused)
        assert json.loads(challenges[1])["status"] == "invalid_token"

    with smtplib.SMTP("127.0.0.1", demo.ports.submission, timeout=10) as smtp:
        smtp.starttls(context=trusting)
        smtp.ehlo()
        assert "OAUTHBEARER" in smtp.esmtp_features["auth"].split()
        initial = base64.b64encode(oauthbearer(GRANTED[0])).decode()
        # RFC 4954 4: a response too long for the command line (a token is) follows an empty 334.
        assert smtp.docmd("AUTH", "OAUTHBEARER")[0] == 334
        assert smtp.docmd(initial)[0] == 235
    with smtplib.SMTP("127.0.0.1", demo.ports.submission, timeout=10) as smtp:
        smtp.starttls(context=trusting)
        smtp.ehlo()
        refused_initial = base64.b64encode(oauthbearer(ORGANISATION.ungranted)).decode()
        assert smtp.docmd("AUTH", "OAUTHBEARER")[0] == 334
        code, challenge = smtp.docmd(refused_initial)
        assert code == 334 and json.loads(base64.b64decode(challenge))["status"] == "invalid_token"
        assert smtp.docmd(base64.b64encode(b"\x01").decode()) == (535, b"5.7.3 Authentication unsuccessful")


def test_the_sandbox_refuses_an_expired_token_and_one_for_another_audience():
    expired = identity_provider.TokenRegistry(seed.DOMAIN, lifetime=-1)
    assert not expired.allows(expired.issue(identity_provider.CLIENT_ID, identity_provider.AUDIENCE), GRANTED[0])
    registry = identity_provider.TokenRegistry(seed.DOMAIN)
    assert registry.allows(registry.issue(identity_provider.CLIENT_ID, identity_provider.AUDIENCE), GRANTED[0])
    assert not registry.allows(registry.issue(identity_provider.CLIENT_ID, "https://graph.microsoft.com"), GRANTED[0])
