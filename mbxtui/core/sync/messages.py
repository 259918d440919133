"""One fetched message made into what an email activity records (R25): its headers, its structure
(attachment names and sizes, which part holds its text) and a bounded text preview. Nothing in a
message is executed or followed; a message the parser cannot make sense of becomes an
``unparseable`` record with the reason, never an exception."""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import functools
import hashlib
import quopri
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser

# What is fetched of each message: its header block and its text part, each at most this much.
MOST_HEADER_BYTES = 64 * 1024
MOST_TEXT_BYTES = 64 * 1024
PREVIEW_CHARACTERS = 4000
MOST_ADDRESSES = 200
LONGEST_MESSAGE_ID = 900  # longer ones are replaced by a digest: they must fit a unique index
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")
# A Date header as RFC 5322 writes it, on one line: "Sun, 06 Dec 2026 08:00:00 +0100", then a
# space or the end.
_USUAL_DATE = re.compile(r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?([0-9]{1,2}) "
                         r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([1-9][0-9]{3}) "
                         r"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-][0-9]{4})(?= |$)", re.ASCII)
_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
# The fields of a header block of CRLF lines, each a field ("Name: value") or its continuation (a
# space or a tab first), as ``_header_fields`` reads them; what follows them (from a line of another
# kind or the blank line ending the block) in the third group of the last match.
_USUAL_FIELDS = re.compile(r"([\041-\071\073-\176]++):[ \t]*+([^\r\n]*+(?:\r\n[ \t][^\r\n]*+)*+)\r\n|(.+)", re.S)
_HEADER_LINE = re.compile(r"From |[\041-\071\073-\176]*:|[\t ]")  # the email package's headerRE
# One address with at most a plain display name: "a@b.test" or "Name Surname <a@b.test>".
_ADDRESS = r"[A-Za-z0-9][A-Za-z0-9._+-]*@[A-Za-z0-9][A-Za-z0-9.-]*"
_SIMPLE_ADDRESS = re.compile(rf"[ \t]*(?:[A-Za-z0-9][A-Za-z0-9 ]*[ \t]*<({_ADDRESS})>|({_ADDRESS}))[ \t]*", re.ASCII)
# Headers a delivery adds per recipient: left out of the digest of a message with no Message-ID, so
# that its copies in several mailboxes are one activity.
_TRACE_HEADERS = frozenset({"received", "delivered-to", "x-original-to", "return-path", "status", "x-uid",
                            "x-keywords", "content-length", "lines"})


@dataclass(frozen=True)
class TextSection:
    """The part holding a message's text, as IMAP names it (``1``, ``1.2``, ``TEXT``)."""

    section: str
    subtype: str  # plain or html
    encoding: str
    charset: str


@dataclass(frozen=True)
class Structure:
    text: TextSection | None
    attachments: tuple[tuple[str, int], ...]


@dataclass
class ParsedMessage:
    message_id: str
    sender: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)  # R26: Delivered-To, X-Original-To, To, Cc, Resent-To
    subject: str = ""
    sent_on: datetime | None = None
    in_reply_to: list[str] = field(default_factory=list)  # In-Reply-To and References (R27)
    size: int = 0
    attachments: list[tuple[str, int]] = field(default_factory=list)
    preview: str = ""
    problem: str | None = None  # set: the message is ``unparseable``, for this reason


def read_structure(body: object) -> Structure:
    """The text part and the attachments of an imapclient BODYSTRUCTURE; anything unexpected in it
    gives no text and no attachments rather than an error."""
    attachments: list[tuple[str, int]] = []
    texts: list[TextSection] = []
    try:
        _walk(body, "", attachments, texts, depth=0)
    except (TypeError, ValueError, IndexError, AttributeError):
        return Structure(None, ())
    return _chosen(texts, attachments)


def _chosen(texts: list[TextSection], attachments: list[tuple[str, int]]) -> Structure:
    """The first plain text part, else the first text part, and the attachments."""
    chosen = texts[0] if texts else None
    for text in texts:
        if text.subtype == "plain":
            chosen = text
            break
    return Structure(chosen, tuple(attachments[:MOST_ADDRESSES]))


def _walk(body: object, prefix: str, attachments: list[tuple[str, int]], texts: list[TextSection],
          depth: int) -> None:
    if depth > _DEEPEST_PART or not isinstance(body, tuple) or not body:
        return
    if isinstance(body[0], list):  # multipart: (parts, subtype, ...)
        for number, part in enumerate(body[0], start=1):
            _walk(part, f"{prefix}{number}.", attachments, texts, depth + 1)
        return
    kind, subtype, params = _text(body[0]).lower(), _text(body[1]).lower(), _pairs(body[2])
    _leaf(prefix[:-1] or "1", kind, subtype, params, _text(body[5]).lower() if len(body) > 5 else "",
          body[6] if len(body) > 6 and isinstance(body[6], int) else 0, _disposition(body), attachments, texts)


