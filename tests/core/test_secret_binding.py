"""R34: a secret is bound to the endpoint it was set for; and secrets travel redacted.

A mailbox's or profile's secret goes only to the endpoint (host, port, TLS mode, CA file, kind of
authentication, and for a mailbox its profile) it was set or confirmed for; credentials in clear
go only to a loopback host or where a global_admin confirmed the profile. The endpoint checks of
Test & Enable itself, against real servers, are in tests/integration/test_secret_binding.py."""

from __future__ import annotations

import copy
import pickle
import traceback
from pathlib import Path
from typing import Any, Iterator

import pytest

from mbxtui.core.endpoint_binding import binding_of, binding_sql, is_loopback
from mbxtui.core.errors import InvalidInput, PermissionDenied
from mbxtui.core.mailbox_check import MailboxSnapshot, Withheld, credentials_for, profile_snapshot
from mbxtui.core.models import Mailbox, Profile, database
from mbxtui.core.permissions import Actor
from mbxtui.core.probes.base import Credentials
from mbxtui.core.secret_value import Secret
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import audit, bulk, credentials, mailboxes, profiles, settings, users
from mbxtui.core.services.selection import Selection
from tests.core.conftest import Actors
from tests.core.support import IMAP_PROFILE, snapshot

PASSWORD = "Bound-Pässword-93c1e7"
PROFILE_PASSWORD = "Profile-Bound-2b8d44"
ANN = "ann@corp.test"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretStore]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
        env.delenv("MBXTUI_KEYRING", raising=False)
        env.setenv("MBXTUI_MASTER_PASSWORD", "master of the binding keyring")
        yield SecretStore.open(tmp_path_factory.mktemp("binding-secrets"))


@pytest.fixture
def ann(admin: Actor, store: SecretStore) -> None:
    """Ann's mailbox on profile imap (mailbox credentials), its password set."""
    profiles.create(admin, **IMAP_PROFILE)
    profiles.create(admin, **{**IMAP_PROFILE, "name": "other"})
    settings.update(admin, default_profile="imap")
    users.add_user(admin, "Ann", ANN)
    credentials.set_mailbox_secret(admin, ANN, PASSWORD, store)


def state(admin: Actor) -> str:
    return credentials.mailbox_secret_state(admin, ANN)


def withheld(store: SecretStore, direction: str = "incoming") -> Credentials | Withheld:
    """What Test & Enable would send for Ann in ``direction``."""
    box = mailboxes.get(ANN)
    snapshot = MailboxSnapshot(
        id=box.id, email=box.email, active=True, regarding="user", incoming_method="server_side_sync",
        outgoing_method="server_side_sync", act_method="none", username="", approved=True,
        forward_mailbox_available=False, password_bound_to=box.password_bound_to, token_bound_to=box.token_bound_to)
    profile = profile_snapshot(Profile.get_by_id(box.profile_id))
    return credentials_for(direction, snapshot, profile, credentials.secret_lookup(store))


# --- the redacted Secret ------------------------------------------------------------------------

def test_a_secret_shows_itself_only_as_stars():
    secret = Secret(PASSWORD)
    assert repr(secret) == "Secret('***')"
    assert str(secret) == "***" and f"{secret}" == "***" and f"{secret!r:>30}".strip() == "Secret('***')"
    assert PASSWORD not in repr([secret, {"password": secret}])
    assert PASSWORD not in repr(Credentials("password", "ann", PASSWORD))
    assert secret.reveal() == PASSWORD
    assert bool(secret) and not Secret("")


def test_a_secret_is_not_compared_nor_pickled_by_accident():
    secret = Secret(PASSWORD)
    with pytest.raises(TypeError):
        _ = secret == PASSWORD
    with pytest.raises(TypeError):
        _ = PASSWORD == secret
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        pickle.dumps(Credentials("password", "ann", PASSWORD))
    with pytest.raises(TypeError):
        hash(secret)
    assert copy.deepcopy(secret) is secret


