"""The fast reader of UID FETCH answers (core/sync/imap_fetch.py) answers as imapclient's parser
does: on the shapes it reads itself, and on every other by handing them to imapclient."""

from __future__ import annotations

import pytest
from imapclient.exceptions import ProtocolError
from imapclient.response_parser import parse_fetch_response

from mbxtui.core.sync.imap_fetch import STRUCTURE, _atoms, _messages, parse_fetch
from mbxtui.core.sync.messages import read_structure, read_structure_text

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


# --- header answers read whole, their BODYSTRUCTURE by the cycle's reader (read_structure_text) ------------------

def imapclient_with_structures(data: list) -> object:
    """imapclient's answer, each BODYSTRUCTURE as the cycle reads it (read_structure)."""
    answer = imapclient_answer(data)
    if isinstance(answer, dict):
        for values in answer.values():
            if b"BODYSTRUCTURE" in values:
                values[STRUCTURE] = read_structure(values.pop(b"BODYSTRUCTURE"))
    return answer


def our_structured_answer(data: list) -> object:
    try:
        answer = dict(parse_fetch(data, False, read_structure_text))
    except ProtocolError as refused:
        return ("refused", str(refused))
    for values in answer.values():
        if b"BODYSTRUCTURE" in values:
            values[STRUCTURE] = read_structure(values.pop(b"BODYSTRUCTURE"))
    return answer


NESTED = (b'((("text" "plain" ("charset" "iso-8859-1" "format" "flowed") NIL NIL "quoted-printable" 10 1 NIL '
          b'("inline" NIL) NIL NIL)("text" "html" ("charset" "utf-8") "<id@x>" "desc" "base64" 20 1 "md5==" NIL "en" '
          b'"http://x/") "alternative" ("boundary" "b2") NIL NIL NIL)("image" "png" () NIL NIL "base64" 300 NIL '
          b'("inline" ("filename" "=?utf-8?q?b=C3=A9b=C3=A9.png?=")) NIL NIL) ("application" "pdf" ("name" '
          b'"resume.pdf") NIL NIL "base64" 0 NIL ("ATTACHMENT" ("FILENAME" "x.pdf" "size" "1")) NIL NIL)'
          b' "mixed" ("boundary" "b1") ("inline" NIL) ("en" "de") "loc")')
STRUCTURED_HERE = {
    "a plain message": header_answer(7, PLAIN),
    "multipart with an alternative and an attachment": header_answer(8, MIXED),
    "nested multiparts, NIL, empty parameters, dispositions": header_answer(9, NESTED),
    "a part without extension data": header_answer(10, b'("text" "plain" NIL NIL NIL NIL 5)'),
    "an html part only, a quoted empty string": header_answer(11, b'("TEXT" "HTML" ("CHARSET" "") NIL NIL "8BIT" 5 1)'),
    "a text attachment named by its type's parameter": header_answer(
        12, b'(("text" "plain" NIL NIL NIL "7bit" 5 1)("text" "plain" ("name" "notes.txt") NIL NIL "7bit" 9 1) "mixed")'),
    "a control character and a parenthesis quoted": header_answer(13, b'("text" "plain" ("charset" "a\x01(b") NIL NIL "7bit" 5 1)'),
    "a batch with an unsolicited FLAGS answer and an unusual one between":
        [*header_answer(3, PLAIN), b"3 (FLAGS (\\Seen))", *header_answer(4, RFC822), *header_answer(5, MIXED),
         (b"4 (UID 6 BODY[1]<0> {5}", b"hello"), b")"],
    "parts one space apart": header_answer(
        15, b'(("text" "html" NIL NIL NIL "7bit" 5 1) ("text" "plain" NIL NIL NIL "7bit" 5 1) "alternative")'),
    "an odd parameter list, its last name without a value": header_answer(
        16, b'("text" "plain" ("charset" "utf-8" "format") NIL NIL "7bit" 5 1)'),
    "text answers": [(b"1 (UID 11 BODY[1]<0> {5}", b"hello"), b")", (b"2 (UID 12 BODY[1.2]<0> {0}", b""), b")",
                     (b"3 (UID 13 BODY[TEXT]<0> {2}", b"\r\n"), b")"],
}
NESTED_DEEP = b'("text" "plain" NIL NIL NIL "7bit" 5 1 NIL NIL NIL NIL)'
for _ in range(25):
    NESTED_DEEP = b"(" + NESTED_DEEP + b' "mixed" ("boundary" "b") NIL NIL NIL)'
STRUCTURED_HERE["nested 25 deep: the text part below the depth read"] = header_answer(14, NESTED_DEEP)

