"""Email server profiles: how to reach a mail system, validated field by field."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Collection

from peewee import fn

from mbxtui.core import validation
from mbxtui.core.db import write_transaction
from mbxtui.core.endpoint_binding import (
    ENDPOINT_FIELDS, binding_of, cleartext_sides, plaintext_confirmed, secret_state,
)
from mbxtui.core.enums import IncomingAuth, OutgoingAuth, ProfileType, TlsMode
from mbxtui.core.errors import Conflict, InvalidInput, NotFound
from mbxtui.core.models import Mailbox, Profile, User, utcnow
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.oauth import settings as oauth_settings
from mbxtui.core.oauth.token_state import token_view
from mbxtui.core.services import audit, authorization_identity

DEFAULT_PORTS = {
    ("imap_smtp", "incoming", "implicit"): 993,
    ("imap_smtp", "incoming", "starttls"): 143,
    ("imap_smtp", "incoming", "none"): 143,
    ("pop3_smtp", "incoming", "implicit"): 995,
    ("pop3_smtp", "incoming", "starttls"): 110,
    ("pop3_smtp", "incoming", "none"): 110,
}

EDITABLE = (
    "name", "type", "incoming_host", "incoming_port", "incoming_tls", "incoming_auth",
    "outgoing_host", "outgoing_port", "outgoing_tls", "outgoing_auth", "username", "ca_file",
    "max_connections", "timeout_seconds", "verify_delivery", "owner", "process_email_from",
    "min_polling_minutes", "active", "retest_hours", "processed_folder",
) + oauth_settings.FIELDS
RETEST_HOURS = (1, 8760)  # an hour to a year
MAX_FOLDER = 200
CLEARED = ("", "none")  # what clears the re-test interval or the processed folder


def _date(field: str, value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return validation.stored_moment(value)
    try:
        return validation.stored_moment(datetime.fromisoformat(str(value).strip()))
    except ValueError:
        raise InvalidInput(field, f"{validation.shown(value)} is not a date (YYYY-MM-DD or YYYY-MM-DD HH:MM)") from None


def _clean_field(key: str, value: Any) -> Any:
    if key == "name":
        return validation.text("name", value, max_length=100)
    if key == "type":
        return validation.choice("type", value, ProfileType).value
    if key in ("incoming_host", "outgoing_host"):
        return validation.host(key.replace("_", "-"), value)
    if key in ("incoming_port", "outgoing_port"):
        return validation.port(key.replace("_", "-"), value)
    if key in ("incoming_tls", "outgoing_tls"):
        return validation.choice(key.replace("_", "-"), value, TlsMode).value
    if key == "incoming_auth":
        return validation.choice("incoming-auth", value, IncomingAuth).value
    if key == "outgoing_auth":
        return validation.choice("outgoing-auth", value, OutgoingAuth).value
    if key == "username":
        return validation.text("username", value, max_length=254, required=False)
    if key == "ca_file":
        return validation.ca_file("ca-file", value)
    if key == "max_connections":
        return validation.integer("max-connections", value, 1, 300)
    if key == "timeout_seconds":
        return validation.integer("timeout", value, 1, 600, "seconds")
    if key == "verify_delivery":
        return validation.on_off("verify-delivery", value)
    if key == "active":
        return validation.on_off("active", value)
    if key == "min_polling_minutes":
        return validation.integer("min-polling-minutes", value, 0, 1440, "minutes")
    if key == "process_email_from":
        return _date("process-email-from", value)
    if key == "owner":
        if value in (None, ""):
            return None
        address = validation.email("owner", value)
        user = User.get_or_none(User.email == address)
        if user is None:
            raise InvalidInput("owner", f"no user with email {address}")
        return user.id
    if key == "retest_hours":
        if isinstance(value, str) and value.strip().lower() in CLEARED:
            return None
        return validation.integer("retest-hours", value, *RETEST_HOURS, "hours")
    if key == "processed_folder":
        return _folder("processed-folder", value)
    if key in oauth_settings.FIELDS:
        return oauth_settings.clean(key, value)
    raise InvalidInput(key, "is not a profile field")


def _folder(field: str, value: Any) -> str | None:
    """R28: the IMAP folder processed mail is moved to; ``none`` or empty: none (it is deleted)."""
    name = validation.text(field, value, max_length=MAX_FOLDER, required=False)
    if name.lower() in CLEARED:
        return None
    if "*" in name or "%" in name:
        raise InvalidInput(field, f"{validation.shown(name)} holds * or %, which IMAP reads as wildcards: "
                                  "choose a folder name without them")
    if name.upper() == "INBOX":
        raise InvalidInput(field, "INBOX is where processed mail is read from: choose another folder")
    return name


def _check_consistency(values: dict[str, Any], changed: Collection[str] = ()) -> None:
    uses_profile_credentials = "profile" in (values["incoming_auth"], values["outgoing_auth"])
    if uses_profile_credentials and not values.get("username"):
        raise InvalidInput("username", "is required when incoming or outgoing authentication is profile")
    if values["verify_delivery"] and values["type"] == ProfileType.POP3_SMTP:
        raise InvalidInput("verify-delivery", "needs an IMAP incoming server; this profile is pop3_smtp")
    if values["processed_folder"] is not None and values["type"] != ProfileType.IMAP_SMTP:
        if "type" in changed and "processed_folder" not in changed:
            raise InvalidInput("type", f"a {values['type']} profile cannot move processed mail to folder "
                                       f"{validation.shown(values['processed_folder'])}: clear the processed "
                                       "folder first (processed folder none)")
        raise InvalidInput("processed-folder", f"only an imap_smtp profile moves processed mail to a folder; this "
                                               f"profile is {values['type']}: leave it empty (processed mail is "
                                               "deleted from the server)")
    oauth_settings.check(values, changed)


def _check_cleartext(values: dict[str, Any], profile_id: int, confirmed_for: str | None,
                     changed: Collection[str] = ()) -> None:
    """R34: credentials in clear only to a loopback host, or where a global_admin confirmed this
    endpoint (``confirmed_for``). The refusal names the field whose change made it so: the TLS mode,
    else the host, port or authentication that was edited."""
    endpoint = SimpleNamespace(id=profile_id, plaintext_confirmed_for=confirmed_for,
                               **{key: values[key] for key in ENDPOINT_FIELDS})
    sides = cleartext_sides(endpoint)
    if not sides or plaintext_confirmed(endpoint):
        return
    side = sides[0]
    where = f"{values[f'{side}_host']}:{values[f'{side}_port']}"
    remedy = "choose implicit or starttls, or have a global_admin save it with --allow-plaintext-credentials"
    edited = [key for key in (f"{side}_host", f"{side}_port", f"{side}_auth") if key in changed]
    if f"{side}_tls" in changed or not edited:
        raise InvalidInput(f"{side}-tls",
                           f"none would send credentials in clear to {where}, which is not a loopback host: {remedy}")
    raise InvalidInput(edited[0].replace("_", "-"),
                       f"{where} is not a loopback host and {side} TLS mode none would send credentials to it "
                       f"in clear: {remedy}")


def _values_of(profile: Profile) -> dict[str, Any]:
    return {key: getattr(profile, "owner_id" if key == "owner" else key) for key in EDITABLE}


def secret_endpoint_state(profile: Profile) -> str:
    """Whether the profile's secrets are confirmed for its endpoint as it is now (R34)."""
    return secret_state(profile, profile)