def _leaf(section: str, kind: str, subtype: str, params: dict[str, str], encoding: str, size: int,
          disposition: tuple[str, dict[str, str]], attachments: list[tuple[str, int]],
          texts: list[TextSection]) -> None:
    name = disposition[1].get("filename") or params.get("name")
    if kind == "text" and subtype in ("plain", "html") and disposition[0] != "attachment" and not name:
        texts.append(TextSection(section, subtype, encoding, params.get("charset", "us-ascii")))
    elif kind != "multipart":
        attachments.append((_decoded(name) if name else f"{kind}/{subtype}", size))


class _NotPlain(Exception):
    """A BODYSTRUCTURE that read_structure_text leaves to imapclient's parser and read_structure."""


# The BODYSTRUCTURE as the server wrote it, in the shapes usual servers write: quoted strings without
# escapes, NIL, numbers as imapclient reads them (no leading zero), parameter lists and dispositions.
_Q = r'"[^"\\]*"'
_NUMBER = r"(?:0|[1-9][0-9]*)"
_PARAMS = r"(?:NIL|\((?:" + _Q + r"(?: " + _Q + r")*)?\))"
_ITEM = r"(?:NIL|" + _Q + r"|" + _NUMBER + r")"
_DISPOSITION = r"\(" + _Q + r" " + _PARAMS + r"\)"
# A part that is not multipart: type, subtype, parameters, id, description, encoding, size, then the
# fields that follow (lines, MD5, disposition, language, location) with the first disposition apart.
_LEAF = re.compile(
    r'\("([^"\\]*)" "([^"\\]*)" (' + _PARAMS + r") (?:NIL|" + _Q + r") (?:NIL|" + _Q + r") (NIL|" + _Q
    + r") (" + _NUMBER + r")(?: " + _ITEM + r')*(?: \("([^"\\]*)" (' + _PARAMS + r")\)(?: (?:" + _ITEM
    + r"|" + _DISPOSITION + r"))*)?\)")
# After a multipart's parts: its subtype and the fields that follow (parameters, disposition, language...).
_MULTIPART_END = re.compile(r" " + _Q + r"(?: (?:" + _ITEM + r"|" + _PARAMS + r"|" + _DISPOSITION + r"))*\)")
_QUOTED = re.compile(r'"([^"\\]*)"')
_DEEPEST_PART = 20  # parts nested deeper are not looked at
_DEEPEST_TEXT = 40  # read_structure_text leaves deeper nesting to imapclient's parser


def read_structure_text(raw: bytes) -> Structure | None:
    """``read_structure`` of a BODYSTRUCTURE as imapclient would parse ``raw`` (the answer's text of
    it, from its opening parenthesis to its closing one), read from the text by a regular
    expression a part instead of imapclient's tokens and tuples (with the answer read whole by
    imap_fetch: 24.5 -> 8.1 us a bench message); None for any other shape (8-bit bytes, an escape
    in a quoted string, an enclosed message's envelope, a language list, odd spacing...), which
    the caller reads the usual way."""
    if not raw.isascii():
        return None
    attachments: list[tuple[str, int]] = []
    texts: list[TextSection] = []
    text = raw.decode("ascii")
    try:
        end = _part_text(text, 0, "", attachments, texts, 0)
    except _NotPlain:
        return None
    return _chosen(texts, attachments) if end == len(text) else None


def _part_text(text: str, at: int, prefix: str, attachments: list[tuple[str, int]], texts: list[TextSection],
               depth: int) -> int:
    """Reads the part at ``at``; where it ends."""
    if text.startswith("((", at):  # multipart: its parts one after the other, then its subtype
        if depth >= _DEEPEST_TEXT:
            raise _NotPlain
        at += 1
        number = 1
        while True:
            at = _part_text(text, at, f"{prefix}{number}.", attachments, texts, depth + 1)
            if text.startswith("(", at):
                number += 1
            elif text.startswith(" (", at):
                number += 1
                at += 1
            else:
                break
        end = _MULTIPART_END.match(text, at)
        if end is None:
            raise _NotPlain
        return end.end()
    leaf = _LEAF.match(text, at)
    if leaf is None:
        raise _NotPlain
    if depth <= _DEEPEST_PART:
        kind, subtype, params, encoding, size, disposition, disposition_params = leaf.groups()
        _leaf(prefix[:-1] or "1", kind.lower(), subtype.lower(), _quoted_pairs(params),
              "" if encoding == "NIL" else encoding[1:-1].lower(), int(size),
              ("", {}) if disposition is None else (disposition.lower(), _quoted_pairs(disposition_params)),
              attachments, texts)
    return leaf.end()


