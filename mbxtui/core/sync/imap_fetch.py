"""UID FETCH as imapclient's ``IMAPClient.fetch`` sends and answers it, with the answer read by one
regular expression instead of imapclient's lexer, which walks the response a character at a time
in Python, and the INTERNALDATE read by another instead of the email package's date parser (for
size, date, BODYSTRUCTURE and header: 57-78 us of client CPU a message there, about 30 us here).
Only the shapes a FETCH answer of well-behaved servers takes are read this way: anything else (an
escape in a quoted string, an unbalanced parenthesis, a literal of the wrong length, a stray
control character, an item never asked for) is given to imapclient's own parser, so that whatever
it accepts or refuses is accepted or refused the same.

The answers of usual shape to the FETCHes of a cycle (a header answer: UID, size, date, BODYSTRUCTURE
and the header block as a literal; a text answer: UID and one section as a literal) are each read
by one regular expression over the whole answer, and the BODYSTRUCTURE's text by the caller's
reader (``structure``), without making imapclient's tuples of it (a bench message's header answer
and structure: 24.5 -> 8.1 us; its text answer: 4.9 -> 1.3 us)."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime
from typing import Any, Callable

from imapclient import IMAPClient
from imapclient.imapclient import join_message_ids, seq_to_parenstr_upper
from imapclient.response_parser import _convert_INTERNALDATE, parse_fetch_response
from imapclient.fixed_offset import FixedOffset
from imapclient.response_types import BodyData

# A token as imapclient's lexer splits one: "(", ")", a quoted string, or a word (with any [...]
# section in it read to its "]"), whitespace before it skipped; a quote right after a word, or any
# other character, is caught in a group of its own (an unusual answer).
_TOKEN = re.compile(rb'[ \t\r\n]*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|((?:[^\x00-\x20()%"\[]|\[[^\]]*\])+)("?)|(.))',
                    re.S)
_LITERAL = re.compile(rb"\{(\d+)\}")
_INTERNALDATE = re.compile(rb" ?(\d{1,2})-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-(\d{4}) "
                           rb"(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
# A header answer and a text answer as usual servers write them, each one record with one literal.
_NUMBER = rb"(0|[1-9][0-9]*)"
_HEADER_ANSWER = re.compile(rb"%s \(UID %s RFC822\.SIZE %s INTERNALDATE \"([^\"\\]*)\" BODYSTRUCTURE (\(.*\)) "
                            rb"(BODY\[HEADER\]<0>) \{%s\}" % (_NUMBER, _NUMBER, _NUMBER, _NUMBER), re.S)
_SECTION_ANSWER = re.compile(rb"%s \(UID %s (BODY\[(?:[1-9][0-9]*\.)*(?:[1-9][0-9]*|TEXT)\]<0>) \{%s\}"
                             % (_NUMBER, _NUMBER, _NUMBER))
_ZONES: dict[int, FixedOffset] = {}  # by minutes east of UTC: made once each (2 us each time)
# The key under which a header answer read that way holds what ``structure`` read of its BODYSTRUCTURE,
# instead of imapclient's BODYSTRUCTURE (never a server's item name: those are bytes).
STRUCTURE = "structure"
_MONTHS = {name: number for number, name in enumerate(
    (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"), start=1)}


class _Unusual(Exception):
    """A response this reader leaves to imapclient's parser."""


def fetch(client: IMAPClient, uids: list[int], items: list[str],
          structure: Callable[[bytes], Any] | None = None) -> dict[int, dict[bytes, Any]]:
    """``client.fetch(uids, items)``, answered the same, for a client using UIDs (see ``parse_fetch``
    for ``structure``)."""
    if not uids:
        return {}
    return answers(client, [send(client, uids, items)], structure=structure)[0]


def send(client: IMAPClient, uids: list[int], items: list[str]) -> tuple[bytes, list[int]]:
    """Send a UID FETCH without waiting for its answer (``answers`` reads it): several sent
    one after the other are answered in one round trip instead of one each."""
    return client._imap._command("UID", "FETCH", join_message_ids(uids), seq_to_parenstr_upper(items)), uids


def answers(client: IMAPClient, sent: list[tuple[bytes, list[int]]], before_each: Any = None,
            structure: Callable[[bytes], Any] | None = None) -> list[dict[int, dict[bytes, Any]]]:
    """The answers of the commands ``send`` sent, in their order, each as ``fetch`` gives it;
    ``before_each(commands left)`` runs before each command's answer is read. A server may
    interleave the untagged answers of pipelined commands: they are told apart by UID."""
    imap = client._imap
    merged: dict[int, dict[bytes, Any]] = {}
    for index, (tag, _) in enumerate(sent):
        if before_each is not None:
            before_each(len(sent) - index)
        typ, data = imap._command_complete("FETCH", tag)
        client._checkok("fetch", typ, data)
        typ, data = imap._untagged_response(typ, data, "FETCH")
        for uid, values in parse_fetch(data, client.normalise_times, structure).items():
            merged.setdefault(uid, {}).update(values)
    return [{uid: merged[uid] for uid in uids if uid in merged} for _, uids in sent]


def parse_fetch(data: list, normalise_times: bool,
                structure: Callable[[bytes], Any] | None = None) -> dict[int, dict[bytes, Any]]:
    """imapclient's ``parse_fetch_response(data, normalise_times, uid_is_key=True)``. With
    ``structure`` (a reader of a BODYSTRUCTURE's text giving None for what it leaves to
    imapclient's parser), a header answer of the usual shape holds ``structure(text)`` under
    ``STRUCTURE`` instead of its BODYSTRUCTURE."""
    if data == [None] or not data:
        return parse_fetch_response(data, normalise_times, True)
    try:
        return _responses(data, normalise_times, structure)
    except Exception:  # _Unusual, or a shape that broke an assumption: imapclient decides
        return parse_fetch_response(data, normalise_times, True)