def set_or_not(present: bool) -> str:
    """How a secret is shown: whether it is set, never what it is (R4)."""
    return "set" if present else "not set"


@dataclass(frozen=True)
class ProfileServer:
    """One side (incoming or outgoing) of a profile."""

    host: str
    port: int
    tls: str
    auth: str

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "tls": self.tls, "auth": self.auth}


@dataclass(frozen=True)
class ProfileRecord:
    """A profile as shown: its secrets only as set or not (R4); ``mailboxes`` is the count of its
    mailboxes where it was counted (show, list), None after a create or an update."""

    id: int
    name: str
    type: str
    incoming: ProfileServer
    outgoing: ProfileServer
    username: str
    password_set: bool
    token_set: bool
    ca_file: str | None
    max_connections: int
    timeout_seconds: int
    verify_delivery: bool
    process_email_from: str | None
    min_polling_minutes: int
    retest_hours: int | None
    processed_folder: str | None
    owner: str | None
    active: bool
    row_version: int
    mailboxes: int | None = None
    secret_endpoint: str = "no secret"  # R34: confirmed, not confirmed, no secret
    plaintext_credentials: bool = False  # a global_admin allowed credentials in clear to this endpoint
    oauth: dict[str, Any] | None = None  # the provider's settings; the credential only as set or not

    @classmethod
    def of(cls, profile: Profile, *, mailbox_count: int | None = None) -> ProfileRecord:
        return cls(
            id=profile.id,
            name=profile.name,
            type=profile.type,
            incoming=ProfileServer(profile.incoming_host, profile.incoming_port, profile.incoming_tls,
                                   profile.incoming_auth),
            outgoing=ProfileServer(profile.outgoing_host, profile.outgoing_port, profile.outgoing_tls,
                                   profile.outgoing_auth),
            username=profile.username,
            password_set=bool(profile.password_set),
            token_set=bool(profile.token_set),
            ca_file=profile.ca_file,
            max_connections=profile.max_connections,
            timeout_seconds=profile.timeout_seconds,
            verify_delivery=profile.verify_delivery,
            process_email_from=(profile.process_email_from.isoformat(sep=" ")
                                if profile.process_email_from else None),
            min_polling_minutes=profile.min_polling_minutes,
            retest_hours=profile.retest_hours,
            processed_folder=profile.processed_folder,
            owner=profile.owner.email if profile.owner_id else None,
            active=profile.active,
            row_version=profile.row_version,
            mailboxes=mailbox_count,
            secret_endpoint=secret_endpoint_state(profile),
            plaintext_credentials=plaintext_confirmed(profile),
            oauth=_oauth_view(profile),
        )

    def as_dict(self) -> dict[str, Any]:
        """As ``mbxtui profile show --json`` prints it (the keys in this order)."""
        data = {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "incoming": self.incoming.as_dict(),
            "outgoing": self.outgoing.as_dict(),
            "username": self.username,
            "password": set_or_not(self.password_set),
            "oauth2_token": set_or_not(self.token_set),
            "secret_endpoint": self.secret_endpoint,
            "plaintext_credentials": "allowed" if self.plaintext_credentials else "not allowed",
            "ca_file": self.ca_file,
            "max_connections": self.max_connections,
            "timeout_seconds": self.timeout_seconds,
            "verify_delivery": self.verify_delivery,
            "process_email_from": self.process_email_from,
            "min_polling_minutes": self.min_polling_minutes,
            "retest_hours": self.retest_hours,
            "processed_folder": self.processed_folder,
            "owner": self.owner,
            "active": self.active,
            "row_version": self.row_version,
        }
        if self.oauth is not None:
            data["oauth"] = self.oauth
        if self.mailboxes is not None:
            data["mailboxes"] = self.mailboxes
        return data


