"""The sandbox servers serve what processing asks of a mail server: IMAP UID SEARCH by UID and
SINCE, FETCH of sizes, dates, BODYSTRUCTURE and partial sections, STORE and EXPUNGE; POP3 UIDL,
TOP and DELE. Spoken to by the same client libraries the product uses."""

from __future__ import annotations

import datetime
import poplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from mbxtui.core.sync.messages import read_structure
from mbxtui.demo.certs import make_certificates
from mbxtui.demo.mailsystem import MAILBOX_PASSWORD, MailSystem
from mbxtui.demo.sandbox import HOST, Sandbox

ADDRESS = "reader@fernhill.example"
WITH_ATTACHMENT = (
    b'From: a@outside.example\r\nSubject: Delivery note\r\nMessage-ID: <note-1@outside.example>\r\n'
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XX"\r\n\r\npreamble\r\n'
    b'--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe note is attached.\r\n'
    b'--XX\r\nContent-Type: application/pdf; name="note.pdf"\r\nContent-Disposition: attachment; '
    b'filename="note.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--XX--\r\n')


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Sandbox, ssl.SSLContext]]:
    certificates = make_certificates(tmp_path)
    running = Sandbox(certificates, MailSystem())
    running.start()
    try:
        yield running, ssl.create_default_context(cafile=str(certificates.ca_file))
    finally:
        running.stop()


def test_imap_serves_what_a_sync_cycle_fetches_and_deletes(sandbox):
    running, context = sandbox
    preloaded = len(running.mail.messages(ADDRESS)[1])
    running.mail.deliver(ADDRESS, WITH_ATTACHMENT)
    with IMAPClient(HOST, port=running.ports.imaps, ssl_context=context, timeout=10) as client:
        client.login(ADDRESS, MAILBOX_PASSWORD)
        selected = client.select_folder("INBOX")
        assert selected[b"UIDNEXT"] == preloaded + 2
        since = datetime.date.today() - datetime.timedelta(days=1)
        uid = client.search(["UID", f"1:{preloaded + 1}", "SINCE", since])
        assert uid == [preloaded + 1], "preloaded mail arrived long before"
        answer = client.fetch(uid, ["RFC822.SIZE", "INTERNALDATE", "BODYSTRUCTURE", "BODY.PEEK[HEADER]<0.30>"])[uid[0]]
        assert answer[b"RFC822.SIZE"] == len(WITH_ATTACHMENT)
        assert answer[b"BODY[HEADER]<0>"] == WITH_ATTACHMENT[:30]
        structure = read_structure(answer[b"BODYSTRUCTURE"])
        assert structure.text.section == "1" and structure.attachments == (("note.pdf", 12),)
        text = client.fetch(uid, ["BODY.PEEK[1]<0.100>"])[uid[0]][b"BODY[1]<0>"]
        assert text == b"The note is attached."

        client.delete_messages(uid)
        client.expunge()
        assert client.search(["ALL"]) == list(range(1, preloaded + 1))
    assert len(running.mail.messages(ADDRESS)[1]) == preloaded


def test_pop3_serves_uidl_top_and_deletes_at_quit(sandbox):
    running, context = sandbox
    running.mail.deliver(ADDRESS, b"From: a@b\r\nSubject: hi\r\n\r\n.starts with a dot\r\nsecond\r\n")
    client = poplib.POP3(HOST, running.ports.pop3, timeout=10)
    client.stls(context)
    client.user(ADDRESS)
    client.pass_(MAILBOX_PASSWORD)
    count, _ = client.stat()
    unique_ids = [line.split()[1] for line in client.uidl()[1]]
    assert len(unique_ids) == len(set(unique_ids)) == count
    assert client.top(count, 1)[1] == [b"From: a@b", b"Subject: hi", b"", b".starts with a dot"]
    assert client.top(count, 5)[1][-1] == b"second"
    client.dele(count)
    assert client.stat()[0] == count - 1
    client.quit()
    assert len(running.mail.messages(ADDRESS)[1]) == count - 1


def test_smtp_delivers_inside_the_sandbox_keeps_mail_for_outside_and_refuses_the_service_login(sandbox):
    import smtplib

    from mbxtui.demo.mailsystem import SERVICE_LOGIN

    running, context = sandbox
    before = len(running.mail.messages(ADDRESS)[1])
    with smtplib.SMTP(HOST, running.ports.submission, timeout=10) as client:
        client.starttls(context=context)
        client.login(ADDRESS, MAILBOX_PASSWORD)
        refused = client.sendmail(ADDRESS, [ADDRESS, "raj@patel-wholesale.example"],
                                  b"Subject: Tracking\r\n\r\nOn its way.\r\n")
        assert refused == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused) as nobody:
            client.sendmail(ADDRESS, [SERVICE_LOGIN], b"Subject: Lost\r\n\r\nx\r\n")
    assert nobody.value.recipients[SERVICE_LOGIN][0] == 550
    assert len(running.mail.messages(ADDRESS)[1]) == before + 1
    [(outside, data)] = list(running.mail.sent_outside)
    assert outside == "raj@patel-wholesale.example" and b"On its way." in data