def test_secrets_read_from_the_keyring_travel_redacted(admin: Actor, ann, store: SecretStore):
    lookup = credentials.secret_lookup(store)
    box = mailboxes.get(ANN)
    assert isinstance(lookup("mailbox", box.id, credentials.PASSWORD), Secret)
    assert isinstance(credentials.mailbox_secret(store, box.id), Secret)
    creds = withheld(store)
    assert isinstance(creds, Credentials) and isinstance(creds.secret, Secret)
    assert creds.secret.reveal() == PASSWORD


def test_a_probe_session_keeps_the_secret_and_its_encodings_redacted():
    import base64

    from mbxtui.core.probes.base import Endpoint
    from mbxtui.core.probes.session import ProbeSession

    session = ProbeSession("imap", Endpoint("127.0.0.1", 1, "implicit"), Credentials("password", "ann", PASSWORD))
    encoded = session.sasl_plain()
    assert isinstance(encoded, Secret)
    shown = repr(vars(session)) + repr(session.context)
    assert PASSWORD not in shown
    assert base64.b64encode(f"\0ann\0{PASSWORD}".encode()).decode() not in shown


def _crash_while_holding_credentials(store: SecretStore, email: str) -> None:
    password = credentials.mailbox_secret(store, mailboxes.get(email).id)
    lookup = credentials.secret_lookup(store)
    found = lookup("mailbox", mailboxes.get(email).id, credentials.PASSWORD)
    creds = withheld(store)
    raise RuntimeError(f"the database went away while testing {email} ({password}, {found}, {creds})")


def test_a_traceback_with_its_locals_shows_no_password(admin: Actor, ann, store: SecretStore):
    with pytest.raises(RuntimeError) as crash:
        _crash_while_holding_credentials(store, ANN)
    report = "".join(traceback.TracebackException.from_exception(crash.value, capture_locals=True).format())
    assert "password = Secret('***')" in report  # the locals were captured
    assert PASSWORD not in report


# --- binding ------------------------------------------------------------------------------------

def ca_file(directory: Path) -> str:
    import trustme

    path = directory / "ca file.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def test_the_endpoint_text_is_the_same_in_python_and_in_sql(admin: Actor, ann, tmp_path: Path):
    profiles.update(admin, "other", ca_file=ca_file(tmp_path))
    for profile in Profile.select():
        in_sql = database.execute_sql(f"SELECT {binding_sql('p')} FROM profile p WHERE p.id = ?",
                                      [profile.id]).fetchone()[0]
        assert in_sql == binding_of(profile)


def test_setting_a_secret_binds_it_to_the_profile_endpoint(admin: Actor, ann, store: SecretStore):
    assert state(admin) == credentials.CONFIRMED
    assert mailboxes.get(ANN).password_bound_to == binding_of(profiles.get("imap"))
    assert isinstance(withheld(store), Credentials)


@pytest.mark.parametrize("change", [
    {"incoming_host": "evil.example.net"}, {"outgoing_host": "evil.example.net"}, {"incoming_port": 143},
    {"outgoing_port": 2525}, {"incoming_tls": "starttls"}, {"outgoing_tls": "implicit"},
    {"incoming_auth": "oauth2"}, {"outgoing_auth": "none"}, {"ca_file": "CA"},
], ids=lambda change: next(iter(change)))
def test_a_changed_endpoint_unconfirms_the_secrets_sent_there(admin: Actor, ann, store: SecretStore,
                                                             change: dict[str, Any], tmp_path: Path):
    if change.get("ca_file") == "CA":
        change = {"ca_file": ca_file(tmp_path)}
    profiles.update(admin, "imap", **change)
    assert state(admin) == credentials.NOT_CONFIRMED
    assert mailboxes.show(admin, ANN).as_dict()["password"] == "set"  # still in the keyring
    kept = withheld(store, "outgoing" if change.get("incoming_auth") == "oauth2" else "incoming")
    assert isinstance(kept, Withheld)
    assert kept.message.startswith(f"the endpoint changed since the password of mailbox {ANN} was set")
    assert f"`mbxtui mailbox confirm-secret {ANN}`" in kept.message
    assert PASSWORD not in kept.message


def test_an_edit_that_leaves_the_endpoint_alone_keeps_the_secret_confirmed(admin: Actor, ann):
    profiles.update(admin, "imap", max_connections=3, timeout_seconds=9, name="imap renamed")
    assert state(admin) == credentials.CONFIRMED


