"""The demo's mailbox whose app grant is missing authorizes itself: `mbxtui mailbox authorize` runs
the device-code flow against the demo's identity provider, the person approves the code on the
provider's sign-in page, Test & Enable then passes on the mailbox's own token (its refresh token
rotated and the old one refused), and `mbxtui mailbox deauthorize` takes it back. The generic
realm of the same provider revokes a grant at its RFC 7009 endpoint when it is taken back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import requests

from mbxtui.core.jobs import queue as jobs
from mbxtui.core.jobs.runner import EnablementRunner
from mbxtui.core.models import AuditEntry, Mailbox, MailboxAuthorization
from mbxtui.core.oauth import delegated
from mbxtui.core.oauth.settings import settings_of
from mbxtui.core.secret_value import Secret
from mbxtui.core.secret_keys import secret_key
from mbxtui.core.secrets import KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV
from mbxtui.core.services import authorizations, enablement, mailboxes, profiles
from mbxtui.core.services.selection import Selection
from mbxtui.demo import DEMO_MASTER_PASSWORD, MAILBOX_PASSWORD, Demo, seed
from mbxtui.demo import identity_provider
from mbxtui.demo.certs import CA_FILE_NAME

REPO_ROOT = Path(__file__).resolve().parents[2]
NOOR = seed.plan().ungranted


def approve(demo: Demo, verification_uri: str, user_code: str, login: str = NOOR) -> requests.Response:
    """The person at the provider's sign-in page."""
    assert verification_uri == f"{demo.ports.oauth_url}{identity_provider.SIGN_IN_PAGE}"
    ca = str(demo.directory / CA_FILE_NAME)
    assert "Enter the code" in requests.get(verification_uri, verify=ca, timeout=10).text
    return requests.post(verification_uri, data={"code": user_code, "login": login, "password": MAILBOX_PASSWORD,
                                                 "decision": "approve"}, verify=ca, timeout=10)


def cli(demo: Demo, *args: str) -> subprocess.Popen:
    environment = {**os.environ, "MBXTUI_DB": str(demo.db_path), "MBXTUI_DATA_DIR": str(demo.directory),
                   KEYRING_CHOICE_ENV: "file", MASTER_PASSWORD_ENV: DEMO_MASTER_PASSWORD}
    return subprocess.Popen([sys.executable, "-m", "mbxtui", *args], env=environment, cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def refresh_token_of(demo: Demo) -> str | None:
    mailbox = Mailbox.get(Mailbox.email == NOOR)
    return demo.store.get(secret_key("mailbox", mailbox.id, delegated.REFRESH_TOKEN))


def test_the_ungranted_mailbox_authorizes_itself_passes_test_and_enable_and_is_deauthorized(restarted_demo: Demo):
    demo = restarted_demo
    demo.sandbox._identity_provider.delegations.interval = 1  # Entra ID's 5 s would cost the test 5 s
    authorizing = cli(demo, "mailbox", "authorize", NOOR, "--json")
    try:
        shown = json.loads(authorizing.stdout.readline())
        answer = approve(demo, shown["verification_uri"], shown["user_code"])
        assert answer.status_code == 200 and f"Signed in as {NOOR}" in answer.text
        out, err = authorizing.communicate(timeout=30)
    finally:
        authorizing.kill()
    assert authorizing.returncode == 0, out + err
    assert '"authorized": true' in out
    first = refresh_token_of(demo)
    assert first and first not in out + err
    assert MailboxAuthorization.get(MailboxAuthorization.mailbox == Mailbox.get(Mailbox.email == NOOR).id)

    delegated.forget_tokens()
    enablement.schedule(demo.actor, Selection.of_emails([NOOR]))
    summary = EnablementRunner(demo.store, threads=2).run(until_idle=True)

    result = jobs.last_result(Mailbox.get(Mailbox.email == NOOR).id)
    assert (summary.tested, summary.passed) == (1, 1), result.directions
    rotated = refresh_token_of(demo)
    assert rotated and rotated != first, "the rotated refresh token was saved"
    ca = str(demo.directory / CA_FILE_NAME)
    token_url = f"{demo.ports.oauth_url}/{identity_provider.TENANT}/oauth2/v2.0/token"
    refused = requests.post(token_url, data={"grant_type": "refresh_token", "refresh_token": first,
                                             "client_id": identity_provider.CLIENT_ID}, verify=ca, timeout=10)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant"), "rotated away"

    taking_back = cli(demo, "mailbox", "deauthorize", NOOR)
    out, err = taking_back.communicate(timeout=30)
    assert taking_back.returncode == 0, out + err
    assert "deauthorized" in out and "Microsoft 365 offers no endpoint to revoke" in out
    assert refresh_token_of(demo) is None
    audit = AuditEntry.select().where(AuditEntry.action == "mailbox.deauthorize").order_by(AuditEntry.id.desc()).first()
    assert audit is not None and "not revocable" in audit.summary


def test_a_mailbox_on_a_generic_profile_of_the_demo_provider_is_deauthorized_with_an_rfc_7009_revocation(
        restarted_demo: Demo):
    """The same provider as a generic OpenID Connect issuer names a revocation endpoint, which Entra
    ID does not: `mailbox deauthorize` revokes the grant there, and the sandbox stops taking its tokens."""
    demo = restarted_demo
    ports = demo.ports
    profiles.create(demo.actor, name="Fernhill SSO", type="imap_smtp", incoming_host="127.0.0.1",
                    incoming_port=ports.imaps, incoming_tls="implicit", incoming_auth="oauth2",
                    outgoing_host="127.0.0.1", outgoing_port=ports.submission, outgoing_tls="starttls",
                    outgoing_auth="oauth2", oauth_provider="generic", oauth_client_id=identity_provider.CLIENT_ID,
                    oauth_issuer=f"{ports.oauth_url}/{identity_provider.GENERIC}",
                    ca_file=str(demo.directory / CA_FILE_NAME))
    mailboxes.edit(demo.actor, NOOR, profile="Fernhill SSO", store=lambda: demo.store)
    answers: list[requests.Response] = []
    authorizations.authorize(demo.actor, NOOR, demo.store,
                             lambda code: answers.append(approve(demo, code.verification_uri, code.user_code)))
    assert answers[0].status_code == 200
    mailbox_id = Mailbox.get(Mailbox.email == NOOR).id
    key = secret_key("mailbox", mailbox_id, delegated.REFRESH_TOKEN)
    delegated.forget_tokens()
    access = delegated.token(settings_of(profiles.get("Fernhill SSO")), mailbox_id, NOOR,
                             Secret(refresh_token_of(demo)), lambda rotated: demo.store.set(key, rotated.reveal()))
    mail = demo.sandbox.mail
    assert mail.check_token(NOOR, access.reveal()), "a delegated token acts for its own mailbox"
    assert not mail.check_token(seed.plan().groups[seed.EXCHANGE_OAUTH][0], access.reveal()), "and no other"

    done = authorizations.deauthorize(demo.actor, NOOR, demo.store)

    assert done.revoked is True, done.revocation
    assert done.revocation == f"the grant was revoked at {ports.oauth_url}/{identity_provider.GENERIC}/revoke"
    assert demo.sandbox._identity_provider.delegations.live_grants(NOOR) == 0
    assert not mail.check_token(NOOR, access.reveal()), "RFC 7009 2.1: the grant's access tokens end with it"
    delegated.forget_tokens()
