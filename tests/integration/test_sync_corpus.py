"""Broken and hostile messages (R25) delivered into the lab's Dovecot and read by real IMAP cycles:
each ends as an activity or an ``unparseable`` one with its reason, never a crash or a stuck
mailbox: the ordinary message delivered after each is read too. test_sync_incoming.py's ``BROKEN``
corpus (no Message-ID, a broken boundary, raw 8-bit headers, an unknown charset, a 1 MB header
line, no headers) is read here again, each followed by an ordinary message."""

from __future__ import annotations

import base64
import gc
import os
import tracemalloc

import pytest

from mbxtui.core.services import activities
from tests.backends import query
from tests.integration.test_sync_incoming import (  # noqa: F401 (lab_profile: a fixture)
    BROKEN, deliver, enable, imap, lab_profile, listed, message, queue_mailbox, sync,
)

pytestmark = pytest.mark.servers

ATTACHMENT_BYTES = 30 * 1024 * 1024
MOST_PEAK_GROWTH = 100 * 1024 * 1024  # resident memory of the whole process, generous
MOST_PYTHON_ALLOCATED = 16 * 1024 * 1024  # what the cycle allocates at its peak


def _head(to: str, subject: str, message_id: str, content_type: str, extra: str = "") -> bytes:
    return (f"From: a@outside.test\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n"
            f"Date: Sun, 06 Dec 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}\r\n"
            f"{extra}\r\n").encode()


def nested_rfc822(to: str, levels: int) -> bytes:
    inner = b"From: deep@outside.test\r\nSubject: the innermost\r\n\r\nat the bottom\r\n"
    for level in range(levels):
        inner = f"From: l{level}@outside.test\r\nSubject: level {level}\r\nContent-Type: message/rfc822\r\n\r\n".encode() + inner
    return _head(to, "nested 200 deep", "<nested@lab.test>", "message/rfc822") + inner


def nested_multipart(to: str, levels: int) -> bytes:
    opening = b"".join(f"--b{level}\r\nContent-Type: multipart/mixed; boundary=\"b{level + 1}\"\r\n\r\n".encode()
                       for level in range(levels))
    closing = b"".join(f"--b{level}--\r\n".encode() for level in reversed(range(levels + 1)))
    return (_head(to, "multipart 200 deep", "<multi@lab.test>", 'multipart/mixed; boundary="b0"') + opening
            + f"--b{levels}\r\nContent-Type: text/plain\r\n\r\nthe deepest text\r\n".encode() + closing)


def base64_garbage(to: str) -> bytes:
    return (_head(to, "base64 garbage", "<b64@lab.test>", 'multipart/mixed; boundary="G"')
            + b"--G\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + b"!!!@@@ this is %% not === base64 \xff\xfe at all\r\n====\r\n"
            + b"--G\r\nContent-Type: application/pdf; name=\"broken.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + b"*** garbage \x00\x01 ***\r\n--G--\r\n")


CORPUS = {
    "message/rfc822 nested 200 levels": lambda to: nested_rfc822(to, 200),
    "multipart nested 200 levels": lambda to: nested_multipart(to, 200),
    "base64 garbage": base64_garbage,
    "only a Content-Type saying base64, no body": lambda to: _head(
        to, "empty base64", "<empty64@lab.test>", "text/plain", "Content-Transfer-Encoding: base64\r\n"),
    **{name: (lambda to, raw=raw: raw.replace(b"{to}", to.encode())) for name, raw in BROKEN.items()},
}


def test_hostile_structures_each_end_as_an_activity_and_the_next_message_is_read(org, lab_profile):
    [login] = org.lab.add_users(1, "corpus")
    enable(org, queue_mailbox(org, login))
    for name, make in CORPUS.items():
        deliver(org, login, make(login))
        deliver(org, login, message("n@outside.test", login, f"After {name}"))

    [cycled] = sync(org).mailboxes
    assert (cycled.ok, cycled.messages, cycled.recorded) == (True, 2 * len(CORPUS), 2 * len(CORPUS)), cycled
    rows = {row["subject"]: row for row in listed(org, limit=100)["rows"]}
    assert {f"After {name}" for name in CORPUS} <= set(rows), "the message after each was read"
    assert {row["state"] for row in rows.values()} <= {"received", "unparseable"}
    assert [row["state"] for row in rows.values()].count("unparseable") == 1, "only the one without headers"
    assert rows["nested 200 deep"]["message_id"] == "<nested@lab.test>"
    assert rows["nested 200 deep"]["attachments"], "an enclosed message is an attachment, not opened"
    assert activities.show_activity(org.admin, rows["multipart 200 deep"]["id"])["preview"] == "the deepest text"
    garbage = activities.show_activity(org.admin, rows["base64 garbage"]["id"])
    assert garbage["state"] == "received" and [a["name"] for a in garbage["attachments"]] == ["broken.pdf"]
    assert activities.show_activity(org.admin, rows["empty base64"]["id"])["preview"] == ""
    assert sync(org).mailboxes[0].messages == 0, "nothing stuck: the next cycle has nothing left"


def _resident() -> tuple[int, int]:
    """This process's resident memory now and at its peak, in bytes."""
    fields = dict(line.split(":", 1) for line in open("/proc/self/status", encoding="ascii"))
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")  # resets VmHWM to the current resident size (Linux 4.0 and later)
        return True
    except OSError:
        return False


def test_a_30_mb_attachment_is_read_with_memory_bounded_and_the_next_message_too(org, lab_profile):
    [login] = org.lab.add_users(1, "corpusbig")
    enable(org, queue_mailbox(org, login))
    payload = base64.encodebytes(os.urandom(ATTACHMENT_BYTES))
    raw = (_head(login, "30 MB attached", "<thirty@lab.test>", 'multipart/mixed; boundary="T"')
           + b"--T\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the attachment.\r\n"
           + b"--T\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\n"
           + b"Content-Transfer-Encoding: base64\r\n\r\n" + payload + b"--T--\r\n")
    with imap(org, login) as client:
        client.append("INBOX", raw)
        client.append("INBOX", message("n@outside.test", login, "After the big one"))
    del payload, raw
    gc.collect()

    peak_measured = _reset_peak()
    before, _ = _resident()
    tracemalloc.start()
    try:
        [cycled] = sync(org).mailboxes
        _, allocated = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _, peak = _resident()

    assert (cycled.ok, cycled.messages, cycled.recorded) == (True, 2, 2), cycled
    rows = {row["subject"]: row for row in listed(org)["rows"]}
    assert set(rows) == {"30 MB attached", "After the big one"}
    big = activities.show_activity(org.admin, rows["30 MB attached"]["id"])
    assert big["preview"].startswith("See the attachment.")
    [(name, size)] = [(a["name"], a["size"]) for a in big["attachments"]]
    assert name == "big.bin" and size > ATTACHMENT_BYTES, "its encoded size, as the server gives it"
    assert rows["30 MB attached"]["size"] > ATTACHMENT_BYTES
    assert allocated < MOST_PYTHON_ALLOCATED, f"the cycle allocated {allocated} bytes at its peak"
    if peak_measured:
        assert peak - before < MOST_PEAK_GROWTH, f"resident memory grew by {peak - before} bytes"
    assert query(org.db_path, "SELECT last_uid FROM sync_checkpoint")[0][0] == 2
