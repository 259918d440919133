"""R34: a secret goes only to the endpoint it was entered for.

A profile's endpoint is its id, both servers (host, port, TLS mode, kind of authentication) and its
CA bundle, written as one line of text (``binding_of``). Setting or confirming a secret stores
that line beside it (``password_bound_to``, ``token_bound_to`` of the mailbox or profile); a secret
whose line no longer matches its profile's (an endpoint edited, a mailbox moved to another
profile) is not sent. The line is plain text rather than a hash so that SQL can write it too
(``binding_sql`` for the bulk confirmation; schema migration 6 spells the same expression out, as a
released step is frozen SQL), and all must give the same text.

Credentials over TLS mode ``none`` go only to a loopback host, or where a ``global_admin``
confirmed the profile's endpoint for them (``plaintext_confirmed_for``)."""

from __future__ import annotations

import ipaddress
import shlex
from typing import Any

SIDES = ("incoming", "outgoing")
_SIDE_FIELDS = ("host", "port", "tls", "auth")
# What the endpoint is made of; a change to any of these un-confirms the profile's secrets.
ENDPOINT_FIELDS = tuple(f"{side}_{name}" for side in SIDES for name in _SIDE_FIELDS) + ("ca_file",)


def binding_of(profile: Any) -> str:
    """The endpoint of ``profile`` (a Profile row or snapshot) as the text stored with a secret."""
    parts = [str(profile.id)]
    for side in SIDES:
        parts += [str(getattr(profile, f"{side}_{name}")) for name in _SIDE_FIELDS]
    parts.append(profile.ca_file or "")
    return " ".join(parts)


def binding_sql(alias: str) -> str:
    """``binding_of`` as an SQL expression over the profile table under ``alias`` (both backends)."""
    columns = [f"{alias}.id"] + [f"{alias}.{side}_{name}" for side in SIDES for name in _SIDE_FIELDS]
    columns.append(f"coalesce({alias}.ca_file, '')")
    return " || ' ' || ".join(columns)


_OAUTH_FIELDS = ("oauth_provider", "oauth_tenant", "oauth_client_id", "oauth_issuer", "oauth_scope")


def oauth_binding_of(profile: Any) -> str:
    """What a profile's OAuth client credential is bound to: its endpoint and its OAuth settings,
    so that neither the mail servers its tokens go to nor the provider its credential goes to can
    change without someone confirming it."""
    return " ".join([binding_of(profile), "oauth"] + [getattr(profile, name) or "" for name in _OAUTH_FIELDS])


CONFIRMED, NOT_CONFIRMED, NO_SECRET = "confirmed", "not confirmed", "no secret"


def secret_state(record: Any, profile: Any) -> str:
    """Whether the secrets set on ``record`` (a mailbox or profile row) are confirmed for
    ``profile``'s endpoint as it is now: ``confirmed``, ``not confirmed`` or ``no secret``."""
    held = [(bound, binding_of) for present, bound in ((record.password_set, record.password_bound_to),
                                                       (record.token_set, record.token_bound_to)) if present]
    if getattr(record, "oauth_credential", None):
        held.append((record.oauth_credential_bound_to, oauth_binding_of))
    if not held:
        return NO_SECRET
    if profile is None:
        return NOT_CONFIRMED
    return CONFIRMED if all(bound == binding(profile) for bound, binding in held) else NOT_CONFIRMED


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: traffic that never leaves the machine."""
    name = host.strip().lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def cleartext_sides(profile: Any) -> list[str]:
    """The sides of ``profile`` that would send credentials without TLS to a host off this machine."""
    return [side for side in SIDES
            if getattr(profile, f"{side}_tls") == "none" and getattr(profile, f"{side}_auth") != "none"
            and not is_loopback(getattr(profile, f"{side}_host"))]


def plaintext_confirmed(profile: Any) -> bool:
    """Whether a global_admin confirmed this very endpoint for credentials in clear."""
    return getattr(profile, "plaintext_confirmed_for", None) == binding_of(profile)


def plaintext_refusal(profile: Any, side: str) -> str | None:
    """The sentence refusing credentials in clear on ``side``, or None when they may go."""
    if side not in cleartext_sides(profile) or plaintext_confirmed(profile):
        return None
    return plaintext_sentence(profile, side)


def plaintext_sentence(profile: Any, side: str) -> str:
    host, port = getattr(profile, f"{side}_host"), getattr(profile, f"{side}_port")
    return (f"credentials are not sent in clear to {host}:{port} ({side} TLS mode none, not a loopback "
            f"host): use TLS, or have a global_admin confirm it with `mbxtui profile edit "
            f"{shlex.quote(profile.name)} --allow-plaintext-credentials`")


def secret_label(what: str) -> str:
    return {"oauth2-token": "OAuth2 token", "oauth-credential": "OAuth client credential"}.get(what, "password")


def unconfirmed_sentence(owner: str, who: str, what: str, host: str, port: int) -> str:
    """Why a stored secret was not sent: ``owner`` is ``mailbox`` or ``profile``, ``who`` its
    address or name."""
    named = who if owner == "mailbox" else repr(who)
    return (f"the endpoint changed since the {secret_label(what)} of {owner} {named} was set, so it was "
            f"not sent to {host}:{port}: confirm it for the new endpoint with `mbxtui {owner} "
            f"confirm-secret {shlex.quote(who)}`, or set it again")
