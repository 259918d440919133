"""Taking back a mailbox's own OAuth2 authorization (``mbxtui mailbox deauthorize``, issue 13): the
grant is revoked at the lab provider's RFC 7009 endpoint (tests/lab/oauth_provider.py) where it has
one, and the refresh token leaves the keyring whatever the provider answers: revoked, refused, down,
or (Microsoft 365) no endpoint at all, each said in the result."""

from __future__ import annotations

import json

import pytest

from mbxtui.core.models import MailboxAuthorization
from mbxtui.core.oauth import delegated
from mbxtui.core.oauth.settings import settings_of
from mbxtui.core.oauth.tokens import TokenError
from mbxtui.core.probes.base import ErrorCode
from mbxtui.core.secret_value import Secret
from mbxtui.core.services import audit, authorizations, profiles
from mbxtui.core.errors import InvalidInput, PermissionDenied
from mbxtui.core.enums import Role
from mbxtui.core.permissions import Actor
from tests.integration.conftest import Org
from tests.integration.test_oauth_delegated import (  # noqa: F401  (the fixtures are used by name)
    ALICE, BOB, TENANT, approving, delegated_profile, fresh_provider, oauth_mail, refresh_token_of,
)
from tests.lab.oauth_mail import OAuthMail

pytestmark = pytest.mark.servers


@pytest.fixture(autouse=True)
def provider_answers(oauth_mail: OAuthMail):
    yield
    oauth_mail.provider.revocation, oauth_mail.provider.unavailable = "revoke", False


def authorized(org: Org, oauth: OAuthMail, profile: str = "Delegated", **fields: object) -> str:
    delegated_profile(org, oauth, profile, **fields)
    org.mailbox(ALICE, profile)
    org.mailbox(BOB, profile)
    for email in (ALICE, BOB):
        authorizations.authorize(org.admin, email, org.store, approving(oauth, email))
    held = refresh_token_of(org, ALICE)
    assert held is not None
    return held


def assert_taken_back(org: Org, email: str = ALICE) -> None:
    row = org.row(email)
    left_in_keyring = refresh_token_of(org, email) is not None  # not compared: a failure would print it
    assert not left_in_keyring and not row.token_set
    assert not MailboxAuthorization.select().where(MailboxAuthorization.mailbox == row.id).exists()
    assert refresh_token_of(org, BOB) and authorizations.state_of(org.admin, BOB), "only that mailbox's"


def test_deauthorize_revokes_the_grant_at_the_provider_and_the_refresh_token_no_longer_works(
        org: Org, oauth_mail: OAuthMail):
    held = authorized(org, oauth_mail)
    assert org.test_enable(ALICE).passed == 1
    held = refresh_token_of(org, ALICE) or held  # rotated by that test
    access = [t for t, issued in oauth_mail.provider.issued.items() if issued.subject == ALICE]
    assert access and all(oauth_mail.provider.introspect(t)["active"] for t in access)

    done = authorizations.deauthorize(org.admin, ALICE, org.store)

    assert done.revoked is True and done.revocation.startswith("the grant was revoked at https://127.0.0.1:")
    assert held in oauth_mail.provider.revocations
    assert_taken_back(org)
    settings = settings_of(profiles.get("Delegated"))
    assert settings is not None
    with pytest.raises(TokenError) as refused:
        delegated.refresh(settings, ALICE, Secret(held))
    assert refused.value.code == ErrorCode.OAUTH_REAUTHORIZE, "the provider no longer honours it"
    assert not any(oauth_mail.provider.introspect(t)["active"] for t in access), "RFC 7009 2.1: its access tokens too"
    entry = audit.list_entries(org.admin, record_kind="mailbox", record_id=org.row(ALICE).id)[0]
    assert entry["action"] == "mailbox.deauthorize"
    assert (entry["before"], entry["after"]) == ({"authorization": "authorized"},
                                                 {"authorization": "none", "revocation": "revoked"})
    delegated.forget_tokens()
    assert org.test_enable(ALICE).passed == 0, "nothing is left to log in with"
    assert org.test_enable(BOB).passed == 1, "the other mailbox's grant is untouched"


@pytest.mark.parametrize("answer", ["refuse", "down"])
def test_a_provider_that_refuses_or_is_down_still_loses_the_local_token_and_the_result_says_why(
        org: Org, oauth_mail: OAuthMail, answer: str):
    held = authorized(org, oauth_mail)
    if answer == "refuse":
        oauth_mail.provider.revocation = "refuse"
    else:
        oauth_mail.provider.unavailable = True

    done = authorizations.deauthorize(org.admin, ALICE, org.store)

    assert done.revoked is False
    why = "unsupported_token_type" if answer == "refuse" else "HTTP 503"
    assert why in done.revocation and "revoke it in the provider's own console" in done.revocation
    assert_taken_back(org)
    oauth_mail.provider.unavailable = False
    assert held in oauth_mail.provider.live_refresh_tokens(ALICE), "the provider kept it: the result said so"
    entry = audit.list_entries(org.admin, record_kind="mailbox", record_id=org.row(ALICE).id)[0]
    assert entry["after"] == {"authorization": "none", "revocation": "revocation failed"}


def test_microsoft365_has_no_revocation_endpoint_and_the_result_says_so(org: Org, oauth_mail: OAuthMail):
    authorized(org, oauth_mail, "M365", oauth_provider="microsoft365", oauth_tenant=TENANT,
               oauth_issuer=oauth_mail.provider.url)
    asked = len(oauth_mail.provider.revocations)

    done = authorizations.deauthorize(org.admin, ALICE, org.store)

    assert (done.revoked, done.revocation) == (None, delegated.MICROSOFT_NO_REVOCATION)
    assert len(oauth_mail.provider.revocations) == asked, "nothing pretended"
    assert_taken_back(org)


def test_the_command_line_deauthorizes_with_json_and_exit_statuses(org: Org, oauth_mail: OAuthMail):
    held = authorized(org, oauth_mail)

    taken = org.cli("mailbox", "deauthorize", ALICE, "--json")

    assert taken.returncode == 0, taken.stderr
    assert json.loads(taken.stdout) == {"email": ALICE, "authorized": False, "revoked": True,
                                        "revocation": f"the grant was revoked at {oauth_mail.provider.url}/generic/revoke"}
    assert held not in taken.stdout + taken.stderr
    assert_taken_back(org)
    again = org.cli("mailbox", "deauthorize", ALICE)
    assert again.returncode == 1 and f"mailbox {ALICE} has no authorization of its own" in again.stderr

    oauth_mail.provider.unavailable = True
    failed = org.cli("mailbox", "deauthorize", BOB)
    assert failed.returncode == 1, "the revocation failed: a script must notice"
    assert "its refresh token was removed from the keyring; the revocation at" in failed.stdout
    assert "HTTP 503" in failed.stdout


def test_a_viewer_may_not_deauthorize(org: Org, oauth_mail: OAuthMail):
    authorized(org, oauth_mail)
    with pytest.raises(PermissionDenied):
        authorizations.deauthorize(Actor(login="vic", role=Role.VIEWER), ALICE, org.store)
    assert refresh_token_of(org, ALICE) is not None and authorizations.state_of(org.admin, ALICE)


def test_a_mailbox_without_an_authorization_is_refused_with_a_sentence(org: Org, oauth_mail: OAuthMail):
    delegated_profile(org, oauth_mail)
    org.mailbox(ALICE, "Delegated")
    with pytest.raises(InvalidInput, match="has no authorization of its own: nothing to take back"):
        authorizations.deauthorize(org.admin, ALICE, org.store)
