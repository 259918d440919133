"""Submission servers (aiosmtpd) that authenticate against the lab's accounts and deliver into
Dovecot's Maildirs."""

from __future__ import annotations

import asyncio
import binascii
import logging
import ssl
from base64 import b64decode
from collections.abc import Callable
from dataclasses import dataclass

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from .accounts import BUSY_RECIPIENT, Accounts
from .loop import LabLoop, server_port

SERVER_HOSTNAME = "mail.example.test"
# How long an idle client may stay connected; stop() closes everything anyway.
IDLE_TIMEOUT = 60

# aiosmtpd 1.4 warns on every successful AUTH about an attribute it sets itself.
logging.getLogger("mail.log").addFilter(
    lambda record: "login_data is deprecated" not in record.getMessage())

Deliver = Callable[[str, str, bytes], "str | None"]


@dataclass
class SmtpListener:
    """How one SMTP port behaves, and what it has seen."""

    starttls_context: ssl.SSLContext | None = None  # offered STARTTLS, required before AUTH
    implicit_tls_context: ssl.SSLContext | None = None
    smtputf8: bool = False  # offers SMTPUTF8 (RFC 6531): internationalised addresses
    auth_attempts: int = 0

    @property
    def auth_needs_tls(self) -> bool:
        return self.starttls_context is not None


class DeliveringHandler:
    """RCPT policy and delivery: unknown recipients are refused for good, busy@ for now."""

    def __init__(self, accounts: Accounts, deliver: Deliver):
        self.accounts = accounts
        self.deliver = deliver

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.lower() == BUSY_RECIPIENT:
            return f"451 4.3.0 <{address}>: mailbox busy, try again later"
        if not self.accounts.is_mailbox(address):
            return f"550 5.1.1 <{address}>: no such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        loop = asyncio.get_running_loop()
        for recipient in envelope.rcpt_tos:
            error = await loop.run_in_executor(
                None, self.deliver, recipient.lower(), envelope.mail_from or "", envelope.content)
            if error:
                return f"451 4.3.0 delivery to <{recipient}> failed: {error}"
        return "250 2.0.0 OK: delivered"


class LabSMTP(SMTP):
    """aiosmtpd's SMTP with the lab's rules: AUTH counted on arrival, PLAIN authzid honoured
    (a master user acting for a mailbox), and MAIL refused before AUTH."""

    def __init__(self, handler: DeliveringHandler, listener: SmtpListener, lab_loop: LabLoop):
        self.listener = listener
        self.lab_loop = lab_loop
        self.accounts = handler.accounts
        super().__init__(
            handler,
            hostname=SERVER_HOSTNAME,
            tls_context=listener.starttls_context,
            enable_SMTPUTF8=listener.smtputf8,
            # aiosmtpd only recognises TLS set up by STARTTLS: on the implicit-TLS port (always
            # encrypted) and on the plain port (deliberately) AUTH is offered without it.
            auth_require_tls=listener.auth_needs_tls,
            authenticator=self._check_login_password,
            timeout=IDLE_TIMEOUT,
            loop=lab_loop.loop,
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None:
            self.lab_loop.transports.add(transport)
        super().connection_made(transport)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        self.listener.auth_attempts += 1
        await super().smtp_AUTH(arg)

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if not self.session.authenticated:
            await self.push("530 5.7.0 Authentication required")
            return
        await super().smtp_MAIL(arg)

    async def initial_response(self, args: list[str]) -> bytes | None:
        """A SASL mechanism's response: given with AUTH, or asked for with an empty challenge;
        None (answered) when there is none or it is not base64."""
        if len(args) == 1:
            response = await self.challenge_auth("")
            return response if isinstance(response, bytes) else None
        try:
            return b64decode(args[1], validate=True)
        except binascii.Error:
            await self.push("501 5.5.2 Can't decode base64")
            return None

    async def auth_PLAIN(self, _: SMTP, args: list[str]) -> AuthResult:
        response = await self.initial_response(args)
        if response is None:
            return AuthResult(success=False, handled=True)
        parts = response.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        return self._authenticate_as(*parts)

    def _check_login_password(self, server: SMTP, session: Session, envelope: Envelope,
                              mechanism: str, auth_data: LoginPassword) -> AuthResult:
        return self._authenticate_as(b"", auth_data.login, auth_data.password)

    def _authenticate_as(self, authzid: bytes, login: bytes, password: bytes) -> AuthResult:
        try:
            acting_as = self.accounts.authenticate(
                authzid.decode(), login.decode(), password.decode())
        except UnicodeDecodeError:
            acting_as = None
        if acting_as is None:
            return AuthResult(success=False, handled=False)  # aiosmtpd answers 535
        return AuthResult(success=True, auth_data=LoginPassword(acting_as.encode(), b""))


async def start_smtp_listener(lab_loop: LabLoop, listener: SmtpListener,
                              handler: DeliveringHandler) -> int:
    server = await lab_loop.serve_protocol(lambda: LabSMTP(handler, listener, lab_loop),
                                           listener.implicit_tls_context)
    return server_port(server)