STRUCTURES_HANDED_ON = {
    "an enclosed message": RFC822,
    "8-bit bytes": b'("application" "pdf" ("name" "r\xc3\xa9sum\xc3\xa9.pdf") NIL NIL "base64" 0 NIL NIL NIL NIL)',
    "an escaped quote": b'("text" "plain" ("name" "a\\"b") NIL NIL "7bit" 5 1)',
    "a literal": b'("text" "plain" ("name" {3}) NIL NIL "7bit" 5 1)',
    "a language list": b'("text" "plain" NIL NIL NIL "7bit" 5 1 NIL NIL ("en" "de") NIL)',
    "a size with a leading zero": b'("text" "plain" NIL NIL NIL "7bit" 05 1)',
    "a subtype NIL": b'("text" NIL NIL NIL NIL "7bit" 5 1)',
    "an atom for a string": b'(text "plain" NIL NIL NIL "7bit" 5 1)',
    "two spaces": b'("text"  "plain" NIL NIL NIL "7bit" 5 1)',
    "a parameter NIL": b'("text" "plain" ("charset" NIL) NIL NIL "7bit" 5 1)',
    "a multipart without its subtype": b'(("text" "plain" NIL NIL NIL "7bit" 5 1))',
    "an unbalanced structure": b'(("text" "plain" NIL NIL NIL "7bit" 5 1) "mixed"',
    "nested 50 deep": b"(" * 50 + b'"text" "plain" NIL NIL NIL "7bit" 5 1)' + b' "mixed")' * 49,
}


@pytest.mark.parametrize("name", list(STRUCTURED_HERE))
def test_usual_header_answers_are_read_whole_as_imapclient_and_read_structure_read_them(name):
    data = STRUCTURED_HERE[name]
    ours = our_structured_answer(data)
    assert ours == imapclient_with_structures(data)
    structured = parse_fetch(data, False, read_structure_text)
    headers = [values for values in structured.values() if b"RFC822.SIZE" in values]
    assert all(STRUCTURE in values for values in headers if values[b"SEQ"] != 4), \
        "read from the answer's text, not from imapclient's tuples (but for the enclosed message, SEQ 4)"


@pytest.mark.parametrize("name", list(STRUCTURES_HANDED_ON))
def test_unusual_structures_are_read_the_usual_way_with_the_same_outcome(name):
    data = header_answer(50, STRUCTURES_HANDED_ON[name])
    assert read_structure_text(STRUCTURES_HANDED_ON[name]) is None
    assert our_structured_answer(data) == imapclient_with_structures(data)


def test_a_header_answer_of_another_shape_is_read_by_imapclient_the_same():
    shapes = [
        [(b'1 (RFC822.SIZE 5 UID 1 INTERNALDATE "06-Dec-2026 14:57:20 +0100" BODYSTRUCTURE ' + PLAIN
          + b" BODY[HEADER]<0> {3}", b"a\r\n"), b")"],  # the items in another order
        [(b'1 (UID 1 RFC822.SIZE 5 INTERNALDATE "06-Dec-2026 14:57:20 +0100" BODYSTRUCTURE ' + PLAIN
          + b" BODY[HEADER]<0> {9}", b"a\r\n"), b")"],  # a literal of the wrong length
        [(b'1 (UID 1 RFC822.SIZE 5 INTERNALDATE "06-Dec-2026 14:57:20 +0100" BODYSTRUCTURE ' + PLAIN
          + b" BODY[HEADER]<0> {3}", b"a\r\n"), b" FLAGS ())"],  # more after the literal
        [(b'1 (UID 1 RFC822.SIZE 5 INTERNALDATE "06-Dec-2026 14:57:20 +0100" BODYSTRUCTURE ' + PLAIN
          + b' RFC822.SIZE 6 BODY[HEADER]<0> {3}', b"a\r\n"), b")"],  # an item between
        [(b"1 (UID 01 BODY[1]<0> {3}", b"abc"), b")"], [(b"1 (UID 1 BODY[1]<0> {3}", b"ab"), b")"],
        [(b"1 (UID 1 BODY[0]<0> {3}", b"abc"), b")"], [(b"1 (UID 1 body[1]<0> {3}", b"abc"), b")"],
        [(b"1 (UID 1 X {1}", b"a"), (b" BODY[1]<0> {3}", b"abc"), b")"],  # two literals in one answer
        [(b"1 (UID 1 BODY[1]<0> {3}", b"abc"), b")", (b"1 (UID 1 BODY[1]<0> {3}", b"abc")],  # cut short
    ]
    for data in shapes:
        assert our_structured_answer(data) == imapclient_with_structures(data), data


def test_an_internaldate_out_of_range_in_utc_is_taken_as_now_not_an_error():
    from mbxtui.core.models import utcnow
    from mbxtui.core.sync.imap_cycle import _utc

    before = utcnow().replace(microsecond=0)
    for answer_text in (b'1 (UID 7 INTERNALDATE "31-Dec-9999 23:30:00 -0100")',  # read here
                        b'1 (UID 7 FLAGS (\\Seen) INTERNALDATE "31-Dec-9999 23:30:00 -0100")'):  # by imapclient
        [answer] = parse_fetch([answer_text], False).values()  # the cycle's reading (normalise_times off)
        assert before <= _utc(answer[b"INTERNALDATE"]) <= utcnow()
    [usual] = parse_fetch([b'1 (UID 7 INTERNALDATE "06-Dec-2026 14:57:20 +0100")'], False).values()
    assert str(_utc(usual[b"INTERNALDATE"])) == "2026-12-06 13:57:20"