@pytest.mark.parametrize("move", ["edit", "bulk edit", "apply defaults"])
def test_a_mailbox_moved_to_another_profile_keeps_its_secret_unsent(admin: Actor, ann, store: SecretStore,
                                                                    move: str):
    if move == "edit":
        mailboxes.edit(admin, ANN, profile="other")
    elif move == "bulk edit":
        bulk.bulk_edit(admin, Selection.of_emails([ANN]), profile="other")
    else:
        settings.update(admin, default_profile="other")
        bulk.apply_defaults(admin, Selection.of_emails([ANN]), schedule_test=False)
    assert mailboxes.get(ANN).profile.name == "other"
    assert state(admin) == credentials.NOT_CONFIRMED
    assert isinstance(withheld(store), Withheld)


def test_confirming_binds_the_secret_to_the_new_endpoint_and_is_audited(actors: Actors, ann, store: SecretStore):
    profiles.update(actors.admin, "imap", incoming_host="imap2.corp.test")
    selected, confirmed = credentials.confirm_mailbox_secrets(actors.service, Selection.of_emails([ANN]))
    assert (selected, confirmed) == (1, 1)
    assert state(actors.admin) == credentials.CONFIRMED
    assert isinstance(withheld(store), Credentials)
    entry = audit.list_entries(actors.admin, limit=1)[0]
    assert (entry["action"], entry["login"], entry["record_count"]) == ("mailbox.confirm_secret", "sam", 1)
    assert credentials.confirm_mailbox_secrets(actors.service, Selection.of_emails([ANN])) == (1, 0)


def test_a_viewer_cannot_confirm_a_secret(actors: Actors, ann, store: SecretStore):
    profiles.update(actors.admin, "imap", incoming_host="imap2.corp.test")
    credentials.set_profile_secret(actors.admin, "imap", PROFILE_PASSWORD, store)
    profiles.update(actors.admin, "imap", incoming_host="imap3.corp.test")
    before = snapshot()
    with pytest.raises(PermissionDenied, match="vic is viewer"):
        credentials.confirm_mailbox_secrets(actors.viewer, Selection.of_emails([ANN]))
    with pytest.raises(PermissionDenied, match="vic is viewer"):
        credentials.confirm_profile_secret(actors.viewer, "imap")
    assert snapshot() == before


def test_a_system_admin_who_moved_the_endpoint_cannot_send_the_secrets_after_it(
        actors: Actors, ann, store: SecretStore):
    """Finding 2 of the security review: the role that configures profiles may point one at a host
    it controls, so it may not also confirm that the passwords go there."""
    credentials.set_profile_secret(actors.admin, "imap", PROFILE_PASSWORD, store)
    profiles.update(actors.system, "imap", incoming_host="harvest.example.net")
    before = snapshot()
    with pytest.raises(PermissionDenied, match="syd is system_admin and may not confirm a secret"):
        credentials.confirm_mailbox_secrets(actors.system, Selection.of_emails([ANN]))
    with pytest.raises(PermissionDenied, match="syd is system_admin and may not confirm a secret"):
        credentials.confirm_profile_secret(actors.system, "imap")
    assert snapshot() == before
    assert isinstance(withheld(store), Withheld)


def test_profile_credentials_are_bound_to_the_profile_endpoint(admin: Actor, ann, store: SecretStore):
    profiles.update(admin, "imap", incoming_auth="profile", username="sync-master@corp.test")
    credentials.set_profile_secret(admin, "imap", PROFILE_PASSWORD, store)
    assert profiles.show(admin, "imap").as_dict()["secret_endpoint"] == "confirmed"
    assert isinstance(withheld(store), Credentials)
    profiles.update(admin, "imap", incoming_port=10993)
    assert profiles.show(admin, "imap").as_dict()["secret_endpoint"] == "not confirmed"
    kept = withheld(store)
    assert isinstance(kept, Withheld) and "`mbxtui profile confirm-secret imap`" in kept.message
    assert credentials.confirm_profile_secret(admin, "imap") is True
    assert isinstance(withheld(store), Credentials)
    assert audit.list_entries(admin, limit=1)[0]["action"] == "profile.confirm_secret"
    assert credentials.confirm_profile_secret(admin, "imap") is False


