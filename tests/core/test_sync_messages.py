"""Reading a fetched message into an activity's fields (R25) and deciding who it concerns (R26, R27):
pure functions over the structures imapclient returns."""

from __future__ import annotations

import base64
from datetime import timezone

import pytest

from mbxtui.core.sync.messages import (
    MOST_TEXT_BYTES, PREVIEW_CHARACTERS, Structure, TextSection, decode_text, html_to_text, parse, read_structure,
    received_date, top_structure,
)
from mbxtui.core.sync.routing import Party, effective_tracking, route, tracked

# BODYSTRUCTUREs as imapclient parses them.
PLAIN = (b"text", b"plain", (b"charset", b"utf-8"), None, None, b"7bit", 12, 1, None, None, None, None)
HTML = (b"text", b"html", (b"charset", b"iso-8859-1"), None, None, b"quoted-printable", 40, 2, None, None, None, None)
PDF = (b"application", b"pdf", (b"name", b"report.pdf"), None, None, b"base64", 2048, None,
       (b"attachment", (b"filename", b"=?utf-8?q?r=C3=A9sum=C3=A9.pdf?=")), None, None)
ALTERNATIVE = ([HTML, PLAIN], b"alternative", (b"boundary", b"b1"), None, None, None)
MIXED = ([ALTERNATIVE, PDF], b"mixed", (b"boundary", b"b2"), None, None, None)


