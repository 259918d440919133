"""A small POP3 server for the sandbox (RFC 1939, CAPA and STLS from RFC 2449 and 2595, AUTH from
RFC 5034): enough for a mail client to connect, secure the connection, log in and count its mail.

Commands: CAPA, STLS, USER, PASS, AUTH (PLAIN with an authorization identity, XOAUTH2; a command
line of at most 255 octets, as RFC 5034 section 4 and Exchange Online hold a client to), STAT,
LIST, UIDL, TOP, DELE, NOOP, RSET, QUIT: enough for processing to read the maildrop (never RETR)
and delete what it processed, at QUIT as RFC 1939 says.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import ssl
from collections.abc import Callable

from mbxtui.demo.connection import ConnectionClosed, LineConnection
from mbxtui.demo.mailsystem import MailSystem, StoredMessage

log = logging.getLogger("mbxtui.demo.servers")

GREETING = "+OK Fernhill Mail POP3 server (mbxtui demo sandbox) ready"
MAX_FAILED_LOGINS = 5
MAX_COMMAND_OCTETS = 255  # RFC 2449 4, CRLF included: a longer AUTH initial response follows the "+ "
MAX_BAD_COMMANDS = 20


class Pop3Session:
    """One client connection. ``stls_context`` None: STLS is not offered, and a plaintext login is
    allowed, as on an old server."""

    def __init__(self, connection: LineConnection, mail: MailSystem,
                 stls_context: ssl.SSLContext | None) -> None:
        self.connection = connection
        self.mail = mail
        self.stls_context = stls_context
        self.user: str | None = None
        self.pending_login: str | None = None
        self.failed_logins = 0
        self.bad_commands = 0
        self.done = False
        self.uid_validity = 0
        self.maildrop: list[StoredMessage] = []  # fixed at login: message numbers stay put
        self.deleted: set[int] = set()  # numbers marked by DELE, removed at QUIT

    async def run(self) -> None:
        try:
            await self.connection.send(GREETING)
            while not self.done:
                line = await self.connection.read_line()
                command, _, argument = line.decode("utf-8", "replace").partition(" ")
                handler = getattr(self, "_cmd_" + command.upper(), None) if command.isalpha() else None
                if handler is None:
                    await self._error("Unknown command")
                else:
                    await handler(argument)
        except TimeoutError:
            with contextlib.suppress(ConnectionClosed):
                await self.connection.send("-ERR Disconnected for inactivity")
        except ConnectionClosed:
            pass

    async def _error(self, text: str) -> None:
        self.bad_commands += 1
        if self.bad_commands > MAX_BAD_COMMANDS:
            await self.connection.send("-ERR Too many invalid commands")
            raise ConnectionClosed("too many invalid commands")
        await self.connection.send(f"-ERR {text}")

    @property
    def _may_start_tls(self) -> bool:
        return self.stls_context is not None and not self.connection.encrypted

    @property
    def _may_log_in(self) -> bool:
        return self.connection.encrypted or self.stls_context is None

    async def _cmd_CAPA(self, argument: str) -> None:
        capabilities = ["RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.user is None:
            if self._may_start_tls:
                capabilities.append("STLS")
            if self._may_log_in:
                capabilities += ["USER", "SASL PLAIN XOAUTH2"]
        capabilities.append("IMPLEMENTATION mbxtui-demo-sandbox")
        await self.connection.send("+OK Capability list follows")
        for capability in capabilities:
            await self.connection.send(capability)
        await self.connection.send(".")

    async def _cmd_STLS(self, argument: str) -> None:
        if self.user is not None or not self._may_start_tls:
            await self._error("STLS is not available")
            return
        await self.connection.send("+OK Begin TLS negotiation")
        await self.connection.start_tls(self.stls_context)

    async def _cmd_USER(self, argument: str) -> None:
        if not await self._may_authenticate():
            return
        self.pending_login = argument.strip()
        await self.connection.send("+OK")

    async def _cmd_PASS(self, argument: str) -> None:
        if not await self._may_authenticate():
            return
        if self.pending_login is None:
            await self._error("Give USER first")
            return
        login, self.pending_login = self.pending_login, None
        await self._finish_login("", login, password=argument)  # the rest of the line, spaces included

    async def _cmd_AUTH(self, argument: str) -> None:
        if not await self._may_authenticate():
            return
        if len(f"AUTH {argument}\r\n".encode()) > MAX_COMMAND_OCTETS:
            # As Exchange Online does: RFC 5034 4 has the client send such a response after the "+ ".
            await self._error(f"AUTH command longer than {MAX_COMMAND_OCTETS} octets: send the initial "
                              "response after the server's + (RFC 5034)")
            return
        mechanism, _, initial = argument.strip().partition(" ")
        mechanism = mechanism.upper()
        if mechanism not in ("PLAIN", "XOAUTH2"):
            await self._error("Unsupported authentication mechanism")
            return
        encoded = initial.strip().encode("ascii", "replace")
        if not encoded:
            await self.connection.send("+ ")
            encoded = await self.connection.read_line()
        if encoded.strip() == b"*":
            await self._error("Authentication cancelled")
            return
        try:
            response = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            await self._error("Invalid base64 in the authentication response")
            return
        if mechanism == "PLAIN":
            parts = response.split("\0")
            if len(parts) != 3:
                await self._error("Invalid PLAIN response")
                return
            await self._finish_login(parts[0], parts[1], password=parts[2])
        else:
            fields = dict(part.split("=", 1) for part in response.split("\x01") if "=" in part)
            await self._finish_login("", fields.get("user", ""),
                                     token=fields.get("auth", "").removeprefix("Bearer "))

    async def _may_authenticate(self) -> bool:
        if self.user is not None:
            await self._error("Already logged in")
            return False
        if not self._may_log_in:
            await self.connection.send("-ERR [AUTH] Plaintext authentication is not allowed before STLS")
            return False
        return True

    async def _finish_login(self, authzid: str, login: str, *, password: str | None = None,
                            token: str | None = None) -> None:
        if token is not None:
            authenticated = self.mail.check_token(login, token)
        else:
            authenticated = self.mail.check_password(login, password or "")
        mailbox = authzid or login
        if not authenticated:
            self.failed_logins += 1
            log.info("POP3 %s: login of %r refused", self.connection.peer, login)
            await self.connection.send("-ERR [AUTH] Authentication failed.")
            if self.failed_logins >= MAX_FAILED_LOGINS:
                raise ConnectionClosed("too many failed logins")
            return
        if not self.mail.may_act_for(login, mailbox):
            log.info("POP3 %s: %r may not act for %r", self.connection.peer, login, mailbox)
            await self.connection.send(f"-ERR [AUTH] Authorization failed: {login} may not act for {mailbox}")
            return
        self.user = mailbox.strip().lower()
        self.uid_validity, self.maildrop = self.mail.messages(self.user)
        await self.connection.send("+OK Logged in.")

    async def _cmd_STAT(self, argument: str) -> None:
        if self.user is None:
            await self._error("Log in first")
            return
        kept = [m for n, m in enumerate(self.maildrop, start=1) if n not in self.deleted]
        await self.connection.send(f"+OK {len(kept)} {sum(len(m.data) for m in kept)}")

    async def _cmd_LIST(self, argument: str) -> None:
        await self._listing(argument, lambda message: str(len(message.data)))

    async def _cmd_UIDL(self, argument: str) -> None:
        await self._listing(argument, lambda message: f"{self.uid_validity}.{message.uid}")

    async def _listing(self, argument: str, value: Callable[[StoredMessage], str]) -> None:
        if self.user is None:
            await self._error("Log in first")
            return
        if argument.strip():
            number = await self._number(argument)
            if number is not None:
                await self.connection.send(f"+OK {number} {value(self.maildrop[number - 1])}")
            return
        await self.connection.send("+OK")
        for number, message in enumerate(self.maildrop, start=1):
            if number not in self.deleted:
                await self.connection.send(f"{number} {value(message)}")
        await self.connection.send(".")

    async def _cmd_TOP(self, argument: str) -> None:
        if self.user is None:
            await self._error("Log in first")
            return
        number_text, _, lines_text = argument.strip().partition(" ")
        number = await self._number(number_text)
        if number is None:
            return
        if not lines_text.strip().isdigit():
            await self._error("Give the number of lines")
            return
        lines = self.maildrop[number - 1].data.splitlines()
        blank = lines.index(b"") if b"" in lines else len(lines)
        chosen = lines[:blank + 1 + int(lines_text)]
        await self.connection.send("+OK")
        await self._send_raw(b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in chosen)
                             + b".\r\n")

    async def _cmd_DELE(self, argument: str) -> None:
        if self.user is None:
            await self._error("Log in first")
            return
        number = await self._number(argument)
        if number is not None:
            self.deleted.add(number)
            await self.connection.send("+OK Marked to be deleted.")

    async def _number(self, argument: str) -> int | None:
        """The message a command names, or None once the client was told it has no such message."""
        text = argument.strip()
        if not text.isdigit() or not 1 <= int(text) <= len(self.maildrop) or int(text) in self.deleted:
            await self._error("There's no message " + text[:20])
            return None
        return int(text)

    async def _send_raw(self, data: bytes) -> None:
        try:
            self.connection.writer.write(data)
            await self.connection.writer.drain()
        except (ConnectionError, ssl.SSLError) as exc:
            raise ConnectionClosed(str(exc)) from exc

    async def _cmd_NOOP(self, argument: str) -> None:
        if self.user is None:
            await self._error("Log in first")
            return
        await self.connection.send("+OK")

    async def _cmd_RSET(self, argument: str) -> None:
        if self.user is None:
            await self._error("Log in first")
            return
        self.deleted.clear()
        await self.connection.send("+OK")

    async def _cmd_QUIT(self, argument: str) -> None:
        if self.user is not None and self.deleted:
            self.mail.remove(self.user, {self.maildrop[n - 1].uid for n in self.deleted})
        await self.connection.send("+OK Logging out.")
        self.done = True