def test_confirming_a_profile_without_a_secret_is_refused_in_one_sentence(admin: Actor, ann):
    with pytest.raises(InvalidInput) as refused:
        credentials.confirm_profile_secret(admin, "imap")
    assert str(refused.value) == ("confirm-secret: profile 'imap' has no password or token to confirm: set one "
                                  "with `mbxtui profile set-password`")


# --- credentials in clear ------------------------------------------------------------------------

CLEARTEXT = {"incoming_tls": "none", "incoming_port": 143}


@pytest.mark.parametrize("host, allowed", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("localhost", True), ("LOCALHOST.", True),
    ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("imap.corp.test", False), ("localhost.evil.test", False),
])
def test_loopback_is_127_8_and_ipv6_1_and_localhost(host: str, allowed: bool):
    assert is_loopback(host) is allowed


def test_a_profile_sending_credentials_in_clear_off_this_machine_is_refused(actors: Actors):
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        profiles.create(actors.system, **{**IMAP_PROFILE, **CLEARTEXT})
    assert str(refused.value) == (
        "incoming-tls: none would send credentials in clear to imap.corp.test:143, which is not a loopback "
        "host: choose implicit or starttls, or have a global_admin save it with --allow-plaintext-credentials")
    with pytest.raises(PermissionDenied, match="syd is system_admin"):
        profiles.create(actors.system, allow_plaintext_credentials=True, **{**IMAP_PROFILE, **CLEARTEXT})
    assert snapshot() == before
    profiles.create(actors.system, **{**IMAP_PROFILE, **CLEARTEXT, "incoming_host": "127.0.0.1"})
    profiles.create(actors.system, **{**IMAP_PROFILE, **CLEARTEXT, "name": "no login", "incoming_auth": "oauth2",
                                      "outgoing_tls": "none", "outgoing_auth": "none", "incoming_tls": "implicit"})


def test_a_global_admin_confirms_a_profile_for_credentials_in_clear_until_its_endpoint_changes(
        actors: Actors, store: SecretStore):
    created = profiles.create(actors.admin, allow_plaintext_credentials=True, **{**IMAP_PROFILE, **CLEARTEXT})
    assert created.as_dict()["plaintext_credentials"] == "allowed"
    assert audit.list_entries(actors.admin, limit=1)[0]["action"] == "profile.allow_plaintext_credentials"
    users.add_user(actors.admin, "Ann", ANN)
    mailboxes.edit(actors.admin, ANN, profile="imap")
    credentials.set_mailbox_secret(actors.system, ANN, PASSWORD, store)
    assert isinstance(withheld(store), Credentials)
    # Anyone may still change what does not move the endpoint.
    profiles.update(actors.system, "imap", max_connections=4)
    with pytest.raises(InvalidInput, match="^incoming-host: imap9.corp.test:143 is not a loopback host and "
                                           "incoming TLS mode none would send credentials to it in clear"):
        profiles.update(actors.system, "imap", incoming_host="imap9.corp.test")
    profiles.update(actors.admin, "imap", incoming_host="imap9.corp.test", allow_plaintext_credentials=True)
    credentials.confirm_mailbox_secrets(actors.service, Selection.of_emails([ANN]))
    assert isinstance(withheld(store), Credentials)