def _oauth_view(profile: Profile) -> dict[str, Any] | None:
    if not profile.oauth_provider:
        return None
    return {
        "provider": profile.oauth_provider, "tenant": profile.oauth_tenant, "client_id": profile.oauth_client_id,
        "issuer": profile.oauth_issuer, "scope": profile.oauth_scope or oauth_settings.DEFAULT_SCOPES.get(
            profile.oauth_provider),
        "credential": f"{profile.oauth_credential} set" if profile.oauth_credential else "not set",
        "token": token_view(profile),
    }


def _audit_view(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat(sep=" ") if isinstance(v, datetime) else v) for k, v in values.items()}


def create(actor: Actor, *, allow_plaintext_credentials: bool = False, **fields: Any) -> ProfileRecord:
    """Create a profile. Required: name, type, incoming/outgoing host, port, tls and auth.
    ``allow_plaintext_credentials`` (global_admin only) lets it send credentials over TLS mode
    none to a host off this machine (R34)."""
    require(actor, Permission.CONFIGURE)
    if allow_plaintext_credentials:
        require(actor, Permission.ALLOW_PLAINTEXT)
    values: dict[str, Any] = {
        "username": "", "ca_file": None, "max_connections": 10, "timeout_seconds": 30,
        "verify_delivery": False, "owner": None, "process_email_from": None,
        "min_polling_minutes": 0, "active": True, "retest_hours": None, "processed_folder": None,
        **{field: None for field in oauth_settings.FIELDS},
    }
    for key in EDITABLE:
        if fields.get(key) is not None:
            values[key] = _clean_field(key, fields[key])
        elif key not in values:
            raise InvalidInput(key.replace("_", "-"), "is required")
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not a profile field")
    _check_consistency(values)
    if not allow_plaintext_credentials:
        _check_cleartext(values, 0, None)
    with write_transaction():
        if Profile.get_or_none(Profile.name == values["name"]) is not None:
            raise Conflict(f"a profile named {values['name']!r} already exists")
        row = dict(values)
        row["owner_id"] = row.pop("owner")
        profile = Profile.create(**row)
        audit.record(actor, "profile.create", "profile", f"created profile {profile.name}",
                     [(profile.id, None, _audit_view(values))])
        if allow_plaintext_credentials:
            _allow_plaintext(actor, profile)
    return ProfileRecord.of(profile)


