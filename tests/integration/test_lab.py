"""The mail lab behaves as the product's tests rely on, seen through stdlib and imapclient
clients that verify certificates against the lab CA."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import ssl
import time
import uuid
from base64 import b64encode
from email.message import EmailMessage

import imapclient
import pytest
from imapclient.exceptions import CapabilityError, LoginError

from tests.lab import MailLab, start_lab

pytestmark = pytest.mark.servers

ALICE = "alice@example.test"
BOB = "bob@example.test"
JOSE = "jose@example.test"
TIMEOUT = 5


def verifying_context(lab: MailLab) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=lab.ca_file)


def imaps_client(lab: MailLab, port_key: str = "imaps", port: int | None = None) -> imapclient.IMAPClient:
    return imapclient.IMAPClient(lab.host, port or lab.ports[port_key], ssl=True,
                                 ssl_context=verifying_context(lab), timeout=TIMEOUT)


def auth_plain(smtp: smtplib.SMTP, login: str, password: str, authzid: str = "") -> tuple:
    """AUTH PLAIN in UTF-8 (smtplib.login cannot send non-ASCII passwords)."""
    token = b64encode(f"{authzid}\0{login}\0{password}".encode()).decode()
    return smtp.docmd("AUTH", f"PLAIN {token}")


def submission(lab: MailLab) -> smtplib.SMTP:
    """Connected to the smtp port, STARTTLS done, not yet authenticated."""
    smtp = smtplib.SMTP(lab.host, lab.ports["smtp"], timeout=TIMEOUT)
    smtp.starttls(context=verifying_context(lab))
    smtp.ehlo()
    return smtp


def message(subject: str, sender: str = BOB, recipient: str = ALICE) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, recipient, subject
    msg.set_content("Your mailbox is now connected.\n")
    return msg


def unique_subject() -> str:
    return f"lab test {uuid.uuid4()}"


# --- IMAP and POP3 (Dovecot) ------------------------------------------------------------------


def test_imap_offers_starttls_and_logs_in_after_it(mail_lab: MailLab):
    with imapclient.IMAPClient(mail_lab.host, mail_lab.ports["imap"], ssl=False,
                               timeout=TIMEOUT) as client:
        assert b"STARTTLS" in client.capabilities()
        client.starttls(verifying_context(mail_lab))
        client.login(ALICE, mail_lab.users[ALICE])
        assert client.select_folder("INBOX")[b"UIDVALIDITY"]


def test_imaps_logs_in_with_non_ascii_password(mail_lab: MailLab):
    with imaps_client(mail_lab) as client:
        client.plain_login(JOSE, mail_lab.users[JOSE])
        client.select_folder("INBOX")


@pytest.mark.parametrize("case", ["wrong password", "unknown user", "disabled user"])
def test_imap_refuses_bad_logins_at_once(mail_lab: MailLab, case: str):
    login, password = {
        "wrong password": (ALICE, "not-alice-secret"),
        "unknown user": ("nobody@example.test", "whatever"),
        "disabled user": (mail_lab.disabled_user, mail_lab.users[mail_lab.disabled_user]),
    }[case]
    started = time.monotonic()
    with imaps_client(mail_lab) as client, pytest.raises(LoginError):
        client.login(login, password)
    assert time.monotonic() - started < 1.0, "failed logins must not be delayed"


def test_master_user_acts_for_alice_over_imap(mail_lab: MailLab):
    with imaps_client(mail_lab) as client:
        client.plain_login(mail_lab.master_login, mail_lab.master_password,
                           authorization_identity=ALICE)
        client.select_folder("INBOX")
        assert client.namespace()  # a live session, not just an accepted LOGIN
    with imaps_client(mail_lab) as client:
        client.login(f"{ALICE}*{mail_lab.master_login}", mail_lab.master_password)
        client.select_folder("INBOX")


def test_master_user_cannot_act_for_the_disabled_user(mail_lab: MailLab):
    with imaps_client(mail_lab) as client, pytest.raises(LoginError):
        client.plain_login(mail_lab.master_login, mail_lab.master_password,
                           authorization_identity=mail_lab.disabled_user)


def test_pop3_offers_stls_and_logs_in_after_it(mail_lab: MailLab):
    client = poplib.POP3(mail_lab.host, mail_lab.ports["pop3"], timeout=TIMEOUT)
    try:
        assert "STLS" in client.capa()
        client.stls(verifying_context(mail_lab))
        client.user(BOB)
        client.pass_(mail_lab.users[BOB])
        assert isinstance(client.stat()[0], int)
    finally:
        client.quit()


def test_pop3s_logs_in_and_refuses_wrong_and_disabled(mail_lab: MailLab):
    def pop3s() -> poplib.POP3_SSL:
        return poplib.POP3_SSL(mail_lab.host, mail_lab.ports["pop3s"], timeout=TIMEOUT,
                               context=verifying_context(mail_lab))

    client = pop3s()
    client.user(BOB)
    client.pass_(mail_lab.users[BOB])
    client.stat()
    client.quit()
    for login, password in ((BOB, "wrong"), (mail_lab.disabled_user,
                                              mail_lab.users[mail_lab.disabled_user])):
        client = pop3s()
        client.user(login)
        with pytest.raises(poplib.error_proto):
            client.pass_(password)
        client.close()


def test_certificates_from_an_unknown_ca_are_refused(mail_lab: MailLab):
    context = ssl.create_default_context(cafile=mail_lab.wrong_ca_file)
    with pytest.raises(ssl.SSLCertVerificationError):
        imapclient.IMAPClient(mail_lab.host, mail_lab.ports["imaps"], ssl_context=context,
                              timeout=TIMEOUT)


# --- SMTP -----------------------------------------------------------------------------------


def test_smtp_requires_starttls_before_auth_and_auth_before_mail(mail_lab: MailLab):
    attempts_before = mail_lab.smtp_auth_attempts("smtp")
    with smtplib.SMTP(mail_lab.host, mail_lab.ports["smtp"], timeout=TIMEOUT) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth")
        assert auth_plain(smtp, ALICE, mail_lab.users[ALICE])[0] == 538
        assert smtp.mail(ALICE)[0] == 530
        smtp.starttls(context=verifying_context(mail_lab))
        smtp.ehlo()
        assert set(smtp.esmtp_features["auth"].split()) >= {"PLAIN", "LOGIN"}
        assert smtp.mail(ALICE)[0] == 530
    assert mail_lab.smtp_auth_attempts("smtp") == attempts_before + 1


def test_smtp_auth_checks_the_same_users_as_dovecot(mail_lab: MailLab):
    with submission(mail_lab) as smtp:
        assert auth_plain(smtp, JOSE, mail_lab.users[JOSE])[0] == 235
    with submission(mail_lab) as smtp:
        smtp.login(BOB, mail_lab.users[BOB])  # smtplib picks AUTH PLAIN
    with submission(mail_lab) as smtp:
        smtp.user, smtp.password = BOB, mail_lab.users[BOB]
        assert smtp.auth("LOGIN", smtp.auth_login)[0] == 235
    for login, password in ((ALICE, "wrong"),
                            (mail_lab.disabled_user, mail_lab.users[mail_lab.disabled_user])):
        with submission(mail_lab) as smtp, pytest.raises(smtplib.SMTPAuthenticationError) as err:
            smtp.login(login, password)
        assert err.value.smtp_code == 535


def test_smtp_master_user_acts_for_alice_via_plain_authzid(mail_lab: MailLab):
    with submission(mail_lab) as smtp:
        assert auth_plain(smtp, mail_lab.master_login, mail_lab.master_password,
                          authzid=ALICE)[0] == 235
    with submission(mail_lab) as smtp:
        smtp.login(f"{ALICE}*{mail_lab.master_login}", mail_lab.master_password)
    with submission(mail_lab) as smtp:
        assert auth_plain(smtp, mail_lab.master_login, "wrong", authzid=ALICE)[0] == 535


def test_message_sent_with_starttls_and_auth_arrives_in_alices_inbox(mail_lab: MailLab):
    subject = unique_subject()
    with submission(mail_lab) as smtp:
        smtp.login(BOB, mail_lab.users[BOB])
        smtp.send_message(message(subject))

    with imaps_client(mail_lab) as client:
        client.login(ALICE, mail_lab.users[ALICE])
        client.select_folder("INBOX", readonly=True)
        found = client.search(["SUBJECT", subject])
        assert len(found) == 1
        body = client.fetch(found, ["RFC822"])[found[0]][b"RFC822"]
    assert b"Your mailbox is now connected." in body
    assert [m["Subject"] for m in mail_lab.messages(ALICE)].count(subject) == 1


def test_smtp_refuses_unknown_recipients_for_good_and_busy_for_now(mail_lab: MailLab):
    with submission(mail_lab) as smtp:
        smtp.login(BOB, mail_lab.users[BOB])
        smtp.mail(BOB)
        code, text = smtp.rcpt("nobody@example.test")
        assert (code, text[:5]) == (550, b"5.1.1")
        code, text = smtp.rcpt("busy@example.test")
        assert (code, text[:5]) == (451, b"4.3.0")
        smtp.rset()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.send_message(message(unique_subject(), recipient="nobody@example.test"))


def test_smtps_is_implicit_tls_with_auth_required(mail_lab: MailLab):
    subject = unique_subject()
    with smtplib.SMTP_SSL(mail_lab.host, mail_lab.ports["smtps"], timeout=TIMEOUT,
                          context=verifying_context(mail_lab)) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        assert smtp.mail(BOB)[0] == 530
        assert auth_plain(smtp, JOSE, mail_lab.users[JOSE])[0] == 235
        smtp.send_message(message(subject, sender=JOSE, recipient=BOB))
    assert [m["Subject"] for m in mail_lab.messages(BOB)].count(subject) == 1


def test_smtp_plain_offers_auth_without_starttls_and_counts_auth(mail_lab: MailLab):
    attempts_before = mail_lab.smtp_auth_attempts("smtp_plain")
    with smtplib.SMTP(mail_lab.host, mail_lab.ports["smtp_plain"], timeout=TIMEOUT) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        assert smtp.has_extn("auth")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            smtp.starttls(context=verifying_context(mail_lab))
    assert mail_lab.smtp_auth_attempts("smtp_plain") == attempts_before

    with smtplib.SMTP(mail_lab.host, mail_lab.ports["smtp_plain"], timeout=TIMEOUT) as smtp:
        smtp.login(ALICE, mail_lab.users[ALICE])
    assert mail_lab.smtp_auth_attempts("smtp_plain") == attempts_before + 1


# --- Misbehaving ports --------------------------------------------------------------------------


def test_imap_nostarttls_hides_and_refuses_starttls_and_counts_logins(mail_lab: MailLab):
    attempts_before = mail_lab.imap_login_attempts("imap_nostarttls")
    with imapclient.IMAPClient(mail_lab.host, mail_lab.ports["imap_nostarttls"], ssl=False,
                               timeout=TIMEOUT) as client:
        assert b"IMAP4REV1" in client.capabilities()
        assert b"STARTTLS" not in client.capabilities()
        with pytest.raises(CapabilityError):
            client.starttls(verifying_context(mail_lab))
    assert send_line(mail_lab, "imap_nostarttls", b"a1 STARTTLS").startswith(b"a1 BAD")
    assert mail_lab.imap_login_attempts("imap_nostarttls") == attempts_before

    with imapclient.IMAPClient(mail_lab.host, mail_lab.ports["imap_nostarttls"], ssl=False,
                               timeout=TIMEOUT) as client:
        client.plain_login(JOSE, mail_lab.users[JOSE])  # TLS mode "none" still works
        assert b"STARTTLS" not in client.capabilities()
        # IMAP literals cross the front both ways: APPEND sends one, FETCH receives one.
        subject = unique_subject()
        client.append("INBOX", message(subject, recipient=JOSE).as_bytes())
        client.select_folder("INBOX", readonly=True)
        [found] = client.search(["SUBJECT", subject])
        assert subject.encode() in client.fetch([found], ["RFC822"])[found][b"RFC822"]
    assert mail_lab.imap_login_attempts("imap_nostarttls") == attempts_before + 1


def test_pop3_nostls_hides_and_refuses_stls_and_counts_logins(mail_lab: MailLab):
    attempts_before = mail_lab.pop3_login_attempts("pop3_nostls")
    client = poplib.POP3(mail_lab.host, mail_lab.ports["pop3_nostls"], timeout=TIMEOUT)
    try:
        capabilities = client.capa()
        assert "USER" in capabilities and "STLS" not in capabilities
        with pytest.raises(poplib.error_proto, match="STLS"):
            client.stls(verifying_context(mail_lab))
    finally:
        client.quit()
    assert send_line(mail_lab, "pop3_nostls", b"STLS").startswith(b"-ERR")
    assert mail_lab.pop3_login_attempts("pop3_nostls") == attempts_before

    client = poplib.POP3(mail_lab.host, mail_lab.ports["pop3_nostls"], timeout=TIMEOUT)
    client.user(BOB)
    client.pass_(mail_lab.users[BOB])
    client.stat()
    client.quit()
    assert mail_lab.pop3_login_attempts("pop3_nostls") == attempts_before + 2


@pytest.mark.parametrize("port_key", ["imaps_wrong_host", "smtps_wrong_host"])
def test_wrong_host_ports_present_a_trusted_certificate_for_another_name(mail_lab: MailLab,
                                                                        port_key):
    with pytest.raises(ssl.SSLCertVerificationError, match="not valid for '127.0.0.1'"):
        socket_to(mail_lab, port_key, verifying_context(mail_lab))

    trusting_any_name = verifying_context(mail_lab)
    trusting_any_name.check_hostname = False  # the chain itself verifies against the lab CA
    with socket_to(mail_lab, port_key, trusting_any_name) as tls:
        greeting = tls.recv(200)
    assert greeting.startswith(b"* OK" if port_key.startswith("imap") else b"220 ")


def socket_to(lab: MailLab, port_key: str, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection((lab.host, lab.ports[port_key]), timeout=TIMEOUT)
    try:
        return context.wrap_socket(raw, server_hostname=lab.host)
    except BaseException:
        raw.close()
        raise


def send_line(lab: MailLab, port_key: str, line: bytes) -> bytes:
    """Send one command line after the greeting; the first response line."""
    with socket.create_connection((lab.host, lab.ports[port_key]), timeout=TIMEOUT) as raw:
        stream = raw.makefile("rwb")
        stream.readline()
        stream.write(line + b"\r\n")
        stream.flush()
        return stream.readline()


def test_refused_port_refuses(mail_lab: MailLab):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((mail_lab.host, mail_lab.ports["refused"]), timeout=TIMEOUT)


def test_silent_port_times_out_a_client(mail_lab: MailLab):
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        imaplib.IMAP4(mail_lab.host, mail_lab.ports["silent"], timeout=0.5)
    assert 0.4 < time.monotonic() - started < 2.0


# --- Lab helpers ----------------------------------------------------------------------------


def test_connection_counter_counts_concurrent_connections(mail_lab: MailLab):
    def wait_until_closed(counter) -> None:
        deadline = time.monotonic() + TIMEOUT
        while counter.current and time.monotonic() < deadline:
            time.sleep(0.01)
        assert counter.current == 0

    with mail_lab.connection_counter("imaps") as counter:
        clients = []
        for _ in range(3):
            client = imapclient.IMAPClient(mail_lab.host, counter.port, ssl=True,
                                           ssl_context=verifying_context(mail_lab),
                                           timeout=TIMEOUT)
            client.login(ALICE, mail_lab.users[ALICE])
            clients.append(client)
        assert (counter.current, counter.total, counter.max_concurrent) == (3, 3, 3)
        for client in clients:
            client.logout()
        wait_until_closed(counter)

        with imapclient.IMAPClient(mail_lab.host, counter.port, ssl=True,
                                   ssl_context=verifying_context(mail_lab),
                                   timeout=TIMEOUT) as client:
            client.login(ALICE, mail_lab.users[ALICE])
        wait_until_closed(counter)
        assert (counter.total, counter.max_concurrent) == (4, 3)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((mail_lab.host, counter.port), timeout=TIMEOUT)


def test_add_users_adds_a_thousand_logins_quickly(mail_lab: MailLab):
    started = time.monotonic()
    logins = mail_lab.add_users(1000, prefix="many")
    elapsed = time.monotonic() - started
    assert logins[0] == "many0001@example.test" and len(logins) == 1000
    assert mail_lab.users[logins[0]] == f"pw-{logins[0]}"
    assert elapsed < 3.0
    with imaps_client(mail_lab) as client:
        client.login(logins[499], f"pw-{logins[499]}")
    with submission(mail_lab) as smtp:
        smtp.login(logins[-1], f"pw-{logins[-1]}")
        subject = unique_subject()
        smtp.send_message(message(subject, sender=logins[-1], recipient=logins[0]))
    assert [m["Subject"] for m in mail_lab.messages(logins[0])] == [subject]
    assert mail_lab.add_users(1, prefix="many") == ["many1001@example.test"]


def read_until_closed(sock: socket.socket) -> bytes:
    """What the peer sends until it closes (a timeout fails the test)."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def test_stop_closes_every_port_and_connection(tmp_path):
    lab = start_lab(tmp_path)
    try:
        silent = socket.create_connection((lab.host, lab.ports["silent"]), timeout=TIMEOUT)
        counter = lab.connection_counter("imap")
        held = socket.create_connection((lab.host, counter.port), timeout=TIMEOUT)
        assert held.recv(4).startswith(b"* OK")
    finally:
        started = time.monotonic()
        lab.stop()
        stop_seconds = time.monotonic() - started
    assert stop_seconds < 5.0
    with silent, held:
        assert read_until_closed(silent) == b""
        assert read_until_closed(held).endswith(b"\r\n")  # the rest of the greeting, then EOF
    for key in ("imap", "imaps", "pop3", "smtp", "smtps", "silent", "imap_nostarttls"):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((lab.host, lab.ports[key]), timeout=TIMEOUT)
    assert not lab.spool_dir.exists()
    lab.stop()  # a second stop is harmless


