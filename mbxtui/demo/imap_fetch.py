"""What the sandbox IMAP server needs to be processed (RFC 3501, as much as a sync cycle uses):
sequence sets, SEARCH by UID and SINCE, and FETCH of RFC822.SIZE, INTERNALDATE, FLAGS,
BODYSTRUCTURE and (partial) BODY sections: HEADER, TEXT and numbered parts."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from email import message_from_bytes, policy
from email.message import Message

_PARTIAL = re.compile(r"^(BODY(?:\.PEEK)?)\[([0-9.]*(?:HEADER|TEXT|MIME)?)\](?:<(\d+)\.(\d+)>)?$", re.IGNORECASE)
_SECTION = re.compile(r"((?:\d+\.)*\d+)?\.?(HEADER|TEXT|MIME)?")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MAX_SET_ITEMS = 100_000


class FetchError(ValueError):
    """A request the sandbox does not understand (answered BAD with this text)."""


def parse_set(text: str, largest: int) -> set[int]:
    """A sequence set (``1,3:5,7:*``) as numbers; ``*`` is ``largest``."""
    numbers: set[int] = set()
    for piece in text.split(","):
        first, _, last = piece.partition(":")
        try:
            low = largest if first == "*" else int(first)
            high = low if not last else (largest if last == "*" else int(last))
        except ValueError:
            raise FetchError(f"not a sequence set: {text}") from None
        low, high = min(low, high), max(low, high)
        if high - low > MAX_SET_ITEMS:
            high = low + MAX_SET_ITEMS
        numbers.update(range(low, high + 1))
    return numbers


def parse_search_date(text: str) -> date:
    try:
        return datetime.strptime(text, "%d-%b-%Y").date()
    except ValueError:
        raise FetchError(f"not a date: {text}") from None


def internal_date(moment: float) -> str:
    when = datetime.fromtimestamp(moment, timezone.utc)
    return f'"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year} {when:%H:%M:%S} +0000"'


def fetch_items(tokens: list[bytes]) -> list[str]:
    """The items asked for: a single item, a macro, or a parenthesised list."""
    names = [token.decode("ascii", "replace") for token in tokens if token not in (b"(", b")")]
    expanded: list[str] = []
    for name in names:
        upper = name.upper()
        if upper == "ALL":
            expanded += ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]
        elif upper == "FAST":
            expanded += ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]
        elif upper == "FULL":
            expanded += ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODYSTRUCTURE"]
        else:
            expanded.append(name)
    return expanded


def answer(item: str, data: bytes, arrived: float, flags: list[str]) -> tuple[str, bytes | None]:
    """One item's answer: its text, and the bytes of its literal (None when it has none)."""
    upper = item.upper()
    if upper == "RFC822.SIZE":
        return f"RFC822.SIZE {len(data)}", None
    if upper == "INTERNALDATE":
        return f"INTERNALDATE {internal_date(arrived)}", None
    if upper == "FLAGS":
        return f"FLAGS ({' '.join(flags)})", None
    if upper in ("BODYSTRUCTURE", "BODY"):
        return f"{upper} {body_structure(message_from_bytes(data, policy=policy.compat32))}", None
    if upper in ("RFC822", "RFC822.PEEK"):
        return "RFC822", data
    if upper == "RFC822.HEADER":
        return "RFC822.HEADER", section(data, "HEADER")
    partial = _PARTIAL.match(item)
    if partial is None:
        raise FetchError(f"the sandbox cannot fetch {item}")
    name = partial[2].upper()
    content = section(data, name)
    origin = ""
    if partial[3] is not None:
        start, length = int(partial[3]), int(partial[4])
        content = content[start:start + length]
        origin = f"<{start}>"
    return f"BODY[{name}]{origin}", content


def section(data: bytes, name: str) -> bytes:
    """A body section of a message: ``HEADER``, ``TEXT``, ``""`` (all), a part number (``1``,
    ``1.2``: the part's content) and those followed by ``.HEADER``, ``.TEXT`` or ``.MIME``."""
    match = _SECTION.fullmatch(name.upper())
    if match is None:
        raise FetchError(f"not a body section: {name}")
    path = [int(number) for number in match[1].split(".")] if match[1] else []
    kind = match[2] or ""
    part = data
    for number in path:
        part = _part(part, number)
    header, body = _split(part)
    if kind in ("HEADER", "MIME"):
        return header
    if kind == "TEXT" or path:
        return body
    return part


def _split(data: bytes) -> tuple[bytes, bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        position = data.find(separator)
        if position >= 0:
            return data[:position + len(separator)], data[position + len(separator):]
    return data, b""


def _part(data: bytes, number: int) -> bytes:
    """Part ``number`` (from 1) of a multipart entity, its headers included; of a single-part
    entity, part 1 is the entity itself."""
    header, body = _split(data)
    parsed = message_from_bytes(header, policy=policy.compat32)
    boundary = parsed.get_boundary() if parsed.get_content_maintype() == "multipart" else None
    if boundary is None:
        return data if number == 1 else b""
    delimiter = b"--" + boundary.encode("ascii", "replace")
    pieces = body.split(delimiter)[1:]  # before the first delimiter: the preamble
    parts = [piece for piece in pieces if not piece.startswith(b"--")]
    if number > len(parts):
        return b""
    chosen = parts[number - 1]
    chosen = chosen[2:] if chosen.startswith(b"\r\n") else chosen[1:] if chosen.startswith(b"\n") else chosen
    return chosen[:-2] if chosen.endswith(b"\r\n") else chosen


def body_structure(message: Message) -> str:
    if message.is_multipart():
        parts = "".join(body_structure(part) for part in message.get_payload())
        return f'({parts} {_string(message.get_content_subtype())} {_params(message, skip="boundary")} NIL NIL NIL)'
    kind, subtype = message.get_content_maintype(), message.get_content_subtype()
    if kind == "message":  # no envelope in the sandbox: an opaque attachment
        kind, subtype = "application", "octet-stream"
    payload = message.get_payload(decode=False)
    raw = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    fields = (f"{_string(kind)} {_string(subtype)} {_params(message)} NIL NIL "
              f"{_string(message.get('Content-Transfer-Encoding', '7bit').strip())} {len(raw)}")
    if kind == "text":
        lines = raw.count(b"\n") + 1
        fields += f" {lines}"
    disposition = message.get("Content-Disposition")
    if disposition:
        name = message.get_param("filename", header="content-disposition")
        params = f"({_string('filename')} {_string(str(name))})" if name else "NIL"
        fields += f" NIL ({_string(disposition.split(';')[0].strip())} {params})"
    return f"({fields})"


def _params(message: Message, skip: str = "") -> str:
    pairs = [(key, value) for key, value in (message.get_params() or [])[1:] if key.lower() != skip]
    if not pairs:
        return "NIL"
    return "(" + " ".join(f"{_string(key)} {_string(str(value))}" for key, value in pairs) + ")"


def _string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ") + '"'