def test_credentials_in_clear_are_neither_set_nor_sent_without_the_confirmation(
        actors: Actors, store: SecretStore):
    profiles.create(actors.admin, allow_plaintext_credentials=True, **{**IMAP_PROFILE, **CLEARTEXT})
    users.add_user(actors.admin, "Ann", ANN)
    mailboxes.edit(actors.admin, ANN, profile="imap")
    credentials.set_mailbox_secret(actors.admin, ANN, PASSWORD, store)
    # As a database from before R34 holds it: no confirmation for credentials in clear.
    Profile.update(plaintext_confirmed_for=None).execute()
    kept = withheld(store)
    assert isinstance(kept, Withheld)
    assert kept.message == ("credentials are not sent in clear to imap.corp.test:143 (incoming TLS mode none, "
                            "not a loopback host): use TLS, or have a global_admin confirm it with "
                            "`mbxtui profile edit imap --allow-plaintext-credentials`")
    assert isinstance(withheld(store, "outgoing"), Credentials)  # outgoing uses STARTTLS
    with pytest.raises(InvalidInput, match="^password: credentials are not sent in clear"):
        credentials.set_mailbox_secret(actors.admin, ANN, PASSWORD, store)
    Mailbox.update(password_bound_to=None).execute()  # set for another endpoint
    with pytest.raises(InvalidInput, match="^password: credentials are not sent in clear"):
        credentials.confirm_mailbox_secrets(actors.admin, Selection.of_emails([ANN]))
    profiles.update(actors.admin, "imap", allow_plaintext_credentials=True)
    assert isinstance(withheld(store), Withheld)  # allowed in clear, but still not confirmed
    credentials.confirm_mailbox_secrets(actors.admin, Selection.of_emails([ANN]))
    assert isinstance(withheld(store), Credentials)


# --- databases from before R34 ---------------------------------------------------------------------

@pytest.mark.sqlite_only("builds a schema-5 SQLite file by hand")
def test_secrets_set_before_the_upgrade_are_bound_to_their_endpoint_of_that_moment(tmp_path: Path):
    import sqlite3

    from mbxtui.core import db
    from mbxtui.core.migrations import MIGRATIONS

    path = tmp_path / "v5.db"
    conn = sqlite3.connect(path)
    conn.isolation_level = None
    conn.execute("BEGIN")
    for _, script in MIGRATIONS[:5]:
        for statement in db._statements(script):
            conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('install_id', 'v5-install')")
    conn.execute(
        "INSERT INTO profile (id, name, type, incoming_host, incoming_port, incoming_tls, incoming_auth, "
        "outgoing_host, outgoing_port, outgoing_tls, outgoing_auth, username, password_set, token_set, ca_file, "
        "max_connections, timeout_seconds, verify_delivery, min_polling_minutes, active, created_on, modified_on, "
        "row_version) VALUES (7, 'imap', 'imap_smtp', 'imap.corp.test', 993, 'implicit', 'profile', "
        "'smtp.corp.test', 587, 'starttls', 'mailbox', 'sync', 1, 0, '/etc/ca.pem', 10, 30, 0, 0, 1, "
        "'2026-01-01 00:00:00', '2026-01-01 00:00:00', 1)")
    for mailbox_id, profile_id, password_set in ((1, 7, 1), (2, None, 1), (3, 7, 0)):
        conn.execute(
            "INSERT INTO mailbox (id, name, email, regarding, profile_id, is_forward, incoming_method, "
            "outgoing_method, act_method, use_own_credentials, username, password_set, token_set, "
            "delete_after_processing, approval, incoming_status, outgoing_status, act_status, overall_status, "
            "incoming_enabled, outgoing_enabled, act_enabled, test_scheduled, transient_failures, active, "
            "created_on, modified_on, row_version) VALUES (?, 'Box', ?, 'queue', ?, 0, 'server_side_sync', "
            "'server_side_sync', 'none', 0, '', ?, 0, 0, 'empty', 'not_run', 'not_run', 'not_run', 'not_run', "
            "0, 0, 0, 0, 0, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 1)",
            (mailbox_id, f"box{mailbox_id}@corp.test", profile_id, password_set))
    conn.execute("PRAGMA user_version = 5")
    conn.execute("COMMIT")
    conn.close()

    opened = db.open_database(path)
    try:
        profile = Profile.get_by_id(7)
        endpoint = "7 imap.corp.test 993 implicit profile smtp.corp.test 587 starttls mailbox /etc/ca.pem"
        assert binding_of(profile) == endpoint
        assert (profile.password_bound_to, profile.token_bound_to) == (endpoint, None)
        assert [(m.id, m.password_bound_to) for m in Mailbox.select().order_by(Mailbox.id)] == [
            (1, endpoint), (2, None), (3, None)]
    finally:
        opened.close()
