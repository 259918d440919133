"""The mail lab: Dovecot IMAP/POP3 and aiosmtpd SMTP on 127.0.0.1, plus the misbehaving ports
the product's tests need (no STARTTLS, wrong certificate host, refused, silent)."""

from __future__ import annotations

import contextlib
import email.policy
import imaplib
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from .accounts import (DISABLED_USER, MASTER_LOGIN, MASTER_PASSWORD, Accounts, MailOwner)
from .certs import LabCertificates, make_certificates
from .dovecot import Dovecot, find_dovecot, mail_owner
from .errors import LabError
from .loop import LabLoop
from .proxies import (ConnectionCounter, ImapFront, PlaintextOnlyFront, Pop3Front, SmtpFront,
                      start_silent_listener, start_tls_front)
from .smtp import DeliveringHandler, SmtpListener, start_smtp_listener

HOST = "127.0.0.1"
NEW_USERS_VISIBLE_TIMEOUT = 5.0


@dataclass
class MailLab:
    host: str
    ca_file: str
    wrong_ca_file: str
    ports: dict[str, int]
    users: dict[str, str]  # every mailbox login, the disabled user's included
    disabled_user: str
    master_login: str
    master_password: str
    workdir: Path  # configuration, certificates, logs
    spool_dir: Path  # Maildirs, passwd-files, Dovecot's sockets; removed by stop()
    dovecot_config: str
    start_seconds: float
    _accounts: Accounts = field(repr=False)
    _dovecot: Dovecot = field(repr=False)
    _lab_loop: LabLoop = field(repr=False)
    _smtp_listeners: dict[str, SmtpListener] = field(repr=False)
    _plaintext_fronts: dict[str, PlaintextOnlyFront] = field(repr=False)
    _resources: contextlib.ExitStack = field(repr=False)

    def smtp_auth_attempts(self, port_key: str) -> int:
        """AUTH commands received on that SMTP port, accepted or not."""
        return _lookup(self._smtp_listeners, port_key).auth_attempts

    def login_attempts(self, port_key: str) -> int:
        """Credential-bearing commands received on imap_nostarttls or pop3_nostls
        (IMAP LOGIN/AUTHENTICATE; POP3 USER/PASS/APOP/AUTH)."""
        return _lookup(self._plaintext_fronts, port_key).login_attempts

    imap_login_attempts = login_attempts
    pop3_login_attempts = login_attempts

    def messages(self, login: str) -> list[EmailMessage]:
        """The messages in the user's INBOX Maildir (new and cur), oldest first."""
        return _read_maildir(self._accounts.home(login) / "Maildir")

    def connection_counter(self, port_key: str) -> ConnectionCounter:
        """A counting relay in front of that port; connect to counter.port instead."""
        port = _lookup(self.ports, port_key)
        return self._lab_loop.call(ConnectionCounter(self._lab_loop, port).start())

    def pop3_front(self, *, uidl: bool = True) -> Pop3Front:
        """POP3 over implicit TLS (the lab's certificate) in front of Dovecot, recording the
        commands it relays; ``uidl=False``: a server without UIDL. Connect to front.port."""
        front = Pop3Front(self._lab_loop, self._dovecot.certificates.server_context(), self._dovecot.ports["pop3"],
                          uidl=uidl)
        return self._lab_loop.call(front.start())

    def imap_front(self) -> ImapFront:
        """IMAP over implicit TLS (the lab's certificate) in front of Dovecot, recording the
        commands it relays and holding one when asked (``front.holding``). Connect to front.port."""
        front = ImapFront(self._lab_loop, self._dovecot.certificates.server_context(), self._dovecot.ports["imap"])
        return self._lab_loop.call(front.start())

    def smtp_front(self) -> SmtpFront:
        """SMTP over implicit TLS (the lab's certificate) in front of the lab's plaintext SMTP port
        (AUTH with the lab's passwords, delivery into Dovecot); ``front.hold_data_answer``: the
        message is delivered but the client never hears so. Connect to front.port."""
        front = SmtpFront(self._lab_loop, self._dovecot.certificates.server_context(), self.ports["smtp_plain"])
        return self._lab_loop.call(front.start())

    def imap_front_without(self, *capabilities: str) -> int:
        """The port of a plaintext IMAP front of Dovecot that hides and refuses these
        capabilities (and STARTTLS), e.g. ``MOVE``: a server without them."""
        front = PlaintextOnlyFront(self._lab_loop, "imap", self._dovecot.ports["imap"],
                                   hidden=frozenset(c.upper().encode() for c in capabilities))
        return self._lab_loop.call(front.start())

    def add_users(self, n: int, prefix: str = "user") -> list[str]:
        """Add n mailboxes <prefix>0001@example.test... with password "pw-<login>"; numbering
        continues across calls. Returns once Dovecot accepts the last one."""
        logins = self._accounts.add_users(n, prefix)
        self._wait_until_dovecot_accepts(logins[-1])
        return logins

    def log_tail(self, lines: int = 40) -> str:
        return self._dovecot.log_tail(lines)

    def stop(self) -> None:
        self._resources.close()

    def __enter__(self) -> MailLab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_until_dovecot_accepts(self, login: str) -> None:
        # Dovecot checks a passwd-file for changes at most once per wall-clock second, and a
        # failed login costs 0.5 s: wait for the next second, then expect the first try to work.
        time.sleep(1.0 - time.time() % 1.0 + 0.01)
        deadline = time.monotonic() + NEW_USERS_VISIBLE_TIMEOUT
        while True:
            try:
                with imaplib.IMAP4(HOST, self.ports["imap"], timeout=2) as client:
                    client.login(login, self.users[login])
                    client.logout()
                return
            except imaplib.IMAP4.error as error:
                if time.monotonic() > deadline:
                    raise LabError(f"Dovecot still refuses {login} {NEW_USERS_VISIBLE_TIMEOUT} s "
                                   f"after it was added ({error}).\n{self.log_tail()}") from error
                time.sleep(0.05)


