"""Validators for every field a person can type. Each returns the cleaned value or raises
``InvalidInput`` naming the field and the problem."""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import ssl
import unicodedata
from datetime import datetime, timezone
from enum import StrEnum
from typing import TypeVar

from mbxtui.core.errors import InvalidInput


@functools.cache
def _email_validator():
    """email-validator, imported on first use: importing it compiles its regular expressions, 30 ms
    of every command that never checks an address (``mailbox list`` takes 150 ms in all)."""
    import email_validator

    # Mail systems administered with this tool often live on internal names (corp.local, .test,
    # .lan): accept special-use domains instead of refusing them as undeliverable on the Internet.
    email_validator.SPECIAL_USE_DOMAIN_NAMES = []
    return email_validator


MAX_NAME = 160
MAX_EMAIL = 254
MAX_HOST = 253
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

E = TypeVar("E", bound=StrEnum)


# Zero-width joiners are format characters that Persian and Indic names and emoji sequences need.
_JOINERS = frozenset("\u200c\u200d")


def shown(value: object, limit: int = 60) -> str:
    """``value`` quoted for a message: control characters escaped, cut short when long."""
    try:
        quoted = repr(value)
    except ValueError:  # an integer of more digits than Python writes out
        return "a number too long to show"
    return quoted if len(quoted) <= limit else quoted[:limit - 1] + "…"


def _string(field: str, value: object) -> str:
    try:
        return str(value)
    except ValueError:  # an integer of more digits than Python writes out
        raise InvalidInput(field, "is not text") from None


def _reject_control_characters(field: str, value: str) -> None:
    if value.isascii() and value.isprintable():  # no control character: checked at once, not one by one
        return
    for ch in value:
        category = unicodedata.category(ch)
        if category == "Cs":  # what undecodable bytes become, e.g. a command-line argument that is not UTF-8
            raise InvalidInput(field, f"is not valid text: it holds U+{ord(ch):04X}, a lone surrogate (not UTF-8?)")
        if category in ("Cc", "Cf", "Zl", "Zp") and ch not in _JOINERS:
            raise InvalidInput(field, f"contains a control character (U+{ord(ch):04X})")


def lookup(field: str, value: object) -> str:
    """A name to find a record by, exactly as given (a record stored with odd characters can still
    be found); refused only when it cannot be text at all, or holds NUL, which no stored name holds
    (names are checked for control characters on the way in, and PostgreSQL text cannot hold it)."""
    key = "" if value is None else _string(field, value)
    for ch in key:
        if unicodedata.category(ch) == "Cs":
            raise InvalidInput(field, f"is not valid text: it holds U+{ord(ch):04X}, a lone surrogate (not UTF-8?)")
    if "\x00" in key:
        raise InvalidInput(field, "is not valid text: it holds U+0000 (NUL)")
    return key


def text(field: str, value: str | None, *, max_length: int = MAX_NAME, required: bool = True) -> str:
    value = "" if value is None else _string(field, value).strip()
    if not value:
        if required:
            raise InvalidInput(field, "is required")
        return ""
    _reject_control_characters(field, value)
    if len(value) > max_length:
        raise InvalidInput(field, f"is {len(value)} characters long; the limit is {max_length}")
    return value


def email(field: str, value: str | None) -> str:
    raw = text(field, value, max_length=MAX_EMAIL)
    email_validator = _email_validator()
    try:
        result = email_validator.validate_email(
            raw, check_deliverability=False, globally_deliverable=False, allow_smtputf8=True
        )
    except email_validator.EmailNotValidError as exc:
        raise InvalidInput(field, f"{raw!r} is not a valid email address: {exc}") from None
    return result.normalized.lower()


def host(field: str, value: str | None) -> str:
    raw = text(field, value, max_length=MAX_HOST).lower().rstrip(".")
    try:
        ipaddress.ip_address(raw.strip("[]"))
        return raw.strip("[]")
    except ValueError:
        pass
    try:
        ascii_name = raw.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidInput(field, f"{raw!r} is not a valid host name") from None
    labels = ascii_name.split(".")
    if not all(_LABEL.match(label) for label in labels) or len(ascii_name) > MAX_HOST:
        raise InvalidInput(
            field, f"{raw!r} is not a valid host name (letters, digits, hyphens and dots; or an IP address)"
        )
    if labels[-1].isdigit():
        raise InvalidInput(field, f"{raw!r} is neither a valid IP address nor a host name")
    return raw


def stored_moment(value: datetime) -> datetime:
    """A date and time as every timestamp is stored: UTC without a time zone (one with a time zone,
    such as 2024-05-06T09:00+05:30, is turned into the same moment in UTC)."""
    if value.tzinfo is None:
        return value
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def integer(field: str, value: object, low: int, high: int, unit: str = "") -> int:
    if isinstance(value, bool):
        raise InvalidInput(field, f"{shown(value)} is not a whole number")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        raise InvalidInput(field, f"{shown(value)} is not a whole number") from None
    if not low <= number <= high:
        if abs(number) > 10**18:  # beyond what SQLite stores (and too long to print)
            raise InvalidInput(field, f"is far out of range {low}–{high}")
        suffix = f" {unit}" if unit else ""
        raise InvalidInput(field, f"{number}{suffix} is out of range {low}–{high}")
    return number


def port(field: str, value: object) -> int:
    return integer(field, value, 1, 65535)


def paging(limit: object, offset: object) -> tuple[int, int]:
    """A page of a listing: at most 100,000 rows, from a non-negative offset."""
    return integer("limit", limit, 0, 100_000), integer("offset", offset, 0, 10**12)


def choice(field: str, value: object, enum: type[E]) -> E:
    raw = _string(field, value).strip().lower() if value is not None else ""
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise InvalidInput(field, f"{shown(value)} is not one of: {allowed}") from None


def on_off(field: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    raw = _string(field, value).strip().lower()
    if raw in ("on", "yes", "true", "1"):
        return True
    if raw in ("off", "no", "false", "0"):
        return False
    raise InvalidInput(field, f"{shown(value)} is not on or off")


def ca_file(field: str, value: str | None) -> str | None:
    raw = text(field, value, max_length=4096, required=False)
    if not raw:
        return None
    path = os.path.abspath(os.path.expanduser(raw))
    if not os.path.isfile(path):
        raise InvalidInput(field, f"{raw} does not exist or is not a file")
    if not os.access(path, os.R_OK):
        raise InvalidInput(field, f"{raw} is not readable")
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise InvalidInput(field, f"{raw} is not a PEM file of CA certificates ({exc.__class__.__name__})") from None
    return path
