"""The fast reader of UID FETCH answers (core/sync/imap_fetch.py) answers as imapclient's parser
does: on the shapes it reads itself, and on every other by handing them to imapclient."""

from __future__ import annotations

import pytest
from imapclient.exceptions import ProtocolError
from imapclient.response_parser import parse_fetch_response

from mbxtui.core.sync.imap_fetch import _atoms, _messages, parse_fetch

HEADER = (b"From: Sender <s@outside.test>\r\nTo: u@lab.test\r\nSubject: Hello\r\n"
          b"Message-ID: <m1@outside.test>\r\nDate: Sun, 06 Dec 2026 08:00:00 +0000\r\n\r\n")
PLAIN = b'("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 2103 1 NIL NIL NIL NIL)'
MIXED = (b'(("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 2103 30 NIL NIL NIL NIL)'
         b'(("text" "plain" ("charset" "us-ascii") NIL NIL "quoted-printable" 10 1 NIL NIL NIL NIL)'
         b'("text" "html" ("charset" "us-ascii") NIL NIL "base64" 20 1 NIL NIL NIL NIL) "alternative" '
         b'("boundary" "b2") NIL NIL NIL)'
         b'("application" "octet-stream" ("name" "data.bin") NIL NIL "base64" 6990552 NIL '
         b'("attachment" ("filename" "data.bin")) NIL NIL) "mixed" ("boundary" "b-bench") NIL NIL NIL)')
RFC822 = (b'("message" "rfc822" NIL NIL NIL "7bit" 300 ("Sun, 06 Dec 2026 08:00:00 +0000" "inner" '
          b'(("A" NIL "a" "outside.test")) NIL NIL NIL NIL NIL NIL "<i@x>") ("text" "plain" NIL NIL NIL "7bit" 5 1 '
          b'NIL NIL NIL NIL) 12 NIL NIL NIL NIL)')


def header_answer(uid: int, structure: bytes, header: bytes = HEADER) -> list:
    return [(f'{uid} (UID {uid} RFC822.SIZE 2345 INTERNALDATE "06-Dec-2026 14:57:20 +0100" BODYSTRUCTURE '.encode()
             + structure + f" BODY[HEADER]<0> {{{len(header)}}}".encode(), header), b")"]


READ_HERE = {
    "size, date, structure and header": header_answer(7, PLAIN),
    "multipart with an alternative and an attachment": header_answer(8, MIXED),
    "an enclosed message": header_answer(9, RFC822),
    "a batch": [part for uid in (3, 4, 5) for part in header_answer(uid, MIXED if uid % 2 else PLAIN)],
    "text parts": [(b"1 (UID 11 BODY[1]<0> {5}", b"hello"), b")", (b"2 (UID 12 BODY[1.2]<0> {0}", b""), b")"],
    "an empty header literal": header_answer(13, PLAIN, b""),
    "an unsolicited FLAGS answer beside": [*header_answer(14, PLAIN), b"3 (FLAGS (\\Seen))"],
    "no UID: keyed by sequence": [b'5 (RFC822.SIZE 10 INTERNALDATE "06-Dec-2026 14:57:20 +0000")'],
    "a bad date": [b'6 (UID 16 INTERNALDATE "not a date")'],
    "a section with spaces": [(b"1 (UID 17 BODY[HEADER.FIELDS (FROM TO)] {3}", b"a\r\n"), b")"],
    "a leading zero stays bytes": [b"1 (UID 18 X-ITEM 0123)"],
    "NIL values": [b"1 (UID 19 BODYSTRUCTURE (NIL NIL NIL NIL NIL NIL 0))"],
}

HANDED_ON = {
    "an escaped quote": [b'1 (UID 20 X-NOTE "say \\"hi\\"")'],
    "a literal of the wrong length": [(b"1 (UID 21 BODY[1]<0> {9}", b"short"), b")"],
    "an unclosed parenthesis": [b"1 (UID 22 RFC822.SIZE 3"],
    "a stray closing parenthesis": [b"1 (UID 23) )"],
    "a control character": [b"1 (UID 24 X-ITEM a\x01b)"],
    "a quote right after a word": [b'1 (UID 25 X-ITEM a"b")'],
    "an unclosed section": [b"1 (UID 26 BODY[1 5)"],
    "no answer list": [b"1 UID 27"],
    "a sequence number that is not one": [b"x (UID 28)"],
    "an odd answer list": [b"1 (UID 29 RFC822.SIZE)"],
    "an envelope": [b'1 (UID 30 ENVELOPE (NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL))'],
    "a percent sign": [b"1 (UID 31 X-ITEM 50%)"],
}


def imapclient_answer(data: list) -> object:
    try:
        return dict(parse_fetch_response(data, False, True))
    except ProtocolError as refused:
        return ("refused", str(refused))


def our_answer(data: list) -> object:
    try:
        return dict(parse_fetch(data, False))
    except ProtocolError as refused:
        return ("refused", str(refused))


@pytest.mark.parametrize("name", list(READ_HERE))
def test_usual_answers_are_read_here_as_imapclient_reads_them(name):
    data = READ_HERE[name]
    assert dict(_messages(_atoms(data), False)) == imapclient_answer(data), "read here, and the same"
    assert our_answer(data) == imapclient_answer(data)


@pytest.mark.parametrize("name", list(HANDED_ON))
def test_unusual_answers_are_handed_to_imapclient_and_come_out_the_same(name):
    data = HANDED_ON[name]
    with pytest.raises(Exception):
        _messages(_atoms(data), False)
    assert our_answer(data) == imapclient_answer(data)


def test_a_structure_nested_200_levels_deep_is_read_here_as_by_imapclient():
    structure = b'("text" "plain" NIL NIL NIL "7bit" 5 1 NIL NIL NIL NIL)'
    for _ in range(200):
        structure = b"(" + structure + b' "mixed" ("boundary" "b") NIL NIL NIL)'
    data = header_answer(40, structure)
    assert dict(_messages(_atoms(data), False)) == imapclient_answer(data)
