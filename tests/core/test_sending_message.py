"""The bytes of an outgoing email (R29), built without the network: headers a reader parses back as
they were queued, lines within SMTP's bounds, a text/plain UTF-8 body."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timezone

from mbxtui.core.sync.sending import QueuedEmail, build_message

WHEN = datetime(2026, 12, 6, 8, 30, tzinfo=timezone.utc)


def queued(**fields: object) -> QueuedEmail:
    values: dict = dict(id=1, message_id="<abc@corp.test>", sender="ann@corp.test", to=("bob@outside.test",),
                        cc=(), subject="Hello", body="Hi Bob.", in_reply_to="", references=(), attempts=0)
    values.update(fields)
    return QueuedEmail(**values)


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_a_plain_email_is_seven_bit_with_every_header():
    raw = build_message(queued(cc=("cy@outside.test", "dee@outside.test")), WHEN, international=False)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.split(b"\r\n") == [
        b"From: ann@corp.test", b"To: bob@outside.test", b"Cc: cy@outside.test,", b" dee@outside.test",
        b"Subject: Hello", b"Date: Sun, 06 Dec 2026 08:30:00 +0000", b"Message-ID: <abc@corp.test>",
        b"MIME-Version: 1.0", b'Content-Type: text/plain; charset="utf-8"', b"Content-Transfer-Encoding: 7bit"]
    assert body == b"Hi Bob.\r\n"
    assert b"\n" not in raw.replace(b"\r\n", b"")


def test_a_reply_keeps_long_message_ids_whole():
    long_id = "<" + "x" * 200 + "@corp.test>"
    chain = tuple(f"<{n}-{'y' * 60}@corp.test>" for n in range(30)) + (long_id,)
    message = parsed(build_message(queued(in_reply_to=long_id, references=chain), WHEN, international=False))
    assert message["In-Reply-To"] == long_id, "never folded into encoded words"
    assert message["References"].split() == list(chain)


def test_text_beyond_ascii_is_encoded_and_reads_back():
    text = "Grüße aus Köln: 42 €\n" + "a" * 1200 + "\n.\n"
    raw = build_message(queued(subject="Grüße " + "ü" * 300, body=text), WHEN, international=False)
    assert raw.isascii() and max(len(line) for line in raw.split(b"\r\n")) <= 998
    message = parsed(raw)
    assert message["Subject"] == "Grüße " + "ü" * 300
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert message.get_content().replace("\r\n", "\n") == text + "\n"


def test_an_international_email_writes_its_addresses_in_utf8():
    raw = build_message(queued(to=("jörg@bücher.test",)), WHEN, international=True)
    assert b"To: j\xc3\xb6rg@b\xc3\xbccher.test\r\n" in raw
    assert parsed(raw)["To"] == "jörg@bücher.test"
