"""Bad input (R22): every validator, every service that takes typed input, the CSV import, the
command line and the console meet generated and hostile values — addresses, hosts, ports, enum
values, Unicode (right-to-left text, combining marks, emoji, NUL, lone surrogates), control
characters, very long fields, broken CSV files in the wrong encoding.

Each case ends in one of two ways: a refusal (``MbxError``) whose message names the field and the
problem, with every table exactly as it was; or a record that reads back as the validator
normalised it. Any other exception, a half-written import, or a raw escape sequence reaching the
terminal fails the test."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import ipaddress
import itertools
import json
import os
import re
import subprocess
import sys
import unicodedata
from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypothesis import HealthCheck, assume, event, example, given, settings, strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.provisional import domains

from mbxtui import cli as command_line
from mbxtui.core import db, validation
from mbxtui.core.display import INVISIBLE
from mbxtui.core.enums import (
    ActMethod, AlertLevel, IncomingAuth, IncomingMethod, OutgoingAuth, OutgoingMethod, ProfileType, Role, TlsMode,
    Tracking, View,
)
from mbxtui.core.errors import Conflict, InvalidInput, InvalidRows, MbxError, NotFound, PermissionDenied
from mbxtui.core.models import database
from mbxtui.core.permissions import Actor
from mbxtui.core.secrets import KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV, SecretStore
from mbxtui.core.services import alerts, audit, bulk, imports, mailbox_views, mailboxes, operators, profiles, users
from mbxtui.core.services import settings as org_settings
from mbxtui.core.services.profiles import ProfileRecord
from mbxtui.core.services.selection import Selection
from tests.backends import ON_POSTGRES
from tests.cli.conftest import Cli, cli, cli_template  # noqa: F401  (fixtures)
from tests.core.conftest import actors, admin, db_path, template_db  # noqa: F401  (fixtures)
from tests.core.support import IMAP_PROFILE, file_bytes, snapshot

UNIQUE = itertools.count(1)  # for names that must not repeat from one generated case to the next

# Generated cases per property: enough to meet every kind of hostile value several times, few
# enough that the whole file runs in well under a minute on two cores.
PURE = settings(max_examples=400, deadline=None)
STORED = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Characters no terminal may receive raw: C0, DEL, C1, bidirectional controls, separators, surrogates.
UNSAFE = frozenset(INVISIBLE)
TERMINAL_ATTACK = "\x1b[2J\x1b]0;pwned\x07"  # clear the screen, retitle the window
C1_ATTACK = "\x9b31m\x9d0;pwned\x9c"  # the same through 8-bit C1 controls (CSI, OSC, ST)

# --- hostile values ------------------------------------------------------------------------------

ANY_CHARACTER = st.characters(exclude_categories=())  # lone surrogates included
HOSTILE_SAMPLES = (
    TERMINAL_ATTACK, C1_ATTACK, "Ann\x00Archer", "\ud800", "a\udcffb", "invoice\u202efdp.exe", "\u2066x\u2069",
    "\u200fabc", "line\u2028break", "tab\there", "cr\rlf\n", "\x7f", "\ufeffbom", "soft\u00adhyphen",
    "مرحبا بالعالم", "שלום עולם", "می\u200cخواهم", "👨\u200d👩\u200d👧", "🏴\u200d☠️", "e\u0301\u0301\u0301",
    "Z\u0337\u0322\u031ba\u0336l\u0335g\u0334o", "\U0010ffff", "\ufffd", "\ue000", " ", "", "  padded  ",
    "x" * 10_000, "é" * 161, "'; DROP TABLE mailbox; --", "%_\\", "{count}", "[bold red]markup[/]", "None",
)


def hostile_text(max_size: int = 30) -> st.SearchStrategy[str]:
    """Any text, with the samples above alone or inside random text."""
    around = st.text(ANY_CHARACTER, max_size=6)
    return st.one_of(
        st.sampled_from(HOSTILE_SAMPLES),
        st.text(ANY_CHARACTER, max_size=max_size),
        st.builds(lambda a, b, c: a + b + c, around, st.sampled_from(HOSTILE_SAMPLES), around),
    )


ADDRESS_SAMPLES = (
    "ann@corp.test\r\nBcc: eve@evil.test", '"ann archer"@corp.test', "ann@[127.0.0.1]", "ann@[IPv6:::1]",
    "ann@localhost", "Ann <ann@corp.test>", "ann@@corp.test", "@corp.test", "ann@", "ann@corp..test",
    "ann@-corp.test", "ann@corp.test.", "a" * 65 + "@corp.test", "ann@" + "a" * 64 + ".test",
    "ann@" + ("a" * 63 + ".") * 4 + "test", "用户@例子.广告", "ÄNN@BÜRO.TEST", "ann@xn--zz.test",
    "ann@corp_test.test", "ann+tag@corp.test", "ann@ｃｏｒｐ.test", "ann@corp.test\x00", "İ@corp.test",
    "ann@1.2.3.4", "x@\u212a.test", "ann@corp.test" + TERMINAL_ATTACK, "\u202eann@corp.test",
)


def hostile_addresses() -> st.SearchStrategy[str]:
    def spliced(address: str, inserted: str, at: int) -> str:
        at %= len(address) + 1
        return address[:at] + inserted + address[at:]

    return st.one_of(
        st.emails(), st.emails().map(str.upper), st.sampled_from(ADDRESS_SAMPLES), hostile_text(),
        st.builds(lambda local, domain: f"{local}@{domain}", hostile_text(12), hostile_text(12)),
        st.builds(spliced, st.emails(), st.sampled_from(HOSTILE_SAMPLES), st.integers(0, 60)),
    )


HOST_SAMPLES = (
    "127.0.0.1", "::1", "[::1]", "[::1", "fe80::1%eth0", "256.1.1.1", "1.2.3", "0x7f.0.0.1", "localhost",
    "MAIL.CORP.TEST.", "..", ".", "-a.test", "a-.test", "a_b.test", "a" * 64 + ".test",
    ("a" * 63 + ".") * 4 + "test", "例子.测试", "xn--.test", "ﬀ.test", "mail.corp.test:993",
    "http://mail.corp.test", "mail corp.test", "mail.corp.test/", "123", "1e100", "mail.corp.test" + TERMINAL_ATTACK,
)
HOSTS = st.one_of(st.sampled_from(HOST_SAMPLES), domains(), st.ip_addresses().map(str), hostile_text())

NUMBER_SAMPLES = ("٩٩٣", "９９３", "9_93", "+993", "-0", "0x3e1", "993.0", "1e3", "9" * 5000, "", "  ", " 993 ")
NUMBERS = st.one_of(
    st.integers(-(10**30), 10**30), st.integers(-(10**30), 10**30).map(str),
    st.integers(-5, 70_000).map(lambda n: f" {n}\t"), st.sampled_from(NUMBER_SAMPLES), st.floats(), st.booleans(),
    st.none(), st.just(2**5000), hostile_text(), st.lists(st.integers(), max_size=2),
)

SWITCH_SAMPLES = ("on", "OFF", " yes ", "No", "true", "FALSE", "1", "0", "y", "enabled", "")
SWITCHES = st.one_of(st.sampled_from(SWITCH_SAMPLES), st.booleans(), st.integers(-2, 2), st.none(), hostile_text())

DATE_SAMPLES = (
    "2024-05-06", "2024-05-06 09:00", "2024-05-06T09:00:00+05:30", "2024-05-06 09:00:00.123456", "2024-02-30",
    "0001-01-01", "9999-12-31 23:59:59", "2024-13-01", "yesterday", "06/05/2024", "２０２４-05-06", "2024-W01-1", "",
)
DATES = st.one_of(st.sampled_from(DATE_SAMPLES), st.datetimes().map(str), hostile_text())


def enum_values(enum: type) -> st.SearchStrategy[Any]:
    """The enum's values as people mistype them, and anything else."""
    valid = st.sampled_from([member.value for member in enum])
    return st.one_of(
        valid, valid.map(str.upper), valid.map(lambda v: f"  {v.title()}\t"), valid.map(lambda v: v.replace("_", "-")),
        valid.map(lambda v: v + "\x00"), st.sampled_from(("", "none", "NONE", None, 0, 1.5)), hostile_text(),
    )


