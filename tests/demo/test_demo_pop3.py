"""Processing reads the sandbox's POP3 server as it reads a real one (UIDL, TOP, DELE at QUIT)."""

from __future__ import annotations

import poplib
import ssl
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

from mbxtui.core.sync.runner import SyncRunner
from mbxtui.demo import CA_FILE_NAME, Demo, seed
from mbxtui.demo.mailsystem import MAILBOX_PASSWORD


def test_processing_reads_a_branch_mailbox_over_the_sandboxs_pop3_once(restarted_demo: Demo):
    branch_user = seed.plan().groups[seed.BRANCH][0]
    soon = format_datetime(datetime.now(timezone.utc) + timedelta(minutes=1))
    restarted_demo.sandbox.mail.deliver(branch_user, (
        f"From: a@outside.test\r\nTo: {branch_user}\r\nSubject: Over POP3\r\nMessage-ID: <demo-pop3@outside.test>\r\n"
        f"Date: {soon}\r\n\r\nHello.\r\n").encode())
    _, waiting = restarted_demo.sandbox.mail.messages(branch_user)

    runner = SyncRunner(restarted_demo.store, threads=2)
    [first] = runner.run_once([branch_user], ignore_interval=True).mailboxes
    assert first.ok and first.messages >= 1, first
    [again] = runner.run_once([branch_user], ignore_interval=True).mailboxes
    assert (again.ok, again.messages) == (True, 0), again
    assert len(restarted_demo.sandbox.mail.messages(branch_user)[1]) == len(waiting), "a user's mailbox keeps its mail"


def test_the_sandboxs_pop3_deletes_what_was_marked_when_the_session_quits(restarted_demo: Demo):
    branch_user = seed.plan().groups[seed.BRANCH][0]
    mail = restarted_demo.sandbox.mail
    mail.deliver(branch_user, b"Subject: one\r\n\r\nfirst\r\n")
    mail.deliver(branch_user, b"Subject: two\r\n\r\nsecond\r\n")
    before = len(mail.messages(branch_user)[1])
    pop = poplib.POP3("127.0.0.1", restarted_demo.ports.pop3, timeout=5)
    pop.stls(ssl.create_default_context(cafile=str(restarted_demo.directory / CA_FILE_NAME)))
    pop.user(branch_user)
    pop.pass_(MAILBOX_PASSWORD)
    count, _ = pop.stat()
    assert count == before
    assert pop.top(count, 0)[1] == [b"Subject: two", b""], "the header block and the blank line after it"
    pop.dele(count)
    pop.rset()
    pop.dele(count)
    pop.quit()
    assert [m.data for m in mail.messages(branch_user)[1]][-1].startswith(b"Subject: one")
    assert len(mail.messages(branch_user)[1]) == before - 1