def _quoted_pairs(params: str) -> dict[str, str]:
    """``_pairs`` of a parameter list's text (NIL or quoted strings in parentheses)."""
    items = _QUOTED.findall(params)
    if len(items) == 2:  # one parameter, the usual case (a charset): 0.9 against 1.5 us a part
        return {items[0].lower(): items[1]}
    return {items[at].lower(): items[at + 1] for at in range(0, len(items) - 1, 2)}


def _disposition(body: tuple) -> tuple[str, dict[str, str]]:
    # The disposition follows the type-specific fields: search for a (name, params) pair.
    for item in body[7:]:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], bytes):
            return _text(item[0]).lower(), _pairs(item[1])
    return "", {}


def _pairs(value: object) -> dict[str, str]:
    if not isinstance(value, tuple):
        return {}
    items = list(value)
    return {_text(items[i]).lower(): _text(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def decode_text(data: bytes, section: TextSection) -> str:
    """The text of a (possibly cut short) part, decoded as its headers say; HTML reduced to text."""
    if section.encoding == "base64":
        compact = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        compact = compact[: len(compact) - len(compact) % 4]
        try:
            data = base64.b64decode(compact)
        except (binascii.Error, ValueError):
            data = b""
    elif section.encoding == "quoted-printable":
        data = quopri.decodestring(data)
    text = data.decode(_codec(section.charset), "replace")
    if section.subtype == "html":
        text = html_to_text(text)
    return text


@functools.lru_cache(maxsize=64)
def _codec(charset: str) -> str:
    try:
        return codecs.lookup(charset.strip() or "us-ascii").name
    except (LookupError, ValueError):
        return "utf-8"  # an unknown charset: UTF-8 with replacements says most


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style", "head"):
            self._hidden += 1
        elif tag in ("br", "p", "div", "tr", "li"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextOnly()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is lenient; whatever it still refuses is dropped
        pass
    return re.sub(r"[ \t]+", " ", re.sub(r"\n\s*\n+", "\n\n", "".join(parser.parts))).strip()


def received_date(header_bytes: bytes) -> datetime | None:
    """When a message reached its mailbox, as far as its headers tell (POP3 has no INTERNALDATE):
    the date of the topmost Received header (added by the last hop, the delivery), else its Date."""
    try:
        headers = email.message_from_bytes(header_bytes, policy=email.policy.compat32)
        hops = headers.get_all("Received") or []
        when = _date(str(hops[0]).rpartition(";")[2]) if hops else None
        return when or _date(_header(_header_values(headers.raw_items()), "date"))
    except Exception:  # the email package on hostile input
        return None


def top_structure(header_bytes: bytes, body_bytes: bytes, size: int, complete: bool) -> tuple[Structure, str]:
    """The structure and the decoded text of a message of which only the header block and the first
    body lines were read (POP3 ``TOP``; ``complete``: they were all of it).

    What this cannot tell without the whole message (``RETR``, never sent): attachments whose part
    begins after the lines read are missing, and the size of the part the lines end in is not
    known: it is given as the rest of the message from where that part begins, an upper bound
    (later parts and closing boundaries included). Parts read to their end have their size as
    IMAP's BODYSTRUCTURE gives it, encoded octets."""
    try:
        message = email.message_from_bytes(header_bytes + b"\r\n" + body_bytes, policy=email.policy.compat32)
        attachments: list[tuple[int, tuple[str, int]]] = []  # place among the leaf parts, (name, octets seen)
        texts: list[tuple[TextSection, bytes]] = []
        _walk_parts(message, attachments, texts, depth=0)
    except Exception:  # the email package on hostile input
        return Structure(None, ()), ""
    leaves = len(attachments) + len(texts)
    unread = max(0, size - len(header_bytes) - 2 - len(body_bytes))
    sized = [(name, seen + unread if (not complete and index == leaves - 1) else seen)
             for index, (name, seen) in attachments]
    plain = [t for t in texts if t[0].subtype == "plain"]
    chosen = (plain or texts or [None])[0]
    text = ""
    if chosen is not None:
        try:
            text = decode_text(chosen[1], chosen[0])
        except Exception:
            text = ""
    return Structure(chosen[0] if chosen else None, tuple(sized[:MOST_ADDRESSES])), text


def _walk_parts(part: Message, attachments: list, texts: list, depth: int) -> None:
    """Like ``_walk`` over a BODYSTRUCTURE: the text candidates and the attachments (with their
    place among the leaf parts, so that the last one read can be told), message/rfc822 parts as
    attachments not opened."""
    if depth > 20:
        return
    kind, subtype = part.get_content_maintype(), part.get_content_subtype()
    if kind == "multipart":
        payload = part.get_payload()
        for child in payload if isinstance(payload, list) else []:
            _walk_parts(child, attachments, texts, depth + 1)
        return
    raw = part.get_payload()
    if isinstance(raw, str):
        raw_bytes = raw.encode("ascii", "surrogateescape")
    else:  # message/rfc822: the enclosed message as read
        raw_bytes = b"".join(child.as_bytes() for child in raw if isinstance(child, Message))
    place = len(attachments) + len(texts)
    disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
    name = part.get_filename() or part.get_param("name")
    if kind == "text" and subtype in ("plain", "html") and disposition != "attachment" and not name:
        encoding = (part.get("Content-Transfer-Encoding") or "").strip().lower()
        texts.append((TextSection("top", subtype, encoding, part.get_content_charset() or "us-ascii"), raw_bytes))
        return
    if isinstance(name, tuple):  # an RFC 2231 value
        name = email.utils.collapse_rfc2231_value(name)
    attachments.append((place, (_decoded(str(name)) if name else f"{kind}/{subtype}", len(raw_bytes))))


def parse(header_bytes: bytes, structure: Structure, text: str, size: int) -> ParsedMessage:
    """The activity's fields from the fetched header block, structure and decoded text."""
    try:
        return _parse(header_bytes, structure, text, size)
    except Exception as exc:  # the email package on hostile input: any error is the message's
        return unparseable(header_bytes, size, f"the message could not be read ({type(exc).__name__})")


def unparseable(header_bytes: bytes, size: int, problem: str) -> ParsedMessage:
    return ParsedMessage(message_id=_digest_id([header_bytes]), size=size, problem=problem)


def _parse(header_bytes: bytes, structure: Structure, text: str, size: int) -> ParsedMessage:
    fields = _header_fields(header_bytes)
    if not fields:
        return unparseable(header_bytes, size, "the message has no headers")
    values = _header_values(fields)
    message_id = _message_id(_header(values, "message-id")) or _digest_id(_stable_headers(
        email.message_from_bytes(header_bytes, policy=email.policy.compat32)))
    to, cc = _addresses(values, "to"), _addresses(values, "cc")
    recipients = [*_addresses(values, "delivered-to"), *_addresses(values, "x-original-to"), *to, *cc,
                  *_addresses(values, "resent-to")]
    senders = _addresses(values, "from")
    references = _MESSAGE_ID.findall(f"{_header(values, 'in-reply-to')} {_header(values, 'references')}")
    return ParsedMessage(
        message_id=message_id, sender=senders[0] if senders else _header(values, "from")[:320],
        to=to, cc=cc, recipients=list(dict.fromkeys(recipients)), subject=_header(values, "subject")[:1000],
        sent_on=_date(_header(values, "date")), in_reply_to=references[:50], size=size,
        attachments=list(structure.attachments), preview=text[:PREVIEW_CHARACTERS],
    )


def _header_fields(header_bytes: bytes) -> list[tuple[str, str]]:
    """The (name, raw value) pairs of a header block, as the email package's compat32 parser reads
    them (``message_from_bytes(...).raw_items()``: the same lines, continuations, misplaced "From "
    lines and separator), without building a message (a third of a message's parsing time)."""
    text = header_bytes.decode("ascii", "surrogateescape")
    usual = _USUAL_FIELDS.findall(text)  # CRLF lines, each a field or its continuation, then the rest
    rest = usual.pop()[2] if usual and usual[-1][2] else ""
    if not rest or rest.startswith("\r\n"):  # all of them, up to the blank line or the end
        return [(name, value) for name, value, _ in usual]
    parts = _LINE_BREAK.split(text)
    lines = [parts[at] + parts[at + 1] for at in range(0, len(parts) - 1, 2)]
    if parts[-1]:
        lines.append(parts[-1])
    block = []
    for line in lines:
        if not _HEADER_LINE.match(line):
            break
        block.append(line)
    fields: list[tuple[str, str]] = []
    name, source = "", []
    for number, line in enumerate(block):
        if line[0] in " \t":
            if name:
                source.append(line)
            continue
        if name:
            fields.append(_field(source))
            name, source = "", []
        if line.startswith("From "):
            if number == len(block) - 1 and number:
                return fields  # the first line of a body, as the email package reads it
            continue  # an envelope line, or a misplaced one: not a header
        colon = line.find(":")
        if colon == 0:
            continue
        name, source = line[:colon], [line]
    if name:
        fields.append(_field(source))
    return fields


def _field(source: list[str]) -> tuple[str, str]:
    name, value = source[0].split(":", 1)
    return name, (value.lstrip(" \t") + "".join(source[1:])).rstrip("\r\n")


def _header_values(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Each header's values as written, by lower-case name, read once: raw 8-bit bytes read as UTF-8
    (the parser keeps them as surrogates, and ``get`` would turn them into replacement characters)."""
    values: dict[str, list[str]] = {}
    for key, value in fields:
        value = str(value)
        if not value.isascii() and any("\udc80" <= c <= "\udcff" for c in value):
            value = value.encode("ascii", "surrogateescape").decode("utf-8", "replace")
        key = key.lower()
        found = values.get(key)
        if found is None:
            values[key] = [value]
        else:
            found.append(value)
    return values


def _header(values: dict[str, list[str]], name: str) -> str:
    """A header's first value decoded (RFC 2047 words), on one line."""
    found = values.get(name)
    if not found:
        return ""
    return " ".join(_decoded(found[0]).split())


def _decoded(value: str) -> str:
    if "=?" not in value:  # no encoded word: decode_header would give it back as it is
        return value
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # an unknown charset or broken encoded word: keep it as written
        return value


def _addresses(values: dict[str, list[str]], name: str) -> list[str]:
    found = values.get(name)
    if not found:
        return []
    if len(found) == 1:  # the usual case, without the lists below: 0.85 against 1.6 us a call
        match = _SIMPLE_ADDRESS.fullmatch(found[0])
        if match is not None:
            return [(match.group(1) or match.group(2)).lower()]
    simple = [_SIMPLE_ADDRESS.fullmatch(value) for value in found]
    if all(simple):  # one plain address each, as getaddresses would read it, without its parser
        return [(match.group(1) or match.group(2)).lower() for match in simple][:MOST_ADDRESSES]
    try:
        pairs = getaddresses(found)
    except Exception:
        return []
    return [address.strip().lower() for _, address in pairs if "@" in address][:MOST_ADDRESSES]


def _message_id(value: str) -> str:
    found = _MESSAGE_ID.search(value)
    if not found:
        return ""
    if len(found.group(0)) > LONGEST_MESSAGE_ID:
        return _digest_id([found.group(0).encode("utf-8", "replace")])
    return found.group(0)


def _stable_headers(headers: Message) -> list[bytes]:
    return [f"{k.lower()}:{v}".encode("utf-8", "surrogateescape") for k, v in headers.items()
            if k.lower() not in _TRACE_HEADERS]


def _digest_id(parts: list[bytes]) -> str:
    digest = hashlib.sha256(b"\n".join(parts)).hexdigest()[:40]
    return f"<{digest}@digest.mbxtui.invalid>"


def _date(value: str) -> datetime | None:
    """The moment a date header gives, in UTC; None when it gives none that can be told: unreadable,
    or out of range once in UTC ("31 Dec 9999 23:30:00 -0100"), which would otherwise make the
    whole message unreadable."""
    try:
        usual = _usual_date(value)
        if usual is not None:
            return usual
        parsed = parsedate_to_datetime(value)
        if parsed.tzinfo is not None:  # validation.stored_moment's conversion: importing it brings the database
            parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed.replace(microsecond=0)


def _usual_date(value: str) -> datetime | None:
    """``_date`` of a Date header in the form RFC 5322 gives ("Sun, 06 Dec 2026 08:00:00 +0100",
    then anything: the email package reads five words), read as the email package reads it,
    without its general parser (5.0 -> 1.3 us); None for any other form."""
    found = _USUAL_DATE.match(value)
    if found is None:
        return None
    day, month, year, hours, minutes, seconds, zone = found.groups()
    offset = int(zone)
    if offset == 0:  # "+0000" and "-0000" alike: the time as written
        try:
            return datetime(int(year), _MONTHS[month], int(day), int(hours), int(minutes), int(seconds))
        except ValueError:
            return None
    sign, offset = (-1, -offset) if offset < 0 else (1, offset)
    zone_seconds = sign * ((offset // 100) * 3600 + (offset % 100) * 60)
    try:
        moment = datetime(int(year), _MONTHS[month], int(day), int(hours), int(minutes), int(seconds),
                          tzinfo=timezone(timedelta(seconds=zone_seconds)))
    except ValueError:
        return None
    return moment.astimezone(timezone.utc).replace(tzinfo=None)