def _responses(data: list, normalise_times: bool, structure: Callable[[bytes], Any] | None) -> dict[int, dict]:
    """Each response of the usual shape read whole, the others by ``_atoms`` and ``_messages``, in
    their order. imaplib gives a response as one item ending with a line without a literal, or as
    one (line, literal) item a literal followed by the rest of the response."""
    parsed: defaultdict[int, dict[bytes, Any]] = defaultdict(dict)
    others: list = []  # whole responses of other shapes, in a row

    def read_others() -> None:
        if others:
            for key, values in _messages(_atoms(others), normalise_times).items():
                parsed[key].update(values)
            others.clear()

    at, count = 0, len(data)
    while at < count:
        record = data[at]
        read = (_usual(record, normalise_times, structure)
                if at + 1 < count and isinstance(record, tuple) and data[at + 1] == b")" else None)
        if read is not None:
            read_others()
            parsed[read[0]].update(read[1])
            at += 2
            continue
        while True:  # this response, up to its item without a literal
            others.append(data[at])
            at += 1
            if not isinstance(data[at - 1], tuple) or at == count:
                break
    read_others()
    return parsed


def _usual(record: tuple, normalise_times: bool,
           structure: Callable[[bytes], Any] | None) -> tuple[int, dict[Any, Any]] | None:
    """The key and values of a header or text answer of the usual shape, else None."""
    text, literal = record
    found = _SECTION_ANSWER.fullmatch(text)
    if found is not None:
        sequence, uid, name, size = found.groups()
        if int(size) != len(literal):
            return None
        return int(uid), {b"SEQ": int(sequence), name: literal}
    found = _HEADER_ANSWER.fullmatch(text) if structure is not None else None
    if found is None:
        return None
    sequence, uid, size, date, body, name, length = found.groups()
    if int(length) != len(literal):
        return None
    read = structure(body)
    if read is None:
        return None
    return int(uid), {b"SEQ": int(sequence), b"RFC822.SIZE": int(size),
                      b"INTERNALDATE": _internal_date(date, normalise_times), STRUCTURE: read, name: literal}


def _atoms(data: list) -> list:
    stack: list[list] = [[]]
    for record in data:
        text, literal = record if isinstance(record, tuple) else (record, None)
        if not isinstance(text, bytes):
            raise _Unusual
        for opening, closing, quoted, word, quote_after, other in _TOKEN.findall(text):
            if opening:
                stack.append([])
            elif closing:
                if len(stack) == 1:
                    raise _Unusual
                done = tuple(stack.pop())
                stack[-1].append(done)
            elif word:
                if quote_after:
                    raise _Unusual
                stack[-1].append(_word(word, literal))
            elif other or b"\\" in quoted:
                raise _Unusual
            else:
                stack[-1].append(quoted)
    if len(stack) != 1:
        raise _Unusual
    return stack[0]


def _word(word: bytes, literal: bytes | None) -> Any:
    if word == b"NIL":
        return None
    if word[:1] == b"{":
        size = _LITERAL.fullmatch(word)
        if size is None or literal is None or len(literal) != int(size.group(1)):
            raise _Unusual
        return literal
    if word.isdigit() and (word[:1] != b"0" or len(word) == 1):
        return int(word)
    return word


def _messages(atoms: list, normalise_times: bool) -> dict[int, dict[bytes, Any]]:
    parsed: defaultdict[int, dict[bytes, Any]] = defaultdict(dict)
    if len(atoms) % 2:
        raise _Unusual
    for index in range(0, len(atoms), 2):
        sequence, answer = atoms[index], atoms[index + 1]
        if not isinstance(sequence, int) or not isinstance(answer, tuple) or len(answer) % 2:
            raise _Unusual
        key = sequence
        values: dict[bytes, Any] = {b"SEQ": sequence}
        for at in range(0, len(answer), 2):
            name, value = answer[at], answer[at + 1]
            if not isinstance(name, bytes):
                raise _Unusual
            name = name.upper()
            if name == b"UID":
                if not isinstance(value, int):
                    raise _Unusual
                key = value
            elif name == b"INTERNALDATE":
                values[name] = _internal_date(value, normalise_times)
            elif name in (b"BODY", b"BODYSTRUCTURE"):
                if not isinstance(value, tuple) or not value:
                    raise _Unusual
                values[name] = BodyData.create(value)
            elif name == b"ENVELOPE":
                raise _Unusual
            else:
                values[name] = value
        parsed[key].update(values)
    return parsed


def _internal_date(value: Any, normalise_times: bool) -> datetime | None:
    """imapclient's reading of an INTERNALDATE ("06-Dec-2026 14:57:20 +0100"), without the email
    package's general date parser for the one form servers send."""
    found = _INTERNALDATE.fullmatch(value) if isinstance(value, bytes) and not normalise_times else None
    if found is None:
        return _convert_INTERNALDATE(value, normalise_times)
    day, month, year, hour, minute, second, sign, zone_hours, zone_minutes = found.groups()
    offset = int(zone_hours) * 60 + int(zone_minutes)
    offset = -offset if sign == b"-" else offset
    zone = _ZONES.get(offset)
    if zone is None:
        zone = FixedOffset(offset)
        if len(_ZONES) < 100:  # a server writes its few time zones over and over
            _ZONES[offset] = zone
    try:
        return datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), tzinfo=zone)
    except ValueError:
        return _convert_INTERNALDATE(value, normalise_times)
