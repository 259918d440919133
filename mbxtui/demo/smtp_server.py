"""The sandbox's submission server: aiosmtpd with STARTTLS (or implicit TLS) and AUTH (PLAIN with
an authorization identity, LOGIN, XOAUTH2, OAUTHBEARER), delivering accepted mail into the inboxes the IMAP
and POP3 servers serve, so a client can read back what it sent."""

from __future__ import annotations

import asyncio
import binascii
import logging
import ssl
from base64 import b64decode
from collections.abc import Callable

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from mbxtui.demo.connection import IDLE_TIMEOUT
from mbxtui.demo import sasl
from mbxtui.demo.mailsystem import MailSystem

log = logging.getLogger("mbxtui.demo.servers")

HOSTNAME = "mail.fernhill.example"
MAX_MESSAGE_BYTES = 1024 * 1024


class DeliveryHandler:
    """Recipients of the demo domain are delivered to at once. Others are accepted as a relay would
    (AUTH comes before MAIL) and leave the sandbox: kept in ``MailSystem.sent_outside``, never sent
    anywhere. The service login is no mailbox and is refused."""

    def __init__(self, mail: MailSystem) -> None:
        self.mail = mail

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        local, at, domain = address.strip().rpartition("@")
        if not (at and local and domain):
            return f"553 5.1.3 <{address}>: not an address"
        if domain.lower() == self.mail.domain and not self.mail.is_mailbox(address):
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        for recipient in envelope.rcpt_tos:
            if self.mail.is_mailbox(recipient):
                self.mail.deliver(recipient, content)
            else:
                self.mail.send_outside(recipient, content)
        return "250 2.0.0 OK: delivered"


class SandboxSMTP(SMTP):
    """One SMTP connection. AUTH is required before MAIL; on a STARTTLS port, TLS is required
    before AUTH. ``on_connection`` receives each new transport (so the sandbox can close it)."""

    def __init__(self, mail: MailSystem, *, starttls_context: ssl.SSLContext | None,
                 loop: asyncio.AbstractEventLoop,
                 on_connection: Callable[[asyncio.BaseTransport], None]) -> None:
        self.mail = mail
        self.on_connection = on_connection
        super().__init__(
            DeliveryHandler(mail),
            hostname=HOSTNAME,
            tls_context=starttls_context,
            # aiosmtpd only knows about TLS it started itself: on an implicit TLS port the
            # connection is encrypted from the start, so AUTH must not wait for STARTTLS there.
            auth_require_tls=starttls_context is not None,
            authenticator=self._check_login,
            timeout=IDLE_TIMEOUT,
            data_size_limit=MAX_MESSAGE_BYTES,
            loop=loop,
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None:  # not the TLS layer STARTTLS puts on top
            self.on_connection(transport)
        super().connection_made(transport)

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if not self.session.authenticated:
            await self.push("530 5.7.0 Authentication required")
            return
        await super().smtp_MAIL(arg)

    async def auth_PLAIN(self, _: SMTP, args: list[str]) -> AuthResult:
        """PLAIN with its authorization identity honoured (aiosmtpd's own ignores it)."""
        response = await self._sasl_response(args)
        if response is None:
            return AuthResult(success=False, handled=True)
        parts = response.split(b"\0")
        if len(parts) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        try:
            authzid, login, password = (part.decode("utf-8") for part in parts)
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False)
        return self._result(login, authzid or login, self.mail.check_password(login, password))

    async def auth_XOAUTH2(self, _: SMTP, args: list[str]) -> AuthResult:
        return await self._bearer_login("XOAUTH2", args)

    async def auth_OAUTHBEARER(self, _: SMTP, args: list[str]) -> AuthResult:
        return await self._bearer_login("OAUTHBEARER", args)

    async def _bearer_login(self, mechanism: str, args: list[str]) -> AuthResult:
        response = await self._sasl_response(args)
        if response is None:
            return AuthResult(success=False, handled=True)
        user, token = sasl.bearer_login(mechanism, response.decode("utf-8", "replace"))
        if not self.mail.check_token(user, token):
            peer = ":".join(str(part) for part in self.session.peer[:2])
            log.info("SMTP %s: token for %r refused", peer, user)
            if mechanism == "OAUTHBEARER":
                answered = await self.challenge_auth(sasl.oauthbearer_error("SMTP.SendAsApp"), encode_to_b64=False)
                if answered is MISSING:  # the client cancelled with "*": aiosmtpd has answered
                    return AuthResult(success=False, handled=True)
            # What Exchange Online answers a token without SMTP.SendAsApp or access to the mailbox.
            await self.push("535 5.7.3 Authentication unsuccessful")
            return AuthResult(success=False, handled=True)
        return self._result(user, user, True)

    def _check_login(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: LoginPassword) -> AuthResult:
        """AUTH LOGIN, through aiosmtpd's own mechanism."""
        try:
            login, password = auth_data.login.decode("utf-8"), auth_data.password.decode("utf-8")
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False)
        return self._result(login, login, self.mail.check_password(login, password))

    async def _sasl_response(self, args: list[str]) -> bytes | None:
        """The client's decoded response: the initial one, or asked for. None when it was bad
        (already answered)."""
        if len(args) == 1:
            response = await self.challenge_auth("")
            return None if response is MISSING else response
        try:
            return b64decode(args[1], validate=True)
        except binascii.Error:
            await self.push("501 5.5.2 Can't decode base64")
            return None

    def _result(self, login: str, mailbox: str, authenticated: bool) -> AuthResult:
        peer = ":".join(str(part) for part in self.session.peer[:2])
        if not authenticated:
            log.info("SMTP %s: login of %r refused", peer, login)
            return AuthResult(success=False, handled=False)  # aiosmtpd answers 535
        if not self.mail.may_act_for(login, mailbox):
            log.info("SMTP %s: %r may not act for %r", peer, login, mailbox)
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=LoginPassword(mailbox.encode("utf-8"), b""))