def headers(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


POP3_HEADER = headers("From: a@outside.test", "Subject: report", "MIME-Version: 1.0",
                      'Content-Type: multipart/mixed; boundary="B"')[:-2]  # TOP's header block, blank line apart
POP3_BODY = ("--B\r\nContent-Type: multipart/alternative; boundary=\"A\"\r\n\r\n"
             "--A\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>there</b></p>\r\n"
             "--A\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable"
             "\r\n\r\nCaf=E9 at noon\r\n--A--\r\n"
             "--B\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
             "Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf\r\n\r\nJVBERi0x\r\n"
             "--B\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner text\r\n"
             "--B\r\nContent-Type: application/zip; name=\"big.zip\"\r\nContent-Transfer-Encoding: base64\r\n"
             "\r\nUEsDBAoAAAAAA\r\nUEsDBAoAAAAAA\r\n").encode()


def test_the_lines_pop3_top_returns_give_the_text_and_the_attachments_as_far_as_they_go():
    size = len(POP3_HEADER) + 2 + len(POP3_BODY) + 1_000_000  # the zip goes on past the lines read
    structure, text = top_structure(POP3_HEADER, POP3_BODY, size, complete=False)
    assert structure.text.subtype == "plain" and text.strip() == "Café at noon"
    names = dict(structure.attachments)
    assert names["résumé.pdf"] == len(b"JVBERi0x")
    assert names["message/rfc822"] > 0, "an enclosed message is an attachment, not opened"
    assert names["big.zip"] >= 1_000_000, "the part cut short: at most the rest of the message"

    complete = len(POP3_HEADER) + 2 + len(POP3_BODY)
    assert dict(top_structure(POP3_HEADER, POP3_BODY, complete, complete=True)[0].attachments)["big.zip"] < 100


def test_deeply_nested_top_lines_are_walked_only_so_deep():
    depth = 60
    body = b"".join(f"--b{i}\r\nContent-Type: multipart/mixed; boundary=\"b{i + 1}\"\r\n\r\n".encode()
                    for i in range(depth))
    body += f"--b{depth}\r\nContent-Type: text/plain\r\n\r\ndeep down\r\n".encode()
    header = b'Subject: nested\r\nContent-Type: multipart/mixed; boundary="b0"\r\n'
    structure, text = top_structure(header, body, len(header) + len(body) + 2, complete=True)
    assert (structure.text, text) == (None, "")


def test_the_received_date_is_the_topmost_received_hop_else_the_date_header():
    assert str(received_date(headers(
        "Received: from b by c; Tue, 02 Jun 2026 12:00:00 +0200",
        "Received: from a by b; Mon, 01 Jun 2026 10:00:00 +0000",
        "Date: Sun, 01 Mar 2026 08:00:00 +0000"))) == "2026-06-02 10:00:00"
    assert str(received_date(headers("Received: from a by b (no date)", "Date: Sun, 01 Mar 2026 08:00:00 -0100"))) \
        == "2026-03-01 09:00:00"
    assert received_date(headers("Subject: no dates")) is None


def test_the_structure_names_the_plain_text_part_and_the_attachments():
    structure = read_structure(MIXED)
    assert structure.text == TextSection("1.2", "plain", "7bit", "utf-8")
    assert structure.attachments == (("résumé.pdf", 2048),)


def test_a_single_part_message_has_its_text_in_section_1_and_html_is_used_without_plain():
    assert read_structure(PLAIN).text.section == "1"
    assert read_structure(([HTML, PDF], b"mixed", None, None, None, None)).text.subtype == "html"


def test_a_structure_imapclient_could_not_make_sense_of_gives_nothing_rather_than_an_error():
    assert read_structure(None) == Structure(None, ())
    assert read_structure((b"text",)) == Structure(None, ())
    nested = PLAIN
    for _ in range(100):  # deeply nested message parts
        nested = ([nested], b"mixed", None, None, None, None)
    assert read_structure(nested).text is None


def test_text_cut_short_in_base64_and_quoted_printable_still_decodes():
    encoded = base64.encodebytes("héllo wörld ".encode("utf-8") * 100)[:301]
    text = decode_text(encoded, TextSection("1", "plain", "base64", "utf-8"))
    assert text.startswith("héllo wörld héllo")
    assert decode_text(b"caf=E9 cr=E8me=", TextSection("1", "plain", "quoted-printable", "latin-1")) == "café crème"
    assert decode_text(b"caf\xe9", TextSection("1", "plain", "8bit", "x-unknown")) == "caf\ufffd"
    assert decode_text(b"!!!not base64@@@", TextSection("1", "plain", "base64", "utf-8")) is not None


def test_html_becomes_text_and_nothing_in_it_runs():
    html = ("<html><head><style>p{}</style><script>alert(1)</script></head><body><p>Hello <b>you</b></p>"
            "<img src='http://tracker.test/x.png'><div>Bye</div></body></html>")
    text = html_to_text(html)
    assert "Hello you" in text and "Bye" in text
    assert "alert" not in text and "tracker" not in text and "<" not in text


def test_fields_are_decoded_and_bounded():
    parsed = parse(headers("From: =?utf-8?q?J=C3=B6rg?= <Joerg@Outside.test>", "To: a@x.test, B <b@x.test>",
                           "Cc: c@x.test", "Subject: =?utf-8?b?R3LDvMOfZQ==?=", "Message-ID: <m1@x.test>",
                           "Date: Sun, 06 Dec 2026 09:00:00 +0100", "In-Reply-To: <p@x.test>",
                           "References: <o@x.test> <p@x.test>", "Delivered-To: d@x.test"),
                   Structure(None, ()), "x" * (PREVIEW_CHARACTERS + 10), 500)
    assert (parsed.sender, parsed.to, parsed.cc, parsed.subject) == (
        "joerg@outside.test", ["a@x.test", "b@x.test"], ["c@x.test"], "Grüße")
    assert parsed.recipients == ["d@x.test", "a@x.test", "b@x.test", "c@x.test"]
    assert parsed.sent_on.isoformat() == "2026-12-06T08:00:00"
    assert parsed.in_reply_to == ["<p@x.test>", "<o@x.test>", "<p@x.test>"]
    assert len(parsed.preview) == PREVIEW_CHARACTERS and parsed.problem is None
    assert MOST_TEXT_BYTES == 64 * 1024  # R25: at most 64 KB of text is fetched


@pytest.mark.parametrize("date", ["Fri, 31 Dec 9999 23:30:00 -0100", "31 Dec 9999 23:30 -0100",
                                  "Fri, 31 Dec 9999 00:01:00 -2359 (far west)"])
def test_a_date_out_of_range_once_in_utc_leaves_the_message_readable_with_no_date(date: str):
    parsed = parse(headers("From: a@x.test", "Subject: from the end of time", "Message-ID: <t@x.test>",
                           f"Date: {date}"), Structure(None, ()), "text", 10)
    assert (parsed.problem, parsed.subject, parsed.sent_on) == (None, "from the end of time", None)
    # POP3's moment of arrival: a hop out of range gives way to the Date header, as one without a date
    assert str(received_date(headers(f"Received: from a by b; {date}", "Date: Sun, 01 Mar 2026 08:00:00 +0000"))) \
        == "2026-03-01 08:00:00"


def test_a_message_without_message_id_gets_the_same_digest_in_every_mailbox():
    common = ["From: a@x.test", "To: b@x.test, c@x.test", "Subject: no id", "Date: Sun, 06 Dec 2026 09:00:00 +0000"]
    in_b = parse(headers("Delivered-To: b@x.test", "Received: from a by b", *common), Structure(None, ()), "", 1)
    in_c = parse(headers("Delivered-To: c@x.test", "Received: from a by c; later", *common), Structure(None, ()), "", 1)
    other = parse(headers(*common[:-1], "Date: Mon, 07 Dec 2026 09:00:00 +0000"), Structure(None, ()), "", 1)
    assert in_b.message_id == in_c.message_id != other.message_id
    assert in_b.message_id.endswith("@digest.mbxtui.invalid>")


def test_an_overlong_message_id_is_replaced_by_a_digest_that_fits_the_index():
    parsed = parse(headers(f"Message-ID: <{'x' * 5000}@x.test>"), Structure(None, ()), "", 1)
    assert len(parsed.message_id) < 100


def test_garbage_without_headers_is_unparseable_not_an_error():
    parsed = parse(b"\xff\xfe garbage without a colon\r\n\r\n", Structure(None, ()), "", 7)
    assert parsed.problem == "the message has no headers" and parsed.size == 7


def test_routing_by_recipient_and_tracking():
    queue = Party(None, 1, "all")
    user = Party(2, None, "replies")
    silent = Party(3, None, "none")
    candidates = {"q@x.test": queue, "u@x.test": user, "s@x.test": silent}
    message = parse(headers("To: someone@x.test", "X-Original-To: u@x.test", "Resent-To: q@x.test",
                            "In-Reply-To: <known@x.test>"), Structure(None, ()), "", 1)
    assert route(message, None, candidates) == [user, queue]
    assert route(message, None, {}) == [], "unresolved"
    assert route(message, queue, None) == [queue], "a mailbox's own message concerns its user or queue"
    assert tracked(queue, message, set())
    assert not tracked(user, message, set()) and tracked(user, message, {"<known@x.test>"})
    assert not tracked(silent, message, {"<known@x.test>"})


def test_tracking_follows_the_organisation_unless_the_mailbox_says():
    assert effective_tracking(None, "user", "replies", "all") == "replies"
    assert effective_tracking(None, "queue", "replies", "all") == "all"
    assert effective_tracking("none", "queue", "replies", "all") == "none"


def test_addresses_read_without_the_address_parser_are_those_it_reads():
    from email.utils import getaddresses

    from mbxtui.core.sync.messages import _SIMPLE_ADDRESS, _addresses

    shapes = ["a@b.test", "Sender 5 <Sender5@Outside.test>", " u@lab.test\t", "A B <a.b+c@x-y.test>", "<a@b>",
              "a@b, c@d", "J. Doe <j@x>", "a..b@c", "Name<a@b>", "x <a@b> y", "a@b (comment)", '"Q, R" <q@r>',
              "1 <1@2>", "-a@b", "a@b.test.", "=?utf-8?q?J=C3=B6rg?= <j@x.test>", "undisclosed-recipients:;"]
    assert sum(1 for shape in shapes if _SIMPLE_ADDRESS.fullmatch(shape)) >= 8, "the plain shapes take the short way"
    for shape in shapes:
        assert _addresses({"to": [shape]}, "to") == [address.strip().lower() for _, address in getaddresses([shape])
                                                     if "@" in address], shape


USUAL_BLOCKS = [
    b"From: Sender 5 <s5@outside.test>\r\nTo: u@lab.test\r\nSubject: Bench message 5\r\nDate: Sun, 06 Dec 2026 "
    b"08:00:00 +0000\r\nMIME-Version: 1.0\r\n\r\n",
    b"Received: from a\r\n\tby b;\r\n Sun, 06 Dec 2026 08:00:00 +0000\r\nX-Empty:\r\nX-Spaces:   \t \r\n"
    b"Subject:no space\r\nSubject: =?utf-8?q?caf=C3=A9?= \xc3\xa9 raw 8-bit\r\n\r\nbody: not a header\r\n",
    b"To: a@b\r\n \r\n\t\r\nCc: c@d\r\n",
]


@pytest.mark.parametrize("block", [
    b"From: a@b.test\r\nTo: c@d.test,\r\n e@f.test\r\nSubject: x\r\n\r\n",
    b"From sender@x Mon Jan 1 10:00:00 2024\nTo: a@b\n\n",
    b"To: a@b\r\nFrom sender@x Mon\r\n",
    b"To: a@b\r\nFrom sender@x Mon\r\nCc: c@d\r\n\r\n",
    b" continued first\r\nTo: a@b\r\n\r\n",
    b":no name\r\nTo: a@b\rCc: c@d\rSubject: bare CRs\r\r",
    b"To: a@b\r\nnot a header line\r\nCc: c@d\r\n",
    b"X-\xff: 8-bit name\r\nSubject: 8-bit \xc3\xa9 value\r\n\r\n",
    b"Subject: no line break at the end",
    b"\r\n", b"",
    *USUAL_BLOCKS,
    b"To: a@b\r\nSubject : spaced name\r\n\r\n", b"To: a@b\nCc: c@d\n\n", b"To: a@b\r\n\tcontinued\rCc: c@d\r\n",
])
def test_the_header_block_is_read_as_the_email_package_reads_it(block):
    import email
    import email.policy

    from mbxtui.core.sync.messages import _USUAL_FIELDS, _header_fields

    expected = email.message_from_bytes(block, policy=email.policy.compat32).raw_items()
    assert _header_fields(block) == list(expected)
    if block in USUAL_BLOCKS:
        found = _USUAL_FIELDS.findall(block.decode("ascii", "surrogateescape"))
        assert not found[-1][2] or found[-1][2].startswith("\r\n"), "read by one regular expression"


def imapclient_structure(raw: bytes) -> object:
    """The BODYSTRUCTURE ``raw`` as imapclient parses it (its BodyData), or None where it refuses it."""
    from imapclient.exceptions import ProtocolError
    from imapclient.response_parser import parse_fetch_response

    try:
        return parse_fetch_response([b"1 (UID 1 BODYSTRUCTURE " + raw + b")"], False, True)[1][b"BODYSTRUCTURE"]
    except (ProtocolError, ValueError, IndexError, KeyError):
        return None


def random_structure(chance, depth: int = 0) -> bytes:
    """A BODYSTRUCTURE's text as servers write it, now and then with a field of another shape."""
    def string(*choices: bytes) -> bytes:
        roll = chance()
        if roll < 0.03:
            return b"NIL"
        if roll < 0.05:
            return b'"a\\"b"'  # an escape
        if roll < 0.06:
            return b"atom"
        return b'"' + choices[int(chance() * len(choices))] + b'"'

    def params() -> bytes:
        roll = chance()
        if roll < 0.2:
            return b"NIL"
        if roll < 0.25:
            return b"()"
        if roll < 0.27:
            return b'("charset")'
        pairs = [string(b"charset", b"name", b"NAME", b"format") + b" " + string(
            b"utf-8", b"us-ascii", b"a b.txt", b"=?utf-8?q?r=C3=A9sum=C3=A9.pdf?=", "é.pdf".encode(), b"")
            for _ in range(1 + int(chance() * 2))]
        return b"(" + b" ".join(pairs) + b")"

    def disposition() -> bytes:
        roll = chance()
        if roll < 0.4:
            return b"NIL"
        if roll < 0.45:
            return b'("en" "de")'  # a language list where a disposition may be
        return b"(" + string(b"attachment", b"inline", b"ATTACHMENT") + b" " + params() + b")"

    if depth < 4 and chance() < 0.35:
        parts = [random_structure(chance, depth + 1) for _ in range(1 + int(chance() * 3))]
        joined = (b" " if chance() < 0.05 else b"").join(parts)
        tail = [params(), disposition(), b"NIL", b"NIL"][: int(chance() * 5)]
        return b"(" + joined + b" " + b" ".join([string(b"mixed", b"alternative", b"related"), *tail]) + b")"
    kind = string(b"text", b"TEXT", b"application", b"image", b"multipart")
    fields = [kind, string(b"plain", b"html", b"pdf", b"PLAIN"), params(), b"NIL", b"NIL",
              string(b"7bit", b"base64", b"quoted-printable"),
              str(int(chance() * 5000)).encode() if chance() > 0.03 else b"0123"]
    if chance() < 0.5:
        fields.append(str(int(chance() * 99)).encode())  # lines
    fields += [b"NIL", disposition(), string(b"en"), b"NIL"][: int(chance() * 5)]
    return b"(" + b" ".join(fields) + b")"


def test_structures_read_from_the_text_are_read_as_from_imapclients_tuples():
    import random

    from mbxtui.core.sync.messages import read_structure_text

    chance = random.Random(12).random
    read_here = 0
    for _ in range(400):
        raw = random_structure(chance)
        fast = read_structure_text(raw)
        if fast is not None:
            read_here += 1
            body = imapclient_structure(raw)
            assert body is not None and fast == read_structure(body), raw
    assert read_here > 150, "most of the usual shapes are read from the text"


def test_dates_of_the_usual_form_are_read_as_the_email_package_reads_them():
    from email.utils import parsedate_to_datetime

    from mbxtui.core.sync.messages import _date, _usual_date

    def email_package(value: str) -> object:
        """The email package's reading; a moment out of range once in UTC is no moment (None)."""
        try:
            parsed = parsedate_to_datetime(value)
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        return parsed.replace(microsecond=0)

    usual = ["Sun, 06 Dec 2026 08:00:00 +0000", "6 Dec 2026 08:00:00 -0000", "Mon, 07 Dec 2026 23:59:59 +0530",
             "Tue, 1 Jan 2030 00:00:00 -1200", "Wed, 29 Feb 2028 12:00:00 +0100 (CET)", "Thu, 31 Dec 9999 23:00:00 -0200",
             "Fri, 01 Jan 1000 00:00:00 +2359", "Sat, 30 Feb 2026 08:00:00 +0000", "Sun, 06 Dec 2026 24:00:00 +0000",
             "Sun, 06 Dec 2026 08:00:60 +0000", "Sun, 06 Dec 2026 08:00:00 +2400", "Sun, 06 Dec 2026 08:00:00 -0099",
             "Sun, 00 Dec 2026 08:00:00 +0000", "Sun, 06 Dec 2026 08:00:00 +0000 extra words here"]
    unusual = ["", "Sun, 06 dec 2026 08:00:00 +0000", "Sun 06 Dec 2026 08:00:00 +0000", "06 Dec 26 08:00:00 +0000",
               "Sun, 06 Dec 2026 08:00 +0000", "Sun, 06 Dec 2026 08:00:00 GMT", "Sun, 06 Dec 2026 08:00:00",
               "Sun, 06 Dec 0099 08:00:00 +0000", "Sun,06 Dec 2026 08:00:00 +0000", " Sun, 06 Dec 2026 08:00:00 +0000",
               "Sun, 06 Dec 2026 08:00:00 +0000\tx", "Dec 06 2026 08:00:00 +0000", "Sun, 06 Dec 2026 8:00:00 +0000",
               "Sun, 06 Dec 2026 08:00:00 +00000", "06-Dec-2026 08:00:00 +0000", "not a date"]
    for value in usual + unusual:
        assert _date(value) == email_package(value), value
    assert all(_usual_date(value) is not None for value in usual[:5] + usual[6:7]), "read without the email package"
    assert all(_usual_date(value) is None for value in unusual)
