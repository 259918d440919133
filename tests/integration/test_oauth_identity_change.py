"""R34 for a mailbox's own OAuth2 authorization (issue 13): its refresh token speaks for one address
at one OAuth client. A new address, or a move to a profile of another client (or of none), drops
its record, audited in the same edit, and once the edit has committed revokes the grant at the
provider (RFC 7009; a failure is a warning) and takes the refresh token out of the keyring: an
edit the database refuses loses nothing. Where the keyring is not at hand (bulk edit, Apply
Default Email Settings, a service call without it) the change is refused whole with the command
that takes it back. Checked in the encrypted-file keyring and, through the raw backend, in a real
Secret Service (scripts/with-test-keyring)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mbxtui.core.errors import InvalidInput
from mbxtui.core.models import MailboxAuthorization
from mbxtui.core.oauth import delegated
from mbxtui.core.secrets import KEYRING_CHOICE_ENV, SERVICE, SecretStore
from mbxtui.core.services import audit, authorization_identity, authorizations, bulk, credentials, mailboxes, profiles, settings
from mbxtui.core.services.selection import Selection
from tests.core.support import inserts_refused
from tests.integration.conftest import MASTER_PASSWORD, NO_OS_KEYRING, Org
from tests.integration.test_oauth_delegated import (  # noqa: F401  (the fixtures are used by name)
    ALICE, BOB, approving, delegated_profile, fresh_provider, oauth_mail, refresh_token_of,
)
from tests.lab.oauth_mail import OAuthMail

pytestmark = pytest.mark.servers

NEW_ADDRESS = "alice.new@example.test"


@pytest.fixture(autouse=True)
def provider_answers(oauth_mail: OAuthMail):
    yield
    oauth_mail.provider.unavailable, oauth_mail.provider.on_revocation = False, None


def authorized(org: Org, oauth: OAuthMail, store: SecretStore | None = None) -> None:
    delegated_profile(org, oauth)
    org.profile("Passwords")
    for email in (ALICE, BOB):
        org.mailbox(email, "Delegated")
        authorizations.authorize(org.admin, email, store or org.store, approving(oauth, email))


def taken_out(org: Org, mailbox_id: int, store: SecretStore | None = None) -> bool:
    left = (store or org.store).get(credentials.secret_key("mailbox", mailbox_id, delegated.REFRESH_TOKEN))
    return left is None and not MailboxAuthorization.select().where(MailboxAuthorization.mailbox == mailbox_id).exists()


def test_a_new_address_takes_the_refresh_token_out_audited_and_a_revocation_that_fails_is_a_warning(
        org: Org, oauth_mail: OAuthMail):
    authorized(org, oauth_mail)
    alice_id = org.row(ALICE).id

    renamed = org.cli("mailbox", "edit", ALICE, "--name", "Alice A.")
    assert renamed.returncode == 0, renamed.stderr
    assert not taken_out(org, alice_id), "a new name leaves the identity as it was"

    held = refresh_token_of(org, ALICE)
    oauth_mail.provider.unavailable = True  # the grant cannot be revoked: a warning, the edit stands
    moved = org.cli("mailbox", "edit", ALICE, "--email", NEW_ADDRESS, "--json")

    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["email"] == NEW_ADDRESS
    assert taken_out(org, alice_id) and not org.row(NEW_ADDRESS).token_set
    assert moved.stderr.startswith(f"mbxtui: warning: the authorization of {ALICE} was dropped, but not revoked at "
                                   f"its OAuth provider: the revocation at "), moved.stderr
    assert "HTTP 503" in moved.stderr and "revoke it in the provider's own console" in moved.stderr
    assert held not in moved.stdout + moved.stderr
    oauth_mail.provider.unavailable = False
    kept = held in oauth_mail.provider.live_refresh_tokens(ALICE)
    assert kept, "the provider kept it: the warning said so"  # not compared: it would print the token
    assert not taken_out(org, org.row(BOB).id), "only that mailbox's"
    entry = audit.list_entries(org.admin, record_kind="mailbox", record_id=alice_id)[0]
    assert entry["before"] == {"email": ALICE, "authorization": "authorized"}
    assert entry["after"] == {"email": NEW_ADDRESS, "authorization": "none"}


def test_a_move_to_a_profile_of_another_client_takes_it_out_and_one_of_the_same_client_keeps_it(
        org: Org, oauth_mail: OAuthMail):
    authorized(org, oauth_mail)
    delegated_profile(org, oauth_mail, "Delegated too", incoming_host="localhost")
    alice_id, bob_id = org.row(ALICE).id, org.row(BOB).id

    mailboxes.edit(org.admin, BOB, profile="Delegated too", store=lambda: org.store)
    assert not taken_out(org, bob_id), "the same client: kept, and bound to the old endpoint (R34)"
    assert credentials.mailbox_secret_state(org.admin, BOB) == credentials.NOT_CONFIRMED

    held = refresh_token_of(org, ALICE)
    edited = mailboxes.edit(org.admin, ALICE, profile="Passwords", store=lambda: org.store)
    assert taken_out(org, alice_id) and edited.warnings == ()
    revoked = held in oauth_mail.provider.revocations and held not in oauth_mail.provider.live_refresh_tokens(ALICE)
    assert revoked, "revoked at the client it was made at, as mailbox deauthorize does"


def test_a_slow_provider_does_not_hold_the_save_and_the_revocation_still_happens_behind_it(
        org: Org, oauth_mail: OAuthMail, monkeypatch: pytest.MonkeyPatch):
    authorized(org, oauth_mail)
    alice_id = org.row(ALICE).id
    held = refresh_token_of(org, ALICE)
    monkeypatch.setattr(authorization_identity, "REVOCATION_WAIT", 0.3)
    delay = 1.5  # well under the profile's timeout: without the bound the save took it whole
    oauth_mail.provider.on_revocation = lambda: time.sleep(delay)

    started = time.monotonic()
    edited = mailboxes.edit(org.admin, ALICE, email=NEW_ADDRESS, store=lambda: org.store)
    took = time.monotonic() - started

    assert took < delay - 0.5, f"the save waited {took:.1f} s for a provider answering in {delay} s"
    assert taken_out(org, alice_id) and org.row(NEW_ADDRESS).id == alice_id, "saved, and the token out of the keyring"
    [warning] = edited.warnings
    assert "had not answered the revocation within 0.3 s, so the save did not wait" in warning, warning
    assert held not in warning
    deadline = time.monotonic() + 2 * delay
    while held in oauth_mail.provider.live_refresh_tokens(ALICE) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert held not in oauth_mail.provider.live_refresh_tokens(ALICE), "revoked once the provider answered"


def test_a_keyring_that_fails_after_the_edit_committed_is_a_warning_naming_the_command(
        org: Org, oauth_mail: OAuthMail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", NO_OS_KEYRING)
    monkeypatch.delenv(KEYRING_CHOICE_ENV, raising=False)
    store = SecretStore.open(tmp_path / "data")  # its own encrypted file: this one is damaged
    store.unlock(MASTER_PASSWORD)
    authorized(org, oauth_mail, store)
    alice_id = org.row(ALICE).id
    store_file = tmp_path / "data" / "secrets.cfg"
    # Between the commit and the removal, something else writes over the keyring's file.
    oauth_mail.provider.on_revocation = lambda: store_file.write_bytes(b"not a secrets file\n")

    edited = mailboxes.edit(org.admin, ALICE, email=NEW_ADDRESS, store=lambda: store)

    assert org.row(NEW_ADDRESS).id == alice_id and not org.row(NEW_ADDRESS).token_set, "the edit stands"
    assert not MailboxAuthorization.select().where(MailboxAuthorization.mailbox == alice_id).exists()
    [warning] = edited.warnings
    assert warning.startswith(f"the change was saved, but the refresh token of mailbox {NEW_ADDRESS} could not be "
                              f"removed from the keyring ("), warning
    assert warning.endswith(f"it is no longer used: remove it with `mbxtui mailbox deauthorize {NEW_ADDRESS}` once "
                            f"the keyring answers"), warning


@pytest.mark.parametrize("edit", ["email", "profile"])
def test_an_edit_the_database_refuses_loses_no_refresh_token_and_revokes_nothing(
        org: Org, oauth_mail: OAuthMail, edit: str):
    authorized(org, oauth_mail)
    alice_id = org.row(ALICE).id
    held = refresh_token_of(org, ALICE)
    change = {"email": NEW_ADDRESS} if edit == "email" else {"profile": "Passwords"}

    with inserts_refused("audit_record"):  # the edit's last write, just before its commit
        with pytest.raises(Exception, match="audit_record refused by the test"):
            mailboxes.edit(org.admin, ALICE, store=lambda: org.store, **change)

    kept = refresh_token_of(org, ALICE) == held  # not compared in the assert: a failure would print it
    assert kept and org.row(ALICE).token_set and authorizations.state_of(org.admin, ALICE) is not None
    assert org.row(ALICE).profile.name == "Delegated"
    untouched = held not in oauth_mail.provider.revocations and held in oauth_mail.provider.live_refresh_tokens(ALICE)
    assert untouched, "not revoked either"
    mailboxes.edit(org.admin, ALICE, store=lambda: org.store, **change)  # tried again: it goes through
    revoked = held in oauth_mail.provider.revocations
    assert taken_out(org, alice_id) and revoked


def test_without_the_keyring_such_an_edit_is_refused_whole(org: Org, oauth_mail: OAuthMail):
    authorized(org, oauth_mail)
    alice_id = org.row(ALICE).id

    with pytest.raises(InvalidInput, match=f"deauthorize {ALICE}"):
        mailboxes.edit(org.admin, ALICE, email=NEW_ADDRESS)
    assert org.row(ALICE).id == alice_id and not taken_out(org, alice_id), "nothing half-written"
    mailboxes.edit(org.admin, ALICE, name="Alice A.")  # no keyring needed for what keeps the identity


@pytest.mark.parametrize("action", ["bulk-edit", "apply-defaults"])
def test_bulk_moves_of_authorized_mailboxes_to_another_client_are_refused_whole(
        org: Org, oauth_mail: OAuthMail, action: str):
    authorized(org, oauth_mail)
    org.mailbox("carol@example.test", "Delegated")  # not authorized: would be free to move alone
    chosen = Selection.of_emails([ALICE, BOB, "carol@example.test"])

    with pytest.raises(InvalidInput) as refused:
        if action == "bulk-edit":
            bulk.bulk_edit(org.admin, chosen, profile="Passwords")
        else:
            settings.update(org.admin, default_profile="Passwords")
            bulk.apply_defaults(org.admin, chosen, schedule_test=False)

    assert "2 selected mailbox(es)" in str(refused.value) and "mbxtui mailbox deauthorize EMAIL" in str(refused.value)
    assert {org.row(e).profile.name for e in (ALICE, BOB, "carol@example.test")} == {"Delegated"}
    assert not taken_out(org, org.row(ALICE).id)
    authorizations.deauthorize(org.admin, ALICE, org.store)
    authorizations.deauthorize(org.admin, BOB, org.store)
    bulk.bulk_edit(org.admin, chosen, profile="Passwords")
    assert {org.row(e).profile.name for e in (ALICE, BOB)} == {"Passwords"}


def _private_secret_service() -> str | None:
    if not os.environ.get("MBXTUI_TEST_KEYRING"):
        return "needs the private Secret Service of scripts/with-test-keyring"
    return None


@pytest.mark.skipif(_private_secret_service() is not None, reason=str(_private_secret_service()))
def test_in_the_secret_service_a_new_address_leaves_no_refresh_token(org: Org, oauth_mail: OAuthMail,
                                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from keyring.backends import SecretService

    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.delenv("MBXTUI_KEYRING", raising=False)
    store = SecretStore.open(tmp_path / "data")
    assert store.backend_name == "Secret Service"
    authorized(org, oauth_mail, store)
    alice_id = org.row(ALICE).id
    key = credentials.secret_key("mailbox", alice_id, delegated.REFRESH_TOKEN)
    held = SecretService.Keyring().get_password(SERVICE, key) is not None  # not compared: it would be printed
    assert held

    mailboxes.edit(org.admin, ALICE, email=NEW_ADDRESS, store=lambda: store)

    left = SecretService.Keyring().get_password(SERVICE, key) is not None
    assert not left and taken_out(org, alice_id, store)


def test_a_new_oauth_client_on_the_profile_is_refused_while_its_mailboxes_are_authorized(
        org: Org, oauth_mail: OAuthMail):
    authorized(org, oauth_mail)
    elsewhere = "https://127.0.0.1:9/elsewhere"  # a system_admin's own provider would collect the refresh tokens

    refusal = r"^--oauth-issuer: 2 mailbox\(es\) of profile 'Delegated' .*`mbxtui mailbox deauthorize EMAIL`$"
    with pytest.raises(InvalidInput, match=refusal):
        profiles.update(org.admin, "Delegated", oauth_issuer=elsewhere)
    assert profiles.get("Delegated").oauth_issuer == f"{oauth_mail.provider.url}/generic", "nothing changed"
    profiles.update(org.admin, "Delegated", oauth_scope="openid offline_access")  # the same client: allowed

    for email in (ALICE, BOB):
        authorizations.deauthorize(org.admin, email, org.store)
    profiles.update(org.admin, "Delegated", oauth_issuer=elsewhere)
    assert profiles.get("Delegated").oauth_issuer == elsewhere
