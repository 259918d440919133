"""Email server profiles: every field validated, refusals that name the field and write nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from mbxtui.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from mbxtui.core.models import AuditRecord
from mbxtui.core.permissions import Actor
from mbxtui.core.services import profiles, users
from tests.core.conftest import Actors
from tests.core.support import IMAP_PROFILE, audit_actions, count, last_audit_id, profile_fields, snapshot


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def test_a_valid_profile_is_created_with_its_defaults(actors: Actors):
    created = profiles.create(actors.system, **IMAP_PROFILE)
    assert created.incoming.as_dict() == {"host": "imap.corp.test", "port": 993, "tls": "implicit", "auth": "mailbox"}
    assert created.outgoing.as_dict() == {"host": "smtp.corp.test", "port": 587, "tls": "starttls", "auth": "mailbox"}
    assert (created.max_connections, created.timeout_seconds) == (10, 30)
    assert created.as_dict()["password"] == created.as_dict()["oauth2_token"] == "not set"
    assert created.active is True and created.row_version == 1
    assert profiles.show(actors.viewer, "imap").mailboxes == 0
    assert [p.name for p in profiles.list_profiles(actors.viewer)] == ["imap"]


@pytest.mark.parametrize("field, value, message", [
    ("type", "smtp_only", "type: 'smtp_only' is not one of: imap_smtp, pop3_smtp, exchange_online, exchange_server"),
    ("incoming_host", "", "incoming-host: is required"),
    ("incoming_host", "imap corp.test", "incoming-host: 'imap corp.test' is not a valid host name"),
    ("incoming_host", "-imap.corp.test", "incoming-host: '-imap.corp.test' is not a valid host name"),
    ("outgoing_host", "10.0.0", "outgoing-host: '10.0.0' is neither a valid IP address nor a host name"),
    ("outgoing_host", "smtp_corp.test", "outgoing-host: 'smtp_corp.test' is not a valid host name"),
    ("incoming_port", 0, "incoming-port: 0 is out of range 1–65535"),
    ("incoming_port", 65536, "incoming-port: 65536 is out of range 1–65535"),
    ("outgoing_port", -25, "outgoing-port: -25 is out of range 1–65535"),
    ("outgoing_port", "smtp", "outgoing-port: 'smtp' is not a whole number"),
    ("outgoing_port", "25.0", "outgoing-port: '25.0' is not a whole number"),
    ("incoming_tls", "ssl", "incoming-tls: 'ssl' is not one of: implicit, starttls, none"),
    ("outgoing_tls", "", "outgoing-tls: '' is not one of: implicit, starttls, none"),
    ("incoming_auth", "none", "incoming-auth: 'none' is not one of: mailbox, profile, oauth2"),
    ("outgoing_auth", "kerberos", "outgoing-auth: 'kerberos' is not one of: mailbox, profile, oauth2, none"),
    ("max_connections", 0, "max-connections: 0 is out of range 1–300"),
    ("max_connections", 301, "max-connections: 301 is out of range 1–300"),
    ("timeout_seconds", 0, "timeout: 0 seconds is out of range 1–600"),
    ("timeout_seconds", 601, "timeout: 601 seconds is out of range 1–600"),
    ("timeout_seconds", "soon", "timeout: 'soon' is not a whole number"),
    ("min_polling_minutes", -1, "min-polling-minutes: -1 minutes is out of range 0–1440"),
    ("process_email_from", "yesterday", "process-email-from: 'yesterday' is not a date"),
    ("owner", "ghost@corp.test", "owner: no user with email ghost@corp.test"),
    ("name", "", "name: is required"),
])
def test_a_bad_field_is_refused_naming_it_and_nothing_is_written(admin: Actor, field: str, value, message: str):
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        profiles.create(admin, **profile_fields(**{field: value}))
    assert str(refused.value).startswith(message)
    assert snapshot() == before


@pytest.mark.parametrize("missing", ["incoming_host", "outgoing_port", "incoming_auth", "type"])
def test_a_missing_required_field_is_named(admin: Actor, missing: str):
    fields = profile_fields()
    del fields[missing]
    with pytest.raises(InvalidInput, match=f"^{missing.replace('_', '-')}: is required$"):
        profiles.create(admin, **fields)
    assert count("profile") == 0


def test_an_unknown_field_is_refused(admin: Actor):
    with pytest.raises(InvalidInput, match="^colour: is not a profile field$"):
        profiles.create(admin, **profile_fields(colour="blue"))


@pytest.mark.parametrize("changes", [
    {"incoming_port": 1, "outgoing_port": 65535},
    {"max_connections": 1, "timeout_seconds": 1},
    {"max_connections": 300, "timeout_seconds": 600},
    {"incoming_port": " 143 ", "max_connections": "25"},
    {"incoming_host": "127.0.0.1", "outgoing_host": "::1"},
    {"incoming_host": "[::1]", "outgoing_host": "Mail.Corp.Test."},
])
def test_values_at_the_limits_are_accepted(admin: Actor, changes: dict):
    created = profiles.create(admin, **profile_fields(**changes))
    if "incoming_host" in changes:
        assert created.incoming.host in ("127.0.0.1", "::1")
        assert created.outgoing.host in ("::1", "mail.corp.test")


@pytest.mark.parametrize("profile_type", ["imap_smtp", "pop3_smtp", "exchange_online", "exchange_server"])
@pytest.mark.parametrize("tls", ["implicit", "starttls", "none"])
def test_every_type_and_tls_mode_is_accepted(admin: Actor, profile_type: str, tls: str):
    # R34: credentials in clear to these (non-loopback) hosts take a global_admin's confirmation.
    created = profiles.create(admin, allow_plaintext_credentials=tls == "none",
                              **profile_fields(type=profile_type.upper(), incoming_tls=tls, outgoing_tls=tls))
    assert (created.type, created.incoming.tls, created.outgoing.tls) == (profile_type, tls, tls)


@pytest.mark.parametrize("incoming_auth, outgoing_auth", [
    ("mailbox", "none"), ("oauth2", "oauth2"), ("mailbox", "mailbox"), ("oauth2", "mailbox"),
])
def test_auth_kinds_without_profile_credentials_need_no_username(admin: Actor, incoming_auth, outgoing_auth):
    created = profiles.create(admin, **profile_fields(incoming_auth=incoming_auth, outgoing_auth=outgoing_auth))
    assert (created.incoming.auth, created.outgoing.auth) == (incoming_auth, outgoing_auth)


@pytest.mark.parametrize("side", ["incoming_auth", "outgoing_auth"])
def test_profile_credentials_need_a_username(admin: Actor, side: str):
    with pytest.raises(InvalidInput, match="^username: is required when incoming or outgoing authentication is profile"):
        profiles.create(admin, **profile_fields(**{side: "profile"}))
    assert count("profile") == 0
    created = profiles.create(admin, **profile_fields(**{side: "profile", "username": "sync-service"}))
    assert created.username == "sync-service"


def test_an_edit_that_leaves_profile_credentials_without_a_username_is_refused(admin: Actor):
    profiles.create(admin, **profile_fields(incoming_auth="profile", username="sync-service"))
    before = snapshot()
    with pytest.raises(InvalidInput, match="^username: is required"):
        profiles.update(admin, "imap", username="   ")
    with pytest.raises(InvalidInput, match="^username: is required"):
        profiles.update(admin, "imap", username="", outgoing_auth="profile")
    assert snapshot() == before


def test_verify_delivery_needs_an_imap_server(admin: Actor):
    with pytest.raises(InvalidInput, match="^verify-delivery: needs an IMAP incoming server"):
        profiles.create(admin, **profile_fields(type="pop3_smtp", verify_delivery="on"))


def test_a_ca_file_must_be_a_readable_pem_of_certificates(admin: Actor, tmp_path: Path, ca_pem: Path):
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN NONSENSE-----\nabc\n-----END NONSENSE-----\n")
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    for path, problem in ((tmp_path / "missing.pem", "does not exist or is not a file"),
                          (tmp_path, "does not exist or is not a file"),
                          (junk, "is not a PEM file of CA certificates"),
                          (empty, "is not a PEM file of CA certificates")):
        with pytest.raises(InvalidInput) as refused:
            profiles.create(admin, **profile_fields(ca_file=str(path)))
        assert str(refused.value).startswith(f"ca-file: {path} {problem}")
    assert count("profile") == 0
    created = profiles.create(admin, **profile_fields(ca_file=str(ca_pem)))
    assert created.ca_file == str(ca_pem)


def test_profile_names_are_unique(admin: Actor):
    profiles.create(admin, **IMAP_PROFILE)
    with pytest.raises(Conflict, match="a profile named 'imap' already exists"):
        profiles.create(admin, **IMAP_PROFILE)
    profiles.create(admin, **profile_fields(name="other"))
    with pytest.raises(Conflict, match="a profile named 'imap' already exists"):
        profiles.update(admin, "other", name="imap")


def test_an_update_changes_only_the_given_fields_and_is_audited(admin: Actor):
    users.add_user(admin, "Ann", "ann@corp.test")
    profiles.create(admin, **IMAP_PROFILE)
    since = last_audit_id()
    updated = profiles.update(admin, "imap", incoming_port=143, incoming_tls="starttls", max_connections=None,
                              owner="ann@corp.test")
    assert updated.incoming.as_dict() == {"host": "imap.corp.test", "port": 143, "tls": "starttls", "auth": "mailbox"}
    assert updated.max_connections == 10 and updated.owner == "ann@corp.test"
    assert updated.row_version == 2
    assert audit_actions(since) == ["profile.update"]
    record = AuditRecord.select().order_by(AuditRecord.id.desc()).get()
    assert record.before == '{"incoming_port": 993, "incoming_tls": "implicit", "owner": null}'
    assert '"incoming_port": 143' in record.after


def test_an_update_with_a_stale_version_is_refused(admin: Actor):
    profiles.create(admin, **IMAP_PROFILE)
    profiles.update(admin, "imap", incoming_port=143, expected_version=1)
    with pytest.raises(Conflict, match="changed by someone else"):
        profiles.update(admin, "imap", incoming_port=1143, expected_version=1)
    assert profiles.show(admin, "imap").incoming.port == 143


def test_an_update_with_nothing_to_change_or_of_an_unknown_profile_is_refused(admin: Actor):
    profiles.create(admin, **IMAP_PROFILE)
    with pytest.raises(InvalidInput, match="nothing to change"):
        profiles.update(admin, "imap")
    with pytest.raises(NotFound, match="no profile named 'ghost'"):
        profiles.update(admin, "ghost", incoming_port=143)
    with pytest.raises(InvalidInput, match="^incoming-port: 0 is out of range"):
        profiles.update(admin, "imap", incoming_port=0)


def test_an_update_to_the_same_values_writes_nothing(admin: Actor):
    profiles.create(admin, **IMAP_PROFILE)
    before = snapshot()
    profiles.update(admin, "imap", incoming_port="993", type="IMAP_SMTP")
    assert snapshot() == before


def test_a_viewer_cannot_create_or_change_profiles(actors: Actors):
    profiles.create(actors.admin, **IMAP_PROFILE)
    before = snapshot()
    with pytest.raises(PermissionDenied, match="vic is viewer"):
        profiles.create(actors.viewer, **profile_fields(name="other"))
    with pytest.raises(PermissionDenied, match="vic is viewer"):
        profiles.update(actors.viewer, "imap", incoming_port=143)
    assert snapshot() == before