def _allow_plaintext(actor: Actor, profile: Profile) -> None:
    """Record a global_admin's confirmation of the profile's endpoint for credentials in clear."""
    profile.plaintext_confirmed_for = binding_of(profile)
    Profile.update(plaintext_confirmed_for=profile.plaintext_confirmed_for).where(Profile.id == profile.id).execute()
    audit.record(actor, "profile.allow_plaintext_credentials", "profile",
                 f"allowed credentials in clear to the endpoint of profile {profile.name}",
                 [(profile.id, {"plaintext_credentials": "not allowed"}, {"plaintext_credentials": "allowed"})])


def get(name: str) -> Profile:
    name = validation.lookup("profile", name)
    profile = Profile.get_or_none(Profile.name == name)
    if profile is None:
        raise NotFound(f"no profile named {validation.shown(name)}")
    return profile


def update(actor: Actor, name: str, /, expected_version: int | None = None, *,
           allow_plaintext_credentials: bool = False, **fields: Any) -> ProfileRecord:
    """Change the given fields of profile ``name`` (``None`` leaves a field as it is; ``name`` in
    ``fields`` renames it). A changed endpoint (host, port, TLS mode, authentication, CA file)
    leaves the profile's and its mailboxes' secrets unconfirmed until someone confirms them, and
    clears a confirmation of credentials in clear; ``allow_plaintext_credentials`` (global_admin
    only) confirms the endpoint as saved for them (R34)."""
    require(actor, Permission.CONFIGURE)
    if allow_plaintext_credentials:
        require(actor, Permission.ALLOW_PLAINTEXT)
    changes = {key: _clean_field(key, value) for key, value in fields.items() if value is not None}
    if not changes and not allow_plaintext_credentials:
        raise InvalidInput("profile", "nothing to change")
    with write_transaction():
        profile = get(name)
        if expected_version is not None and profile.row_version != expected_version:
            raise Conflict(f"profile {name!r} was changed by someone else since you opened it; reload and try again")
        before = _values_of(profile)
        changes = oauth_settings.cleared_with_provider(before, changes)
        after = {**before, **changes}
        _check_consistency(after, changes.keys())
        if "name" in changes and changes["name"] != profile.name:
            if Profile.get_or_none(Profile.name == changes["name"]) is not None:
                raise Conflict(f"a profile named {changes['name']!r} already exists")
        changed = {k: v for k, v in changes.items() if before[k] != v}
        oauth_changed = sorted(key for key in changed if key.startswith("oauth_"))
        if oauth_changed:
            authorization_identity.refuse_new_client(  # R34: refresh tokens go to one OAuth client
                profile, after, "--" + oauth_changed[0].replace("_", "-"))
        endpoint_changed = any(key in ENDPOINT_FIELDS for key in changed)
        confirmed_for = None if endpoint_changed else profile.plaintext_confirmed_for
        if not allow_plaintext_credentials:
            _check_cleartext(after, profile.id, confirmed_for, changed)
        if changed:
            for key, value in changed.items():
                setattr(profile, "owner_id" if key == "owner" else key, value)
            profile.plaintext_confirmed_for = confirmed_for
            profile.modified_on = utcnow()
            profile.row_version += 1
            profile.save()
            audit.record(actor, "profile.update", "profile",
                         f"changed profile {profile.name}: " + ", ".join(sorted(changed)),
                         [(profile.id, _audit_view({k: before[k] for k in changed}), _audit_view(changed))])
        if allow_plaintext_credentials and not plaintext_confirmed(profile):
            _allow_plaintext(actor, profile)
    return ProfileRecord.of(profile)


def show(actor: Actor, name: str) -> ProfileRecord:
    require(actor, Permission.READ)
    profile = get(name)
    return ProfileRecord.of(profile, mailbox_count=Mailbox.select().where(Mailbox.profile == profile).count())


def list_profiles(actor: Actor) -> list[ProfileRecord]:
    require(actor, Permission.READ)
    counts = dict(
        Mailbox.select(Mailbox.profile, fn.COUNT(Mailbox.id)).group_by(Mailbox.profile).tuples()
    )
    return [ProfileRecord.of(p, mailbox_count=counts.get(p.id, 0)) for p in Profile.select().order_by(Profile.name)]
