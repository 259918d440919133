"""What is shown and kept of a mailbox's own OAuth2 authorization (issue 13) beside the flow itself
(tests/integration/test_oauth_delegated.py, whose lab fixtures these use): its record in
``mailbox show`` (never a token), ``profile test`` on a public client and ``profile diagnose``
choosing one of its authorized mailboxes, and clearing the mailbox's token taking its refresh token
out of the keyring and its record with it."""

from __future__ import annotations

import json

from mbxtui.core.diagnosis import diagnose_profile
from mbxtui.core.models import Mailbox, MailboxAuthorization
from mbxtui.core.oauth import delegated
from mbxtui.core.services import audit, authorizations, credentials
from tests.integration.conftest import Org
from tests.integration.test_oauth_delegated import (  # noqa: F401  (the fixtures are used by name)
    ALICE, BOB, CLIENT, approving, delegated_profile, fresh_provider, oauth_mail, refresh_token_of, sync,
)
from tests.lab.oauth_mail import OAuthMail

import pytest

pytestmark = pytest.mark.servers

STATE_KEYS = {"authorized_on", "authorized_by", "refresh_expires_on", "last_refresh_on", "last_refresh_error"}


def test_mailbox_show_gives_the_authorization_record_and_no_token(org: Org, oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail)
    org.mailbox(ALICE, "Delegated")
    org.mailbox(BOB, "Delegated")
    oauth_mail.provider.refresh_token_expires_in = 30 * 86400
    authorizations.authorize(org.admin, ALICE, org.store, approving(oauth_mail, ALICE))

    shown = org.cli("mailbox", "show", ALICE, "--json")
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)["authorization"]
    assert set(state) == STATE_KEYS
    assert (state["authorized_by"], state["last_refresh_error"]) == (org.admin.login, None)
    assert state["refresh_expires_on"] > state["authorized_on"]
    assert json.loads(org.cli("mailbox", "show", BOB, "--json").stdout)["authorization"] is None

    text = org.cli("mailbox", "show", ALICE)
    assert text.returncode == 0, text.stderr
    section = text.stdout.split("\nAuthorization\n")[1].split("\nSync\n")[0]
    assert f"{state['authorized_on']} by {org.admin.login}" in section
    assert f"refresh token can expire  {state['refresh_expires_on']}" in section
    assert "\nAuthorization\n  none\n" in org.cli("mailbox", "show", BOB).stdout
    outputs = shown.stdout + text.stdout
    for token in [*oauth_mail.provider.issued, *oauth_mail.provider.live_refresh_tokens(ALICE)]:
        assert token not in outputs


def test_a_refused_refresh_is_the_authorizations_last_refresh_error(org: Org, oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail)
    org.mailbox(ALICE, "Delegated")
    authorizations.authorize(org.admin, ALICE, org.store, approving(oauth_mail, ALICE))
    assert org.test_enable(ALICE).passed == 1
    assert authorizations.state_of(org.admin, ALICE)["last_refresh_error"] is None

    oauth_mail.provider.revoke_user(ALICE)
    delegated.forget_tokens()
    sync(org, ALICE)

    state = authorizations.state_of(org.admin, ALICE)
    assert f"authorize it again with `mbxtui mailbox authorize {ALICE}`" in (state["last_refresh_error"] or "")
    assert state["last_refresh_on"] >= state["authorized_on"]


def test_profile_test_on_a_public_client_says_what_it_checked_and_offers_the_per_mailbox_check(
        org: Org, oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail)
    org.mailbox(ALICE, "Delegated")
    org.mailbox(BOB, "Delegated")
    asked = oauth_mail.provider.requests_of(CLIENT)

    checked = org.cli("profile", "test", "Delegated", "--json")

    oauth2 = json.loads(checked.stdout)["directions"]["oauth2"]
    assert (oauth2["ok"], oauth2["failure"]) == (True, None)
    assert [step["detail"] for step in oauth2["steps"]] == [delegated.public_client_sentence("Delegated")]
    text = org.cli("profile", "test", "Delegated").stdout
    assert "has no client credential, so it acts only for mailboxes authorized one by one" in text
    assert "there is no app token to fetch for it, so its OAuth provider was not contacted" in text
    assert "none of its mailboxes is authorized yet: authorize one with `mbxtui mailbox authorize EMAIL`" in text
    assert "NO_CREDENTIALS" not in text
    assert oauth_mail.provider.requests_of(CLIENT) == asked, "nothing asked of the provider"

    authorizations.authorize(org.admin, BOB, org.store, approving(oauth_mail, BOB))
    text = org.cli("profile", "test", "Delegated").stdout
    offered = f"1 of its mailboxes are authorized: check one, its token and its logins, with " \
              f"`mbxtui profile diagnose Delegated --mailbox {BOB}`"
    assert offered in " ".join(text.split())
    diagnosed = org.cli("profile", "diagnose", "Delegated", "--mailbox", BOB)
    assert diagnosed.returncode == 0, diagnosed.stdout + diagnosed.stderr


def test_profile_diagnose_of_a_public_client_chooses_a_mailbox_with_its_own_authorization_and_says_so(
        org: Org, oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail)
    org.mailbox(ALICE, "Delegated")
    org.mailbox(BOB, "Delegated")
    Mailbox.update(incoming_enabled=True).where(Mailbox.email == ALICE).execute()  # enabled, not authorized
    authorizations.authorize(org.admin, BOB, org.store, approving(oauth_mail, BOB))

    diagnosed = diagnose_profile(org.admin, "Delegated", org.store)

    assert (diagnosed.mailbox, diagnosed.mailbox_chosen) == (
        BOB, "the profile's first approved mailbox with its own authorization, none of those being enabled")
    assert diagnosed.passed, diagnosed.as_dict()
    Mailbox.update(outgoing_enabled=True).where(Mailbox.email == BOB).execute()
    chosen = diagnose_profile(org.admin, "Delegated", org.store)
    assert (chosen.mailbox, chosen.mailbox_chosen) == (BOB, "the profile's first enabled mailbox with its own "
                                                            "authorization")


def test_clearing_the_token_takes_the_refresh_token_and_the_authorization_with_it(org: Org, oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail)
    org.mailbox(ALICE, "Delegated")
    org.mailbox(BOB, "Delegated")
    for email in (ALICE, BOB):
        authorizations.authorize(org.admin, email, org.store, approving(oauth_mail, email))

    credentials.clear_mailbox_secret(org.admin, ALICE, org.store, credentials.TOKEN)

    alice = org.row(ALICE)
    left_in_keyring = refresh_token_of(org, ALICE) is not None  # not compared: a failure would print it
    assert not left_in_keyring and not alice.token_set
    assert not MailboxAuthorization.select().where(MailboxAuthorization.mailbox == alice.id).exists()
    assert authorizations.state_of(org.admin, ALICE) is None
    assert refresh_token_of(org, BOB) and authorizations.state_of(org.admin, BOB), "only that mailbox's"
    cleared = audit.list_entries(org.admin, record_kind="mailbox", record_id=alice.id)[0]
    assert cleared["action"] == "mailbox.clear_oauth2-token"
    assert (cleared["before"], cleared["after"]) == ({"oauth2-token": "set", "authorization": "authorized"},
                                                     {"oauth2-token": "not set", "authorization": "none"})
    delegated.forget_tokens()
    assert org.test_enable(ALICE).passed == 0, "nothing is left to log in with"