def mostly(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` three times in four: a case with several arguments must often pass them all, or
    what gets stored would seldom be checked."""
    return st.integers(0, 3).flatmap(lambda pick: hostile if pick == 0 else valid)


# --- what a refusal must look like ---------------------------------------------------------------

def assert_clear_refusal(error: BaseException, fields: Collection[str], *,
                         also: tuple[type[MbxError], ...] = ()) -> None:
    """``error`` is a refusal naming one of ``fields`` (or one of the ``also`` kinds, whose message
    names the record), in one line with no raw control character and of a readable length."""
    assert isinstance(error, MbxError), f"{type(error).__name__} escaped instead of a refusal: {error!r}"
    message = str(error)
    assert message.strip(), "an empty refusal"
    assert not UNSAFE.intersection(map(ord, message)), f"raw control character in the message {message!r}"
    if isinstance(error, InvalidInput):
        assert error.field in fields, f"the refusal names {error.field!r}, not one of {sorted(fields)}: {message}"
        assert message == f"{error.field}: {error.problem}" and error.problem.strip()
        assert len(message) <= 500, f"a {len(message)}-character message"
    else:
        assert isinstance(error, also), f"{type(error).__name__} is not an expected refusal: {message}"


def outcome(call: Callable[[], Any]) -> tuple[Any, MbxError | None]:
    """The result of ``call``, or the refusal it raised; any other exception propagates. Each
    generated case is counted as accepted or refused (``--hypothesis-show-statistics``)."""
    try:
        result, refusal = call(), None
    except MbxError as error:
        result, refusal = None, error
    if currently_in_test_context():
        event(f"refused ({type(refusal).__name__})" if refusal is not None else "accepted")
    return result, refusal


def refused_without_writing(call: Callable[[], Any], fields: Collection[str], *,
                            also: tuple[type[MbxError], ...] = ()) -> Any:
    """Run ``call``; if it refuses, the refusal must be clear and the database untouched. Returns
    the result, or None when refused."""
    before = snapshot()
    result, refusal = outcome(call)
    if refusal is not None:
        assert_clear_refusal(refusal, fields, also=also)
        assert snapshot() == before, f"refused ({refusal}) but the database changed"
    return result


def is_clean_text(value: str) -> bool:
    return not any(
        unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") and ch not in "\u200c\u200d" for ch in value)


# --- the validators, on their own ----------------------------------------------------------------

@PURE
@given(value=st.one_of(hostile_text(), st.none(), st.integers()), max_length=st.integers(1, 200))
def test_text_keeps_clean_text_and_refuses_the_rest(value: Any, max_length: int):
    stripped = "" if value is None else str(value).strip()
    expected_ok = bool(stripped) and is_clean_text(stripped) and len(stripped) <= max_length
    result, refusal = outcome(lambda: validation.text("name", value, max_length=max_length))
    if refusal is not None:
        assert_clear_refusal(refusal, {"name"})
        assert not expected_ok, f"{value!r} refused: {refusal}"
    else:
        assert expected_ok and result == stripped
        assert validation.text("name", result, max_length=max_length) == result


@PURE
@given(value=hostile_text())
def test_optional_text_may_be_empty_but_never_dirty(value: str):
    result, refusal = outcome(lambda: validation.text("username", value, required=False))
    if refusal is None:
        assert result == value.strip() and is_clean_text(result)
    else:
        assert_clear_refusal(refusal, {"username"})
        assert value.strip(), "empty optional text refused"


@PURE
@given(value=hostile_addresses())
def test_an_address_is_refused_or_normalised_once_and_for_all(value: str):
    result, refusal = outcome(lambda: validation.email("email", value))
    if refusal is not None:
        assert_clear_refusal(refusal, {"email"})
        return
    # Stored addresses are looked up again through the same validator: it must give them back.
    assert validation.email("email", result) == result
    assert result == result.lower() and result.count("@") >= 1 and is_clean_text(result)


@PURE
@given(value=st.emails())
def test_every_ordinary_address_is_accepted_whatever_its_case(value: str):
    normalised = validation.email("email", value)
    assert normalised == validation.email("email", value.upper()) == validation.email("email", f" {value} ")
    if ".xn--" not in value.lower():  # a domain in punycode is kept in its Unicode form
        assert normalised == value.lower()


@PURE
@given(value=HOSTS)
def test_a_host_is_refused_or_is_an_address_or_a_dns_name(value: str):
    result, refusal = outcome(lambda: validation.host("incoming-host", value))
    if refusal is not None:
        assert_clear_refusal(refusal, {"incoming-host"})
        return
    assert validation.host("incoming-host", result) == result
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(result)
        return
    labels = result.encode("idna").decode("ascii").split(".")
    assert all(0 < len(label) <= 63 for label in labels) and len(result) <= 253 and not labels[-1].isdigit()


@PURE
@given(value=st.one_of(domains(), st.ip_addresses().map(str)))
def test_every_dns_name_and_ip_address_is_accepted(value: str):
    assert validation.host("outgoing-host", value) == value.lower().rstrip(".")


@PURE
@given(value=NUMBERS)
def test_a_port_is_a_whole_number_in_range_or_refused(value: Any):
    result, refusal = outcome(lambda: validation.port("incoming-port", value))
    if refusal is not None:
        assert_clear_refusal(refusal, {"incoming-port"})
        canonical = value if isinstance(value, int) and not isinstance(value, bool) else None
        assert canonical is None or not 1 <= canonical <= 65535, f"{value!r} refused: {refusal}"
        return
    assert type(result) is int and 1 <= result <= 65535
    assert result == (value if isinstance(value, int) else int(str(value).strip()))


@PURE
@given(number=st.integers(1, 65535), padding=st.sampled_from(("", " ", "\t", "  \n")))
def test_every_port_written_plainly_is_accepted(number: int, padding: str):
    assert validation.port("outgoing-port", f"{padding}{number}{padding}") == number


@PURE
@given(value=NUMBERS, low=st.integers(-5, 5), span=st.integers(0, 2000))
def test_bounded_numbers_stay_in_their_bounds(value: Any, low: int, span: int):
    result, refusal = outcome(lambda: validation.integer("timeout", value, low, low + span, "seconds"))
    if refusal is not None:
        assert_clear_refusal(refusal, {"timeout"})
    else:
        assert low <= result <= low + span


@pytest.mark.parametrize("check", [
    lambda actor, v: validation.text("name", v), lambda actor, v: validation.email("email", v),
    lambda actor, v: validation.host("name", v), lambda actor, v: validation.choice("type", v, ProfileType),
    lambda actor, v: validation.on_off("active", v), lambda actor, v: validation.port("port", v),
    lambda actor, v: validation.ca_file("ca-file", v),
    lambda actor, v: profiles.create(actor, **{**IMAP_PROFILE, "process_email_from": v}),
    lambda actor, v: mailbox_views.list_mailboxes(actor, sort=v),
], ids=["text", "email", "host", "choice", "on/off", "port", "ca file", "date", "sort"])
def test_a_number_too_long_to_write_out_is_refused(admin: Actor, check: Callable[[Actor, Any], Any]):
    # Python refuses to turn an integer of more than 4,300 digits into text, or into its repr.
    with pytest.raises(MbxError) as refused:
        check(admin, 10**5000)
    assert_clear_refusal(refused.value, {"name", "email", "type", "active", "port", "ca-file", "process-email-from",
                                         "sort"})


ENUMS = (ProfileType, TlsMode, IncomingAuth, OutgoingAuth, IncomingMethod, OutgoingMethod, ActMethod, Role,
         AlertLevel, View)


@PURE
@given(data=st.data(), enum=st.sampled_from(ENUMS))
def test_an_enum_value_is_a_member_or_refused_listing_the_members(data: st.DataObject, enum: type):
    value = data.draw(enum_values(enum))
    wanted = "" if value is None else str(value).strip().lower()
    members = {member.value for member in enum}
    result, refusal = outcome(lambda: validation.choice("type", value, enum))
    if refusal is not None:
        assert_clear_refusal(refusal, {"type"})
        assert wanted not in members
        assert refusal.problem.endswith("is not one of: " + ", ".join(m.value for m in enum))
    else:
        assert result in enum and result.value == wanted


@PURE
@given(value=SWITCHES)
def test_a_switch_is_on_or_off_or_refused(value: Any):
    words = {"on": True, "yes": True, "true": True, "1": True, "off": False, "no": False, "false": False, "0": False}
    expected = value if isinstance(value, bool) else words.get(str(value).strip().lower())
    result, refusal = outcome(lambda: validation.on_off("active", value))
    if refusal is not None:
        assert_clear_refusal(refusal, {"active"})
        assert expected is None
    else:
        assert result is expected


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real CA bundle and files that only look like one."""
    folder = tmp_path_factory.mktemp("ca-files")
    authority = trustme.CA()
    contents = {
        "ca.pem": authority.cert_pem.bytes(),
        "ca-then-junk.pem": authority.cert_pem.bytes() + b"\x00\xff trailing junk",
        "key.pem": authority.private_key_pem.bytes(),
        "empty.pem": b"",
        "truncated.pem": b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "nul.pem": b"\x00" * 64,
        "utf16.pem": authority.cert_pem.bytes().decode().encode("utf-16"),
    }
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    (folder / "a-directory").mkdir()
    return {name: folder / name for name in [*contents, "a-directory"]}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_ca_file_is_a_readable_pem_bundle_or_refused(ca_files: dict[str, Path], data: st.DataObject):
    value = data.draw(st.one_of(st.sampled_from([str(p) for p in ca_files.values()]), hostile_text(),
                                st.sampled_from(("/", "/dev/null", "/dev/zero", "~", "/proc/self/mem")),
                                st.binary(max_size=20).map(lambda b: "/tmp/" + b.decode("latin-1")),
                                st.just(str(ca_files["ca.pem"]) + "\x00")))
    bundles = {str(ca_files["ca.pem"]), str(ca_files["ca-then-junk.pem"])}
    result, refusal = outcome(lambda: validation.ca_file("ca-file", value))
    if refusal is not None:
        assert_clear_refusal(refusal, {"ca-file"})
        assert value not in bundles, f"a real CA bundle refused: {refusal}"
    elif value.strip():
        assert result in bundles and os.path.abspath(value.strip()) == result
    else:
        assert result is None


# --- services: users, queues, profiles, mailboxes, settings --------------------------------------

@pytest.fixture
def organisation(admin: Actor) -> dict[str, Any]:
    """A default IMAP profile, a POP3 one, users Ann and Bob, queue Sales (owner Ann) and a forward
    mailbox."""
    profiles.create(admin, **IMAP_PROFILE)
    profiles.create(admin, **{**IMAP_PROFILE, "name": "pop", "type": "pop3_smtp", "incoming_port": 995})
    org_settings.update(admin, default_profile="imap")
    users.add_user(admin, "Ann", "ann@corp.test")
    users.add_user(admin, "Bob", "bob@corp.test")
    users.add_queue(admin, "Sales", "sales@corp.test", "ann@corp.test")
    mailboxes.create_forward_mailbox(admin, name="Inbound", email="fwd@corp.test", profile="imap")
    return {"admin": admin, "edited_profile": profiles.get("pop").id,
            "queue_mailbox": mailboxes.get("sales@corp.test").id}


NAMES = mostly(st.text(st.characters(categories=["L", "M", "N", "Zs", "P", "S"]), min_size=1, max_size=20),
               hostile_text())
NEW_ADDRESSES = mostly(st.emails(), hostile_addresses())
OWNERS = mostly(st.sampled_from(("ann@corp.test", " ANN@corp.test ")),
                st.one_of(hostile_addresses(), st.sampled_from(("sales@corp.test", "ann@corp.test\x1b"))))
PROFILE_NAMES = mostly(st.sampled_from(("imap", " pop ")), st.one_of(st.just("POP"), hostile_text()))


@STORED
@given(name=NAMES, address=NEW_ADDRESSES)
def test_a_new_user_is_refused_or_found_again_by_its_address(organisation, name: str, address: str):
    admin = organisation["admin"]
    created = refused_without_writing(lambda: users.add_user(admin, name, address), {"name", "email"},
                                      also=(Conflict,))
    if created is None:
        return
    assert created.as_dict() == {"name": name.strip(), "email": validation.email("email", address), "active": True,
                                 "mailbox": validation.email("email", address)}
    shown = mailboxes.show(admin, created.email)  # looked up through the validator again
    assert (shown.name, shown.email, shown.regarding) == (name.strip(), created.email, "user")
    assert users.list_users(admin, filter_text=created.email)[0].name == name.strip()


@STORED
@given(name=NAMES, address=NEW_ADDRESSES, owner=OWNERS)
def test_a_new_queue_is_refused_or_found_again(organisation, name: str, address: str, owner: str):
    admin = organisation["admin"]
    created = refused_without_writing(lambda: users.add_queue(admin, name, address, owner),
                                      {"name", "email", "owner"}, also=(Conflict, NotFound))
    if created is not None:
        assert created.owner == "ann@corp.test" and created.name == name.strip()
        assert mailboxes.show(admin, created.email).regarding == "queue"


PROFILE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": NAMES, "type": enum_values(ProfileType), "incoming_host": HOSTS, "incoming_port": NUMBERS,
    "incoming_tls": enum_values(TlsMode), "incoming_auth": enum_values(IncomingAuth), "outgoing_host": HOSTS,
    "outgoing_port": NUMBERS, "outgoing_tls": enum_values(TlsMode), "outgoing_auth": enum_values(OutgoingAuth),
    "username": hostile_text(), "ca_file": hostile_text(), "max_connections": NUMBERS, "timeout_seconds": NUMBERS,
    "verify_delivery": SWITCHES, "owner": OWNERS,
    "process_email_from": DATES, "min_polling_minutes": NUMBERS, "active": SWITCHES,
    "retest_hours": mostly(st.sampled_from(("24", " 8760 ", "none", "", 1)), NUMBERS),
    "processed_folder": mostly(st.sampled_from(("Processed", " Archive/Done ", "NONE", "")), hostile_text()),
}
PROFILE_FIELD_NAMES = {key: {"timeout_seconds": "timeout"}.get(key, key.replace("_", "-")) for key in PROFILE_VALUES}


def expected_profile_value(key: str, value: Any) -> Any:
    """What the profile should read back as after ``key`` was set to ``value``."""
    cleaners: dict[str, Callable[[Any], Any]] = {
        "name": str.strip, "type": lambda v: validation.choice("type", v, ProfileType).value,
        "incoming_host": lambda v: validation.host("h", v), "outgoing_host": lambda v: validation.host("h", v),
        "incoming_port": lambda v: validation.port("p", v),
        "outgoing_port": lambda v: validation.port("p", v),
        "incoming_tls": lambda v: validation.choice("t", v, TlsMode).value,
        "outgoing_tls": lambda v: validation.choice("t", v, TlsMode).value,
        "incoming_auth": lambda v: validation.choice("a", v, IncomingAuth).value,
        "outgoing_auth": lambda v: validation.choice("a", v, OutgoingAuth).value,
        "username": str.strip, "ca_file": lambda v: validation.ca_file("c", v),
        "max_connections": lambda v: validation.integer("m", v, 1, 300),
        "timeout_seconds": lambda v: validation.integer("t", v, 1, 600),
        "min_polling_minutes": lambda v: validation.integer("m", v, 0, 1440),
        "retest_hours": lambda v: (None if isinstance(v, str) and v.strip().lower() in ("", "none")
                                   else validation.integer("r", v, 1, 8760)),
        "processed_folder": lambda v: None if v.strip().lower() in ("", "none") else v.strip(),
        "verify_delivery": lambda v: validation.on_off("v", v), "active": lambda v: validation.on_off("a", v),
        "owner": lambda v: validation.email("o", v) if v != "" else None,
        "process_email_from": lambda v: (validation.stored_moment(datetime.fromisoformat(str(v).strip()))
                                         .isoformat(sep=" ") if str(v).strip() else None),
    }
    return cleaners[key](value)


def profile_value(shown: ProfileRecord, key: str) -> Any:
    side, _, part = key.partition("_")
    if side in ("incoming", "outgoing") and part in ("host", "port", "tls", "auth"):
        return getattr(getattr(shown, side), part)
    return getattr(shown, key)


@STORED
@given(data=st.data())
def test_a_new_profile_with_one_hostile_field_is_refused_or_reads_back(organisation, ca_files: dict[str, Path],
                                                                       data: st.DataObject):
    admin = organisation["admin"]
    key = data.draw(st.sampled_from(sorted(PROFILE_VALUES)), label="field")
    values = PROFILE_VALUES[key]
    if key == "ca_file":
        values = st.one_of(values, st.sampled_from([str(path) for path in ca_files.values()]))
    value = data.draw(values, label="value")
    fields = {**IMAP_PROFILE, "name": f"profile {next(UNIQUE)}", key: value}
    created = refused_without_writing(lambda: profiles.create(admin, **fields),
                                      {PROFILE_FIELD_NAMES[key], "username", "verify-delivery"}, also=(Conflict,))
    if created is None or value is None:
        return
    shown = profiles.show(admin, created.name)
    assert profile_value(shown, key) == expected_profile_value(key, value)


@STORED
@given(data=st.data())
def test_a_profile_edit_with_a_hostile_field_is_refused_or_reads_back(organisation, data: st.DataObject):
    admin = organisation["admin"]
    [name] = [p.name for p in profiles.list_profiles(admin) if p.id == organisation["edited_profile"]]
    key = data.draw(st.sampled_from(sorted(PROFILE_VALUES)), label="field")
    value = data.draw(PROFILE_VALUES[key], label="value")
    version = profiles.show(admin, name).row_version
    changed = refused_without_writing(
        lambda: profiles.update(admin, name, expected_version=version, **{key: value}),
        {PROFILE_FIELD_NAMES[key], "username", "verify-delivery", "profile"}, also=(Conflict,))
    if changed is not None and value is not None:
        assert profile_value(profiles.show(admin, changed.name), key) == expected_profile_value(key, value)


MAILBOX_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": NAMES, "email": NEW_ADDRESSES, "profile": PROFILE_NAMES,
    "incoming_method": enum_values(IncomingMethod), "outgoing_method": enum_values(OutgoingMethod),
    "act_method": enum_values(ActMethod), "username": hostile_text(), "use_own_credentials": SWITCHES,
    "delete_after_processing": SWITCHES, "process_email_after": DATES,
    "tracking": st.one_of(enum_values(Tracking), st.sampled_from(("default", " Default ", "DEFAULT\x00"))),
}
MAILBOX_FIELD_NAMES = {"incoming_method": "incoming", "outgoing_method": "outgoing", "act_method": "act"}


def expected_mailbox_value(key: str, value: Any) -> Any:
    cleaners: dict[str, Callable[[Any], Any]] = {
        "name": str.strip, "email": lambda v: validation.email("e", v), "profile": str.strip,
        "incoming_method": lambda v: validation.choice("i", v, IncomingMethod).value,
        "outgoing_method": lambda v: validation.choice("o", v, OutgoingMethod).value,
        "act_method": lambda v: validation.choice("a", v, ActMethod).value,
        "username": str.strip,
        "use_own_credentials": lambda v: validation.on_off("u", v),
        "delete_after_processing": lambda v: validation.on_off("d", v),
        "process_email_after": lambda v: (validation.stored_moment(datetime.fromisoformat(str(v).strip()))
                                          if str(v).strip() else None),
        "tracking": lambda v: "default" if v.strip().lower() == "default" else validation.choice("t", v, Tracking).value,
    }
    return cleaners[key](value)


@STORED
@given(data=st.data())
def test_a_mailbox_edit_with_a_hostile_field_is_refused_or_reads_back(organisation, data: st.DataObject):
    admin = organisation["admin"]
    [row] = mailbox_views.rows_by_ids(admin, [organisation["queue_mailbox"]]).values()  # every field may be set on it
    key = data.draw(st.sampled_from(sorted(MAILBOX_VALUES)), label="field")
    value = data.draw(MAILBOX_VALUES[key], label="value")
    field = MAILBOX_FIELD_NAMES.get(key, key.replace("_", "-"))
    changed = refused_without_writing(
        lambda: mailboxes.edit(admin, row["email"], expected_version=row["row_version"], **{key: value}),
        {field, "mailbox"}, also=(Conflict,))
    if changed is None or value is None:
        return
    stored = getattr(changed, key)
    if key == "process_email_after" and stored is not None:
        stored = datetime.fromisoformat(stored)
    assert stored == expected_mailbox_value(key, value)
    assert mailboxes.show(admin, changed.email).id == row["id"]


@STORED
@given(name=NAMES, address=NEW_ADDRESSES, profile=PROFILE_NAMES, delete=mostly(st.booleans(), SWITCHES),
       owner=st.one_of(st.none(), OWNERS))
def test_a_new_forward_mailbox_is_refused_or_reads_back(organisation, name, address, profile, delete, owner):
    admin = organisation["admin"]
    created = refused_without_writing(
        lambda: mailboxes.create_forward_mailbox(admin, name=name, email=address, profile=profile,
                                                 delete_after_processing=delete, owner=owner),
        {"name", "email", "profile", "delete-after-processing", "owner"}, also=(Conflict,))
    if created is not None:
        assert (created.name, created.is_forward, created.outgoing_method) == (name.strip(), True, "none")
        assert created.delete_after_processing is validation.on_off("d", delete)


@STORED
@given(addresses=st.lists(mostly(st.sampled_from(("ann@corp.test", "BOB@corp.test", "sales@corp.test", "fwd@corp.test")),
                                 hostile_addresses()), min_size=1, max_size=3),
       profile=st.one_of(st.none(), PROFILE_NAMES),
       incoming=st.one_of(st.none(), mostly(st.sampled_from(("none", "server_side_sync")), enum_values(IncomingMethod))),
       outgoing=st.one_of(st.none(), mostly(st.just("none"), enum_values(OutgoingMethod))),
       act=st.one_of(st.none(), mostly(st.sampled_from(("none", "server_side_sync")), enum_values(ActMethod))))
def test_a_bulk_edit_is_refused_whole_or_applied_to_every_mailbox(organisation, addresses, profile, incoming,
                                                                  outgoing, act):
    admin = organisation["admin"]
    result = refused_without_writing(
        lambda: bulk.bulk_edit(admin, Selection.of_emails(addresses), profile=profile, incoming=incoming,
                                    outgoing=outgoing, act=act),
        {"email", "profile", "incoming", "outgoing", "act", "bulk edit"}, also=(NotFound,))
    if result is None:
        return
    for address in addresses:
        shown = mailboxes.show(admin, address)
        if profile is not None:
            assert shown.profile == profile.strip()
        for key, value, enum in (("incoming_method", incoming, IncomingMethod), ("outgoing_method", outgoing,
                                 OutgoingMethod), ("act_method", act, ActMethod)):
            if value is not None:
                assert getattr(shown, key) == validation.choice("m", value, enum).value


SETTINGS_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "default_profile": st.one_of(st.sampled_from(("imap", "pop", "", "none", "NONE", " imap ")), hostile_text()),
    "default_incoming": enum_values(IncomingMethod), "default_outgoing": enum_values(OutgoingMethod),
    "default_act": enum_values(ActMethod), "retry_attempts": NUMBERS, "retry_interval_minutes": NUMBERS,
    **{key: SWITCHES for key in ("require_approval_users", "require_approval_queues", "record_error_alerts",
                                 "record_warning_alerts", "record_information_alerts",
                                 "notify_owners_of_profile_alerts")},
    "tracking_users": enum_values(Tracking), "tracking_queues": enum_values(Tracking), "stale_hours": NUMBERS,
    "notification_mailbox": mostly(st.sampled_from(("ann@corp.test", " SALES@corp.test ", "fwd@corp.test", "none",
                                                    "", "ghost@corp.test")), st.one_of(hostile_addresses(),
                                                                                       hostile_text())),
    "no_such_setting": hostile_text(),
}


@STORED
@given(data=st.data())
def test_a_settings_change_is_refused_or_reads_back(organisation, data: st.DataObject):
    admin = organisation["admin"]
    key = data.draw(st.sampled_from(sorted(SETTINGS_VALUES)), label="setting")
    value = data.draw(SETTINGS_VALUES[key], label="value")
    changed = refused_without_writing(lambda: org_settings.update(admin, **{key: value}), {key, "settings"})
    if changed is None:
        return
    stored = getattr(org_settings.show(admin), key)
    if key == "default_profile":
        assert stored == (None if str(value).strip().lower() in ("", "none") else value.strip())
    elif key.startswith("default_"):
        assert stored == str(value).strip().lower()
    elif key.startswith("retry") or key == "stale_hours":
        assert stored == (value if isinstance(value, int) else int(str(value).strip()))
    elif key.startswith("tracking"):
        assert stored == str(value).strip().lower()
    elif key == "notification_mailbox":
        assert stored == (None if value.strip().lower() in ("", "none") else validation.email("n", value))
    else:
        assert stored is validation.on_off(key, value)


@STORED
@given(login=mostly(st.from_regex(r"[a-z][a-z0-9._-]{0,15}", fullmatch=True), hostile_text()),
       role=mostly(st.sampled_from([role.value for role in Role]), enum_values(Role)),
       user=st.one_of(st.none(), OWNERS))
def test_a_new_operator_is_refused_or_reads_back(organisation, login, role, user):
    admin = organisation["admin"]
    added = refused_without_writing(lambda: operators.add(admin, login, role, user), {"login", "role", "user"},
                                    also=(Conflict,))
    if added is not None:
        assert operators.get(added.login).login == login.strip()
        assert added.role == str(role).strip().lower()


LOOKUPS: dict[str, Callable[[Actor, Any], Any]] = {
    "profile show": lambda actor, v: profiles.show(actor, v),
    "mailbox show": lambda actor, v: mailboxes.show(actor, v),
    "operator role": lambda actor, v: operators.set_role(actor, v, "viewer"),
    "operator remove": lambda actor, v: operators.remove(actor, v),
    "act as": lambda actor, v: operators.current_actor(as_login=v, login=actor.login),
    "user deactivate": lambda actor, v: users.deactivate_user(actor, v),
    "queue activate": lambda actor, v: users.activate_queue(actor, v),
    "alerts of a profile": lambda actor, v: alerts.list_alerts(actor, profile=v),
    "alerts of a mailbox": lambda actor, v: alerts.list_alerts(actor, mailbox=v),
    "alerts of a level": lambda actor, v: alerts.dismiss_matching(actor, level=v),
    "dismiss alerts": lambda actor, v: alerts.dismiss(actor, [v]),
    "users filtered": lambda actor, v: users.list_users(actor, filter_text=v),
    "users paged": lambda actor, v: users.list_users(actor, limit=v),
    "queues paged": lambda actor, v: users.list_queues(actor, offset=v),
    "alerts paged": lambda actor, v: alerts.list_alerts(actor, limit=v),
    "audit paged": lambda actor, v: audit.list_entries(actor, offset=v),
    "mailboxes filtered": lambda actor, v: mailbox_views.list_mailboxes(actor, view="all", filter_text=v),
    "mailboxes sorted": lambda actor, v: mailbox_views.list_mailboxes(actor, sort=v),
    "mailboxes of a view": lambda actor, v: mailbox_views.ids_in_view(actor, view=v),
    "mailboxes paged": lambda actor, v: mailbox_views.list_mailboxes(actor, offset=v),
    "approve by address": lambda actor, v: bulk.approve(actor, Selection.of_emails([v])),
    "deactivate a view": lambda actor, v: bulk.deactivate(actor, Selection.of_view("all", v)),
    "profile's mailboxes": lambda actor, v: bulk.approve(actor, Selection.of_profile(v)),
}
LOOKUP_FIELDS = {"profile", "email", "login", "as", "mailbox", "level", "id", "filter", "limit", "offset", "sort",
                 "view", "role"}


@STORED
@given(data=st.data())
def test_looking_records_up_by_hostile_keys_never_breaks(organisation, data: st.DataObject):
    admin = organisation["admin"]
    name = data.draw(st.sampled_from(sorted(LOOKUPS)), label="lookup")
    value = data.draw(st.one_of(hostile_text(), hostile_addresses(), NUMBERS), label="value")
    refused_without_writing(lambda: LOOKUPS[name](admin, value), LOOKUP_FIELDS,
                            also=(NotFound, Conflict, PermissionDenied))


# --- CSV import: all rows or none, every bad row at its line --------------------------------------

def csv_line(fields: list[str]) -> str:
    """One CSV record without its line end; fields holding CR or LF are quoted."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(fields)
    return buffer.getvalue()[:-2]


def line_breaks(text: str) -> int:
    return len(re.findall(r"\r\n|\r|\n", text))


ROWS = st.lists(mostly(
    st.tuples(st.text(st.characters(categories=["L", "N", "Zs"]), min_size=1, max_size=20), st.emails()),
    st.one_of(st.tuples(NAMES, hostile_addresses()),
              st.tuples(st.sampled_from(("Ann again", "Dup")),
                        st.sampled_from(("ann@corp.test", "dup@corp.test", "DUP@corp.test")))),
), max_size=6)


def row_problem(kind: str, fields: dict[str, str], seen: dict[str, int], taken: set[str], users_known: set[str],
                line: int) -> bool:
    """Whether the row is bad, by the rules the import states; records a good address in ``seen``."""
    try:
        validation.text("name", fields["name"])
        address = validation.email("email", fields["email"])
        if kind == "queues" and validation.email("owner", fields["owner"]) not in users_known:
            return True
    except InvalidInput:
        return True
    bad = address in seen or address in taken
    seen.setdefault(address, line)
    return bad


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(("users", "queues")), rows=ROWS, owners=st.lists(OWNERS, max_size=6),
       newline=st.sampled_from(("\n", "\r\n")), bom=st.booleans(), blank_lines=st.sets(st.integers(0, 6)),
       odd_widths=mostly(st.just({}), st.dictionaries(st.integers(0, 5), st.integers(0, 4), max_size=2)),
       header_case=st.sampled_from((str, str.upper, lambda h: f" {h.title()} ")))
def test_an_import_takes_every_row_or_names_every_bad_one(organisation, tmp_path: Path, kind, rows, owners, newline,
                                                          bom, blank_lines, odd_widths, header_case):
    admin = organisation["admin"]
    columns = ["name", "email", "owner"] if kind == "queues" else ["name", "email"]
    text = csv_line([header_case(c) for c in columns]) + newline
    records: list[tuple[int, list[str]]] = []  # first line, fields
    for index, (name, address) in enumerate(rows):
        if index in blank_lines:
            text += newline
        fields = [name, address]
        if kind == "queues":
            fields.append(owners[index] if index < len(owners) else "ann@corp.test")
        if index in odd_widths:
            fields = (fields + ["extra", "extra", "extra"])[:odd_widths[index]]
        records.append((line_breaks(text) + 1, fields))
        text += csv_line(fields) + newline
    path = tmp_path / f"{next(UNIQUE)}.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass"))

    taken = {r[0] for r in database.execute_sql(f'SELECT email FROM "{kind[:-1]}" UNION SELECT email FROM mailbox')}
    users_known = {r[0] for r in database.execute_sql('SELECT email FROM "user"')}
    before = snapshot()
    result, refusal = outcome(lambda: imports.import_csv(admin, kind, path))
    if refusal is not None:
        assert_clear_refusal(refusal, (), also=(InvalidRows, MbxError))
        assert snapshot() == before, "a refused import wrote something"

    surrogate = re.search("[\ud800-\udfff]", text)
    if surrogate:  # those bytes are not UTF-8: the file is refused at the line holding them
        assert isinstance(refusal, InvalidRows)
        [(line, problem)] = refusal.problems
        assert problem.startswith("is not UTF-8 text")
        assert line in (text[:surrogate.start()].count("\n") + 1, line_breaks(text[:surrogate.start()]) + 1)
        return
    seen: dict[str, int] = {}
    bad_lines, good = [], 0
    for line, fields in records:
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(columns):
            bad_lines.append(line)
        elif row_problem(kind, dict(zip(columns, fields)), seen, taken, users_known, line):
            bad_lines.append(line)
        else:
            good += 1
    if bad_lines:
        assert isinstance(refusal, InvalidRows), f"bad rows on lines {bad_lines} but {refusal or result}"
        assert [line for line, _ in refusal.problems] == bad_lines
        assert all(re.match(r"(name|email|owner): |has \d+ fields", problem) for _, problem in refusal.problems)
        assert str(refusal).startswith(f"import of {path.name} refused, nothing imported: {len(bad_lines)} bad row(s)")
    elif not good:
        assert refusal is not None and "has a header but no rows" in str(refusal)
    else:
        assert refusal is None and result == {"imported": good, "kind": kind}
        for line, fields in records:
            if any(f.strip() for f in fields):
                shown = mailboxes.show(admin, fields[1])
                assert shown.name == fields[0].strip() and shown.regarding == kind[:-1]


HEADERS = st.one_of(
    st.permutations(["Name", " EMAIL "]),
    st.lists(st.one_of(st.sampled_from(("name", "email", "owner", "Name", " EMAIL ", "e-mail", "", "name;email")),
                       hostile_text(12)), max_size=5),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=HEADERS)
def test_a_header_with_wrong_missing_or_repeated_columns_is_refused_at_line_one(organisation, tmp_path: Path,
                                                                               header: list[str]):
    assume(not re.search("[\ud800-\udfff\r\n]", "".join(header)))
    names = [h.strip().lower() for h in header]
    values = {"name": "Someone New", "email": f"new{next(UNIQUE)}@corp.test"}
    path = tmp_path / "header.csv"
    path.write_text(csv_line(header) + "\n" + csv_line([values.get(n, "x") for n in names]) + "\n", encoding="utf-8")
    result = refused_without_writing(lambda: imports.import_csv(organisation["admin"], "users", path), (),
                                     also=(InvalidRows, MbxError))
    if sorted(names) == ["email", "name"]:
        assert result == {"imported": 1, "kind": "users"}
    else:
        assert result is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=300), st.binary(max_size=100).map(lambda b: b"name,email\n" + b)))
def test_binary_garbage_is_refused_whole(organisation, tmp_path: Path, content: bytes):
    path = tmp_path / "garbage.csv"
    path.write_bytes(content)
    refused_without_writing(lambda: imports.import_csv(organisation["admin"], "users", path), (),
                            also=(InvalidRows, MbxError))


CSV_FILES = {  # name: (bytes, what happens: the count imported, or (line, words of the refusal))
    "CRLF line ends and blank lines": (
        b"name,email\r\n\r\nNew One,new1@corp.test\r\n\r\n\r\nNew Two,new2@corp.test\r\n", 2),
    "a byte order mark": (b"\xef\xbb\xbfname,email\nNew One,new1@corp.test\n", 1),
    "old Mac line ends": (b"name,email\rNew One,new1@corp.test\rNew Two,new2@corp.test", 2),
    "columns in another order and case": (b" EMAIL ,Name\nnew1@corp.test,New One\n", 1),
    "right-to-left and emoji names": ("name,email\nمرحبا,new1@corp.test\n👨\u200d👩\u200d👧,new2@corp.test\n"
                                      .encode(), 2),
    "a quoted comma and quote": (b'name,email\n"Baker, Bob ""the builder""",new1@corp.test\n', 1),
    "UTF-16 with its mark": ("name,email\nNew One,new1@corp.test\n".encode("utf-16"), (1, "is not UTF-8 text")),
    "UTF-16 without a mark": ("name,email\nNew One,new1@corp.test\n".encode("utf-16-le"), (1, "unknown column(s)")),
    "Latin-1": ("name,email\nNew One,new1@corp.test\nJosé,jose@corp.test\n".encode("latin-1"), (3, "is not UTF-8")),
    "Latin-1 after a byte order mark": (b"\xef\xbb\xbfname,email\nNew One,new1@corp.test\n\xe9,x@corp.test\n",
                                        (3, "is not UTF-8")),
    "Windows-1252 quotes": ("name,email\n\u201cNew\u201d,new1@corp.test\n".encode("cp1252"), (2, "is not UTF-8")),
    "gzip": (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(range(256)), (1, "is not UTF-8")),
    "no header": (b"New One,new1@corp.test\n", (1, "missing column(s) name, email")),
    "a column twice": (b"name,email,email\nNew One,new1@corp.test,new2@corp.test\n", (1, "a column appears twice")),
    "an unknown column": (b"name,email,phone\nNew One,new1@corp.test,555\n", (1, "unknown column(s) 'phone'")),
    "semicolons": (b"name;email\nNew One;new1@corp.test\n", (1, "unknown column(s) 'name;email'")),
    "an extra field": (b"name,email\nNew One,new1@corp.test,555\n", (2, "has 3 fields, expected 2")),
    "a missing field": (b"name,email\nNew One\n", (2, "has 1 fields, expected 2")),
    "a quote never closed": (b'name,email\nNew One,new1@corp.test\n"New Two,new2@corp.test\nNew Three,new3@corp.test\n',
                             (3, "is a closing quote missing?")),
    "a name over two lines": (b'name,email\n"New\nOne",new1@corp.test\n', (2, "name: contains a control character")),
    "a NUL byte": (b"name,email\nNew\x00One,new1@corp.test\n", (2, "name: contains a control character (U+0000)")),
    "an escape sequence": (b"name,email\n\x1b[2JNew One,new1@corp.test\n", (2, "control character (U+001B)")),
    "a field past the CSV limit": (b"name,email\n" + b"x" * 200_000 + b",new1@corp.test\n", (2, "unreadable CSV")),
    "a name too long": (b"name,email\n" + b"x" * 161 + b",new1@corp.test\n", (2, "the limit is 160")),
    "only a byte order mark": (b"\xef\xbb\xbf", (None, "is empty")),
    "an empty file": (b"", (None, "is empty")),
    "a header only": (b"name,email\r\n\r\n", (None, "has a header but no rows")),
}


@pytest.mark.parametrize("name", list(CSV_FILES))
def test_each_kind_of_broken_csv_file_is_imported_or_refused_as_stated(organisation, tmp_path: Path, name: str):
    content, expected = CSV_FILES[name]
    path = tmp_path / "people.csv"
    path.write_bytes(content)
    result = refused_without_writing(lambda: imports.import_csv(organisation["admin"], "users", path), (),
                                     also=(InvalidRows, MbxError))
    if isinstance(expected, int):
        assert result == {"imported": expected, "kind": "users"}
        assert mailboxes.show(organisation["admin"], "new1@corp.test").regarding == "user"
        return
    line, words = expected
    assert result is None
    with pytest.raises(MbxError) as refused:
        imports.import_csv(organisation["admin"], "users", path)
    assert words in str(refused.value)
    if line is not None:
        assert isinstance(refused.value, InvalidRows) and refused.value.problems[0][0] == line


# --- the command line ----------------------------------------------------------------------------

def run_bytes(cli: Cli, *args: str | bytes) -> tuple[int, bytes, bytes]:
    """The command line in a subprocess, arguments and output as raw bytes (as a terminal has them)."""
    command = [sys.executable, "-m", "mbxtui", "--db", str(cli.db_path), *args]
    done = subprocess.run(command, capture_output=True, env=cli.env, cwd=cli.data_dir.parent, timeout=60)
    return done.returncode, done.stdout, done.stderr


def hostile_csv(folder: Path, name: str, content: bytes) -> str:
    path = folder / name
    path.write_bytes(content)
    return str(path)


CLI_REFUSALS: dict[str, tuple[tuple[str | bytes, ...], str]] = {  # arguments, the start of the one line
    "an escape sequence in a name": (("user", "add", "--name", TERMINAL_ATTACK + "Eve", "--email", "eve@corp.test"),
                                     "mbxtui: name: contains a control character (U+001B)"),
    "a name that is not UTF-8": (("user", "add", "--name", b"\xff\xfeEve", "--email", "eve@corp.test"),
                                 "mbxtui: name: is not valid text: it holds U+DCFF"),
    "a port out of range": (("profile", "edit", "imap", "--incoming-port", "99999"),
                            "mbxtui: incoming-port: 99999 is out of range 1–65535"),
    "a profile name that is not UTF-8": (("profile", "show", b"im\xe1p"), "mbxtui: profile: is not valid text"),
    "a header injected into an address": (("mailbox", "edit", "ann@corp.test", "--email",
                                           "ann@corp.test\r\nBcc: eve@evil.test"),
                                          "mbxtui: email: contains a control character (U+000D)"),
    "a page far too long": (("user", "list", "--limit", "9" * 23), "mbxtui: limit: is far out of range 0–100000"),
    "an alert id past SQLite's integers": (("alerts", "dismiss", "9" * 23), "mbxtui: id: is far out of range"),
    "acting as a login that is not UTF-8": (("--as", b"\xffroot", "whoami"), "mbxtui: as: is not valid text"),
    "a filter with an escape sequence": (("mailbox", "list", "--filter", "\x1b[2J"),
                                         "mbxtui: filter: contains a control character (U+001B)"),
    "a retry interval in scientific notation": (("settings", "set", "--retry-interval", "1e3"),
                                                "mbxtui: retry_interval_minutes: '1e3' is not a whole number"),
    "an unknown enum value, very long": (("mailbox", "bulk-edit", "ann@corp.test", "--incoming", "x" * 5000),
                                         "mbxtui: incoming: 'xxxxxxxx"),
}


@pytest.mark.parametrize("case", list(CLI_REFUSALS))
def test_hostile_arguments_end_in_one_line_on_stderr_and_change_nothing(cli: Cli, case: str):
    args, expected = CLI_REFUSALS[case]
    before = cli.dump()
    code, out, err = run_bytes(cli, *args)
    assert (code, out) == (1, b""), f"exit {code}, stdout {out[:200]!r}, stderr {err[:300]!r}"
    assert err.endswith(b"\n") and err.count(b"\n") == 1, err
    text = err.decode("utf-8")  # the line itself is UTF-8, whatever the arguments were
    assert text.startswith(expected), text
    assert not UNSAFE.intersection(map(ord, text.rstrip("\n"))) and len(text) < 600
    assert cli.dump() == before


@pytest.mark.parametrize("content, expected", [
    ("name,email\nEve,eve@corp.test\n".encode("utf-16"), "line 1: is not UTF-8 text"),
    (b'name,email\n"Eve,eve@corp.test\nFay,fay@corp.test\n', "line 2: has 1 fields, expected 2 (a quoted field"),
    (b"name,email\n\x1b]0;pwned\x07Eve,eve@corp.test\n", "line 2: name: contains a control character (U+001B)"),
], ids=["UTF-16", "a quote never closed", "an escape sequence"])
def test_a_hostile_csv_file_is_refused_on_one_line(cli: Cli, content: bytes, expected: str):
    before = cli.dump()
    code, out, err = run_bytes(cli, "import", "users", hostile_csv(cli.data_dir, "people.csv", content))
    assert (code, out, err.count(b"\n")) == (1, b"", 1), err
    assert err.decode().startswith(f"mbxtui: import of people.csv refused, nothing imported: 1 bad row(s): {expected}")
    assert cli.dump() == before


# ``email send`` with good values, each replaced in turn by the hostile one.
EMAIL_SEND = {"--from": "ann@corp.test", "--to": "x@outside.test", "--cc": "y@outside.test", "--subject": "S",
              "--body": "x"}
# ``email send`` with its body from a file, the file's name hostile.
BODY_FILE_COMMAND = ("email", "send", "--from", "ann@corp.test", "--to", "x@outside.test", "--subject", "S",
                     "--body-file", "{}")
# Every command, each of its arguments in turn given a hostile value (``{}`` marks the argument).
COMMANDS: tuple[tuple[str, ...], ...] = (
    ("operator", "add", "{}", "--role", "viewer"), ("operator", "add", "zed", "--role", "{}"),
    ("operator", "add", "zed", "--role", "viewer", "--user", "{}"), ("operator", "set-role", "{}", "--role", "viewer"),
    ("operator", "set-role", "sam", "--role", "{}"), ("operator", "remove", "{}"), ("--as", "{}", "whoami"),
    ("user", "add", "--name", "{}", "--email", "new@corp.test"), ("user", "add", "--name", "New", "--email", "{}"),
    ("user", "list", "--filter", "{}"), ("user", "list", "--limit", "{}"), ("user", "list", "--offset", "{}"),
    ("user", "deactivate", "{}"), ("user", "activate", "{}"),
    ("queue", "add", "--name", "{}", "--email", "q@corp.test", "--owner", "ann@corp.test"),
    ("queue", "add", "--name", "Q", "--email", "{}", "--owner", "ann@corp.test"),
    ("queue", "add", "--name", "Q", "--email", "q2@corp.test", "--owner", "{}"), ("queue", "list", "--limit", "{}"),
    ("queue", "list", "--offset", "{}"), ("queue", "deactivate", "{}"), ("queue", "activate", "{}"),
    ("profile", "show", "{}"), ("profile", "edit", "{}", "--timeout", "5"), ("profile", "edit", "pop", "--name", "{}"),
    *[("profile", "edit", "pop", option, "{}") for option in (
        "--type", "--incoming-host", "--incoming-port", "--incoming-tls", "--incoming-auth", "--outgoing-host",
        "--outgoing-port", "--outgoing-tls", "--outgoing-auth", "--username", "--ca-file", "--max-connections",
        "--timeout", "--verify-delivery", "--owner", "--process-email-from", "--min-polling-minutes", "--active")],
    ("profile", "add", "--name", "{}", "--type", "imap_smtp", "--incoming-host", "h.test", "--incoming-port", "993",
     "--incoming-tls", "implicit", "--outgoing-host", "s.test", "--outgoing-port", "465", "--outgoing-tls", "implicit",
     "--incoming-auth", "mailbox", "--outgoing-auth", "mailbox"),
    *[("settings", "set", option, "{}") for option in (
        "--default-profile", "--incoming", "--outgoing", "--act", "--require-approval-users", "--error-alerts",
        "--notify-owners", "--retry-attempts", "--retry-interval")],
    ("mailbox", "list", "--filter", "{}"), ("mailbox", "list", "--sort", "{}"), ("mailbox", "list", "--limit", "{}"),
    ("mailbox", "list", "--offset", "{}"), ("mailbox", "list", "--view", "{}"), ("mailbox", "show", "{}"),
    ("mailbox", "edit", "{}", "--name", "x"),
    *[("mailbox", "edit", "sales@corp.test", option, "{}") for option in (
        "--name", "--email", "--profile", "--incoming", "--outgoing", "--act", "--username", "--use-own-credentials",
        "--delete-after-processing", "--process-email-after")],
    ("mailbox", "approve", "{}"), ("mailbox", "reject", "--view", "all", "--filter", "{}"),
    ("mailbox", "deactivate", "{}"),
    ("mailbox", "activate", "{}"), ("mailbox", "bulk-edit", "bob@corp.test", "--profile", "{}"),
    ("mailbox", "bulk-edit", "bob@corp.test", "--incoming", "{}"), ("mailbox", "bulk-edit", "{}", "--act", "none"),
    ("mailbox", "apply-defaults", "--no-test", "{}"),
    ("forward-mailbox", "add", "--name", "{}", "--email", "f@corp.test", "--profile", "imap"),
    ("forward-mailbox", "add", "--name", "F", "--email", "{}", "--profile", "imap"),
    ("forward-mailbox", "add", "--name", "F", "--email", "f2@corp.test", "--profile", "{}"),
    ("forward-mailbox", "add", "--name", "F", "--email", "f3@corp.test", "--profile", "imap", "--owner", "{}"),
    ("test-enable", "{}"), ("test-enable", "--profile", "{}"), ("test-enable", "--view", "all", "--filter", "{}"),
    ("import", "users", "{}"), ("import", "queues", "{}"),
    ("alerts", "list", "--level", "{}"), ("alerts", "list", "--mailbox", "{}"), ("alerts", "list", "--profile", "{}"),
    ("alerts", "list", "--limit", "{}"), ("alerts", "list", "--offset", "{}"),
    ("alerts", "dismiss", "--all", "--level", "{}"),
    ("alerts", "dismiss", "--all", "--profile", "{}"), ("alerts", "dismiss", "--all", "--mailbox", "{}"),
    ("alerts", "dismiss", "{}"), ("audit", "list", "--mailbox", "{}"), ("audit", "list", "--limit", "{}"),
    ("audit", "list", "--offset", "{}"),
    *[("email", "send", *[part for option, good in EMAIL_SEND.items()
                          for part in (option, "{}" if option == hostile else good)]) for hostile in EMAIL_SEND],
    BODY_FILE_COMMAND,
    ("email", "send", "--from", "ann@corp.test", "--to", "x@outside.test", "--subject", "S", "--body", "x",
     "--reply-to-activity", "{}"),
    ("activity", "resend", "{}"), ("activity", "show", "{}"),
)
ARGUMENTS = st.one_of(hostile_text(), hostile_addresses(), st.integers(-(10**30), 10**30).map(str), st.sampled_from(
    ("\udcff", "im\udce1p", "x\x00y", "9" * 23, "-1", "imap", "pop", "ann@corp.test", "all", "error")))


@pytest.fixture
def in_process(cli: Cli, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Runs the command line's ``main`` in this process (as fast as a function call) and returns
    (exit status, stdout, stderr); a command that breaks raises here instead of exiting."""
    for name, value in cli.env.items():
        if name.startswith(("MBXTUI_", "PYTHON_KEYRING")):
            monkeypatch.setenv(name, value)

    def run(args: tuple[str, ...]) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = command_line.main(["--db", str(cli.db_path), *args])
        except SystemExit as exit_:  # argparse refusing a usage
            code = exit_.code
        finally:
            database.close()  # each run opens the database anew, as each process would
        out, err = capsys.readouterr()
        return code, out, err

    return run


def check_command(run: Callable[[tuple[str, ...]], tuple[int, str, str]], cli: Cli, command: tuple[str, ...],
                  value: str, *, as_json: bool = False) -> None:
    """The command ends with a status of the command line; a refusal (1) is one line on stderr,
    nothing on stdout and nothing written; no output holds a raw control character."""
    args = tuple(value if part == "{}" else part for part in command)
    if as_json and command[:2] not in (("operator", "remove"), ("alerts", "dismiss")) and command[0] != "import":
        args += ("--json",)
    before = file_bytes(cli.db_path)
    code, out, err = run(args)
    assert code in (0, 1, 2, 3), f"{args}: exit {code}"
    for stream, text in (("stdout", out), ("stderr", err)):
        raw = UNSAFE.intersection(map(ord, text.replace("\n", "")))
        assert not raw, f"{args}: raw {sorted(raw)} on {stream}: {text[:300]!r}"
    if code in (1, 2):
        assert out == "" and err.startswith(("mbxtui: ", "usage: ")), f"{args}: {code} {out[:200]!r} {err[:200]!r}"
        assert file_bytes(cli.db_path) == before, f"{args} refused ({err.strip()}) but the database changed"
    if code == 1:
        assert err.count("\n") == 1, f"{args}: {err!r}"


# Escape sequences are text either backend stores as it is: on PostgreSQL (70 s there, every table
# dumped after each command) only what it refuses and SQLite keeps, text that is not UTF-8.
@pytest.mark.parametrize("value", [
    "\udcff",
    pytest.param(TERMINAL_ATTACK + C1_ATTACK,
                 marks=pytest.mark.skipif(ON_POSTGRES, reason="text either backend stores as it is: run on SQLite")),
], ids=["not UTF-8", "escape sequences"])
def test_every_command_refuses_each_hostile_argument_cleanly(in_process, cli: Cli, value: str):
    for command in COMMANDS:
        check_command(in_process, cli, command, value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(COMMANDS), value=ARGUMENTS, as_json=st.booleans())
@example(command=BODY_FILE_COMMAND, value="Ann\x00Archer", as_json=False)  # a NUL in a file name crashed it once
def test_any_command_with_any_argument_is_refused_cleanly_or_done(in_process, cli: Cli, command, value, as_json):
    assume(not value.startswith("-") or value.lstrip("-").isdigit())  # an option, not a value, to argparse
    check_command(in_process, cli, command, value, as_json=as_json)


HOSTILE_NAME = "Eve " + TERMINAL_ATTACK + C1_ATTACK + " \u202egnp.exe"


@pytest.fixture
def hostile_records(cli: Cli) -> Cli:
    """Records holding escape sequences, put in with SQL (the services would refuse them): a mailbox
    name and last error, a user's name, a profile's name, an alert and an audit entry."""
    cli.execute("UPDATE mailbox SET name = ?, last_error_code = ?, last_error_text = ? WHERE email = ?",
                (HOSTILE_NAME, "AUTH\x1b[5m", HOSTILE_NAME, "ann@corp.test"))
    cli.execute('UPDATE "user" SET name = ? WHERE email = \'bob@corp.test\'', (HOSTILE_NAME,))
    cli.execute("UPDATE profile SET name = ? WHERE name = 'pop'", (HOSTILE_NAME,))
    cli.execute("INSERT INTO alert (level, code, text, mailbox_id, created_on, dismissed) VALUES ('error', ?, "
                "?, (SELECT id FROM mailbox WHERE email = 'ann@corp.test'), '2024-05-06 09:00:00', 0)",
                ("CODE\x9b2J", HOSTILE_NAME))
    cli.execute("INSERT INTO audit_entry (at, login, action, record_kind, record_count, summary) VALUES "
                "('2024-05-06 09:00:00', 'alice', 'mailbox.edit', 'mailbox', 0, ?)", (HOSTILE_NAME,))
    return cli


SHOWN_COMMANDS = {
    "mailbox list": ("mailbox", "list", "--view", "all"), "mailbox show": ("mailbox", "show", "ann@corp.test"),
    "user list": ("user", "list"), "profile list": ("profile", "list"), "alerts list": ("alerts", "list"),
    "audit list": ("audit", "list"),
}


@pytest.mark.parametrize("name", list(SHOWN_COMMANDS))
def test_escape_sequences_in_data_are_shown_as_text_by_the_command_line(hostile_records: Cli, name: str):
    code, out, err = run_bytes(hostile_records, *SHOWN_COMMANDS[name])
    assert code == 0, err
    for byte in (b"\x1b", b"\x07", b"\xc2\x9b", b"\xc2\x9c", b"\xc2\x9d", "\u202e".encode()):
        assert byte not in out, f"{name} wrote {byte!r} to the terminal"
    assert b"Eve \\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\x9d0;pwned\\x9c \\u202egnp.exe" in out, out.decode()

    code, out, err = run_bytes(hostile_records, *SHOWN_COMMANDS[name], "--json")
    assert code == 0, err
    assert not set(out) & (set(range(0x20)) - {0x0a}) and b"\xc2\x9b" not in out and "\u202e".encode() not in out
    assert HOSTILE_NAME in strings_in(json.loads(out)), "the JSON does not hold the name as stored"


def strings_in(data: Any) -> list[str]:
    if isinstance(data, dict):
        return [text for value in data.values() for text in strings_in(value)]
    if isinstance(data, list):
        return [text for value in data for text in strings_in(value)]
    return [data] if isinstance(data, str) else []


# --- the console ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unlocked_store(tmp_path_factory: pytest.TempPathFactory) -> SecretStore:
    """The encrypted-file keyring, unlocked once for the module (a key derivation costs a second)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
        env.delenv(KEYRING_CHOICE_ENV, raising=False)
        env.delenv(MASTER_PASSWORD_ENV, raising=False)
        store = SecretStore.open(tmp_path_factory.mktemp("bad-input-secrets"))
    store.unlock("master password of the bad input tests")
    return store


def screen_text(app: Any) -> str:
    """What the terminal shows now, as plain text, modal screens over what they cover."""
    from rich.console import Console as TextConsole

    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    terminal = TextConsole(width=app.size.width, height=app.size.height, file=io.StringIO(), record=True,
                           color_system=None, force_terminal=True, legacy_windows=False)
    terminal.print(update)
    return terminal.export_text(styles=False)


def assert_shown_harmlessly(app: Any, where: str, *visible: str) -> None:
    """Neither the screen nor its screenshot holds a raw control character, and ``visible`` (the
    escaped forms of the hostile data) is on the screen."""
    text = screen_text(app)
    raw = UNSAFE.intersection(map(ord, text.replace("\n", "")))
    assert not raw, f"{where}: raw {sorted(raw)} on the screen:\n{text}"
    raw = UNSAFE.intersection(map(ord, app.export_screenshot().replace("\n", "")))
    assert not raw, f"{where}: raw {sorted(raw)} in the screenshot"
    for part in visible:
        assert part in text, f"{where}: {part!r} is not on the screen:\n{text}"


@pytest.fixture
def console(organisation, db_path: Path, tmp_path: Path, unlocked_store: SecretStore,
            monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Puts hostile text into the database with SQL (as a hostile server or another tool could leave
    it; the services refuse it), then drives the real console over it with ``scenario(app, pilot,
    mailbox_id)``."""
    from mbxtui.tui.app import MbxApp

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.delenv("NO_COLOR", raising=False)
    target = mailboxes.get("ann@corp.test").id

    def run(scenario: Callable[..., Any], *, alert_code: str = "AUTH_FAILED") -> None:
        steps = {"incoming": {"protocol": "imap", "ok": False, "steps": [
            {"step": "connect\x1b[1m", "ok": False, "seconds": 0.01, "detail": "greeting: " + TERMINAL_ATTACK}],
            "failure": {"step": "connect", "code": "BAD\x9b1m", "transient": False, "message": C1_ATTACK}}}
        with db.write_transaction():
            database.execute_sql("UPDATE mailbox SET name = ?, last_error_text = ? WHERE id = ?",
                                 [HOSTILE_NAME, C1_ATTACK, target])
            database.execute_sql("UPDATE profile SET name = ? WHERE name = 'pop'", [HOSTILE_NAME])
            database.execute_sql(
                "INSERT INTO alert (level, code, text, mailbox_id, profile_id, created_on, dismissed) VALUES "
                "('error', ?, ?, ?, (SELECT profile_id FROM mailbox WHERE id = ?), '2999-01-01 00:00:00', 0)",
                [alert_code, HOSTILE_NAME, target, target])
            batch = database.execute_sql("INSERT INTO test_batch (requested_by, requested_on, description, total) "
                                         "VALUES ('alice', '2024-05-06 09:00:00', 'Test & Enable', 1) RETURNING id"
                                         ).fetchone()[0]
            database.execute_sql(
                "INSERT INTO test_job (batch_id, mailbox_id, requested_by, state, outcome, attempt, started_on, "
                "finished_on, result) VALUES (?, ?, 'alice', 'done', 'failed', 1, '2024-05-06 09:00:00', "
                "'2024-05-06 09:00:01', ?)", [batch, target, json.dumps(steps)])
        app = MbxApp(organisation["admin"], db_path=db_path, data_dir=tmp_path, run_tests=False, store=unlocked_store)

        async def main() -> None:
            # Tall enough for the whole mailbox detail (fields, sync status, the last test's steps).
            async with app.run_test(size=(160, 60)) as pilot:
                await pilot.pause()
                await scenario(app, pilot, target)

        asyncio.run(main())

    return run


async def open_mailbox(app: Any, pilot: Any, mailbox_id: int) -> None:
    """Moves the grid's cursor to the mailbox with the keys and opens it."""
    from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen
    from mbxtui.tui.widgets.grid import MailboxGrid

    grid = app.screen.query_one(MailboxGrid)
    for _ in range(10):
        if grid.cursor_id == mailbox_id:
            break
        await pilot.press("down")
    assert grid.cursor_id == mailbox_id
    await pilot.press("enter")
    await pilot.pause()
    assert isinstance(app.screen, MailboxDetailScreen)


async def open_profile(app: Any, pilot: Any, name: str, pane: str) -> None:
    """From the profiles list, opens the profile with the keys and shows one of its panes (1-3)."""
    from mbxtui.tui.screens.profiles import ProfileDetailScreen, ProfilesScreen

    await pilot.press("f3")
    await pilot.pause()
    assert isinstance(app.screen, ProfilesScreen)
    for _ in range(5):
        if app.screen.current_key() == name:
            break
        await pilot.press("down")
    assert app.screen.current_key() == name
    await pilot.press("enter")
    await pilot.pause()
    assert isinstance(app.screen, ProfileDetailScreen)
    await pilot.press(pane)
    await app.workers.wait_for_complete()
    await pilot.pause()


ESCAPED_NAME = "Eve \\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\x9d0;pwned\\x9c \\u202egnp.exe"


def test_escape_sequences_in_data_are_shown_as_text_by_the_console(console):
    from mbxtui.tui.screens.alerts import AlertsScreen

    async def scenario(app, pilot, mailbox_id: int) -> None:
        assert_shown_harmlessly(app, "the mailbox grid", "Eve \\x1b[2J")
        await open_mailbox(app, pilot, mailbox_id)
        assert_shown_harmlessly(app, "the mailbox detail", ESCAPED_NAME, "What to do                      \\x9b31m",
                                "connect\\x1b[1m", "greeting: \\x1b[2J\\x1b]0;pwned\\x07", "BAD\\x9b1m")
        await pilot.press("f4")
        await pilot.pause()
        assert isinstance(app.screen, AlertsScreen)
        assert_shown_harmlessly(app, "the alerts wall", ESCAPED_NAME)
        await open_profile(app, pilot, HOSTILE_NAME, "1")
        assert_shown_harmlessly(app, "a profile's settings", ESCAPED_NAME)
        await pilot.press("escape")
        await pilot.pause()
        assert_shown_harmlessly(app, "the profiles", "Eve \\x1b[2J")
        await open_profile(app, pilot, "imap", "3")
        assert_shown_harmlessly(app, "a profile's alerts", ESCAPED_NAME)

    console(scenario)


def test_an_escape_sequence_in_an_alert_code_is_shown_as_text_by_the_console(console):
    async def scenario(app, pilot, mailbox_id: int) -> None:
        await open_mailbox(app, pilot, mailbox_id)
        assert_shown_harmlessly(app, "the mailbox detail", "BAD\\x1b[5m")
        await pilot.press("f4")
        await pilot.pause()
        assert_shown_harmlessly(app, "the alerts wall", "BAD\\x1b[5m")

    console(scenario, alert_code="BAD\x1b[5m")


def test_an_escape_sequence_in_an_alert_code_is_shown_as_text_in_a_profile(console):
    async def scenario(app, pilot, mailbox_id: int) -> None:
        await open_profile(app, pilot, "imap", "3")
        assert_shown_harmlessly(app, "a profile's alerts", "BAD\\x1b[5m")

    console(scenario, alert_code="BAD\x1b[5m")