def start_lab(workdir: Path) -> MailLab:
    """Start every lab server on 127.0.0.1; raises LabError with the reason if one cannot."""
    started = time.monotonic()
    dovecot_binary = find_dovecot()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as resources:
        owner = mail_owner()
        spool = _make_spool(owner)
        resources.callback(shutil.rmtree, spool, ignore_errors=True)
        accounts = Accounts(spool / "users", spool / "masters", spool / "mail", owner)
        accounts.write_files()
        certificates = make_certificates(workdir / "certs")

        dovecot = Dovecot(dovecot_binary, workdir, spool, accounts, certificates)
        resources.callback(dovecot.stop)
        dovecot.start()

        lab_loop = LabLoop()
        resources.callback(lab_loop.stop)
        handler = DeliveringHandler(accounts, dovecot.deliver)
        smtp_listeners = {
            "smtp": SmtpListener(starttls_context=certificates.server_context()),
            "smtp_utf8": SmtpListener(starttls_context=certificates.server_context(), smtputf8=True),
            "smtps": SmtpListener(implicit_tls_context=certificates.server_context()),
            "smtp_plain": SmtpListener(),
            "smtps_wrong_host": SmtpListener(
                implicit_tls_context=certificates.wrong_host_server_context()),
        }
        plaintext_fronts = {
            "imap_nostarttls": PlaintextOnlyFront(lab_loop, "imap", dovecot.ports["imap"]),
            "pop3_nostls": PlaintextOnlyFront(lab_loop, "pop3", dovecot.ports["pop3"]),
        }
        ports = dict(dovecot.ports)
        ports.update(lab_loop.call(_start_python_servers(
            lab_loop, certificates, handler, smtp_listeners, plaintext_fronts, dovecot.ports)))
        refused = _bound_but_not_listening()
        resources.callback(refused.close)
        ports["refused"] = refused.getsockname()[1]

        lab = MailLab(
            host=HOST,
            ca_file=str(certificates.ca_file),
            wrong_ca_file=str(certificates.wrong_ca_file),
            ports=ports,
            users=accounts.users,
            disabled_user=DISABLED_USER,
            master_login=MASTER_LOGIN,
            master_password=MASTER_PASSWORD,
            workdir=workdir,
            spool_dir=spool,
            dovecot_config=str(dovecot.paths.config),
            start_seconds=time.monotonic() - started,
            _accounts=accounts,
            _dovecot=dovecot,
            _lab_loop=lab_loop,
            _smtp_listeners=smtp_listeners,
            _plaintext_fronts=plaintext_fronts,
            _resources=resources.pop_all(),
        )
    return lab


async def _start_python_servers(lab_loop: LabLoop, certificates: LabCertificates,
                                handler: DeliveringHandler,
                                smtp_listeners: dict[str, SmtpListener],
                                plaintext_fronts: dict[str, PlaintextOnlyFront],
                                dovecot_ports: dict[str, int]) -> dict[str, int]:
    ports = {}
    for key, listener in smtp_listeners.items():
        ports[key] = await start_smtp_listener(lab_loop, listener, handler)
    for key, front in plaintext_fronts.items():
        ports[key] = await front.start()
    ports["imaps_wrong_host"] = await start_tls_front(
        lab_loop, certificates.wrong_host_server_context(), dovecot_ports["imaps"],
        certificates.client_context())
    ports["silent"] = await start_silent_listener(lab_loop)
    return ports


def _make_spool(owner: MailOwner) -> Path:
    """A directory the mail uid can reach: pytest's tmp tree is private to the user (0700, and
    reset to that by every pytest session), so as root the Maildirs live outside it."""
    spool = Path(tempfile.mkdtemp(prefix="mbxtui-lab-"))
    mail_root = spool / "mail"
    mail_root.mkdir()
    if owner.uid != os.getuid():
        spool.chmod(0o711)
        os.chown(mail_root, owner.uid, owner.gid)
    return spool


def _bound_but_not_listening() -> socket.socket:
    """Holds a port so nothing else takes it; connecting to it is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    return sock


def _lookup(table: dict, port_key: str):
    try:
        return table[port_key]
    except KeyError:
        raise LabError(f"no such port key {port_key!r} here; known: {', '.join(table)}") from None


def _read_maildir(maildir: Path) -> list[EmailMessage]:
    found: dict[str, tuple[int, EmailMessage]] = {}
    # new before cur: Dovecot moves messages from new to cur, never back.
    for folder in ("new", "cur"):
        try:
            names = os.listdir(maildir / folder)
        except FileNotFoundError:
            continue
        for name in names:
            unique_name = name.split(":", 1)[0]
            if unique_name in found:
                continue
            path = maildir / folder / name
            try:
                with open(path, "rb") as file:
                    modified = os.fstat(file.fileno()).st_mtime_ns
                    message = BytesParser(policy=email.policy.default).parse(file)
            except FileNotFoundError:
                continue  # moved to cur since listed: read there
            found[unique_name] = (modified, message)
    ordered = sorted(found.items(), key=lambda item: (item[1][0], item[0]))
    return [message for _, (_, message) in ordered]