def test_smtp_front_delivers_and_can_keep_the_answer_to_the_message_from_the_client(mail_lab: MailLab):
    front = mail_lab.smtp_front()
    delivered = unique_subject()
    with smtplib.SMTP_SSL(mail_lab.host, front.port, timeout=TIMEOUT, context=verifying_context(mail_lab)) as smtp:
        smtp.login(BOB, mail_lab.users[BOB])
        smtp.send_message(message(delivered))
    assert [m["Subject"] for m in mail_lab.messages(ALICE)].count(delivered) == 1

    front.hold_data_answer = True
    unanswered = unique_subject()
    smtp = smtplib.SMTP_SSL(mail_lab.host, front.port, timeout=2, context=verifying_context(mail_lab))
    smtp.login(BOB, mail_lab.users[BOB])
    with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected)):
        smtp.send_message(message(unanswered))
    smtp.close()
    assert front.held.is_set()
    assert [m["Subject"] for m in mail_lab.messages(ALICE)].count(unanswered) == 1, "delivered all the same"


def test_imap_front_holds_one_command_until_released_and_says_when_it_was_answered(mail_lab: MailLab):
    front = mail_lab.imap_front()
    front.holding("SELECT")
    with imaps_client(mail_lab, port=front.port) as client:
        client.login(ALICE, mail_lab.users[ALICE])
        client._imap.sock.settimeout(1)
        with pytest.raises(TimeoutError):
            client.select_folder("INBOX")
    assert front.held.is_set() and front.commands[-1] == "SELECT" and not front.answered.is_set()

    front.holding("UID SEARCH")
    with imaps_client(mail_lab, port=front.port) as client:
        client.login(ALICE, mail_lab.users[ALICE])
        client.select_folder("INBOX")
        front.release()
        client.search(["ALL"])
    assert front.held.is_set() and front.answered.is_set()
