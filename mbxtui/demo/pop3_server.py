"""A small POP3 server for the sandbox (RFC 1939, CAPA and STLS from RFC 2449 and 2595, AUTH from
RFC 5034): enough for a mail client to connect, secure the connection, log in, and read and
delete its mail as processing does.

Commands: CAPA, STLS, USER, PASS, AUTH (PLAIN with an authorization identity, XOAUTH2), STAT,
LIST, UIDL, TOP, RETR, DELE, NOOP, RSET, QUIT. The maildrop is the inbox as it was at login;
messages marked with DELE are removed at QUIT (RFC 1939's UPDATE state).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import ssl

from mbxtui.demo.connection import ConnectionClosed, LineConnection
from mbxtui.demo.mailsystem import MailSystem, StoredMessage

log = logging.getLogger("mbxtui.demo.servers")

GREETING = "+OK Fernhill Mail POP3 server (mbxtui demo sandbox) ready"
MAX_FAILED_LOGINS = 5
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
        self.maildrop: list[StoredMessage] = []
        self.deleted: set[int] = set()  # message numbers marked with DELE

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
        capabilities += ["TOP", "UIDL", "IMPLEMENTATION mbxtui-demo-sandbox"]
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

    def _present(self) -> list[tuple[int, StoredMessage]]:
        return [(n, m) for n, m in enumerate(self.maildrop, start=1) if n not in self.deleted]

    async def _message(self, argument: str) -> tuple[int, StoredMessage] | None:
        """The message an argument numbers, or None (the error already sent)."""
        if self.user is None:
            await self._error("Log in first")
            return None
        try:
            number = int(argument.split()[0])
        except (ValueError, IndexError):
            await self._error("A message number is needed")
            return None
        if not 1 <= number <= len(self.maildrop) or number in self.deleted:
            await self._error("No such message")
            return None
        return number, self.maildrop[number - 1]

    async def _multiline(self, first: str, data: bytes) -> None:
        lines = data.split(b"\r\n") if b"\r\n" in data else data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
        await self.connection.send_bytes(first.encode() + b"\r\n" + stuffed + b".\r\n")

    async def _cmd_STAT(self, argument: str) -> None:
        if self.user is None:
            await self._error("Log in first")
            return
        present = self._present()
        await self.connection.send(f"+OK {len(present)} {sum(len(m.data) for _, m in present)}")

    async def _cmd_LIST(self, argument: str, *, unique: bool = False) -> None:
        def value(number: int, message: StoredMessage) -> str:
            return f"{number} {self.uid_validity}.{message.uid}" if unique else f"{number} {len(message.data)}"

        if argument.strip():
            found = await self._message(argument)
            if found is not None:
                await self.connection.send(f"+OK {value(*found)}")
            return
        if self.user is None:
            await self._error("Log in first")
            return
        await self._multiline("+OK", "\r\n".join(value(n, m) for n, m in self._present()).encode())

    async def _cmd_UIDL(self, argument: str) -> None:
        await self._cmd_LIST(argument, unique=True)

    async def _cmd_TOP(self, argument: str) -> None:
        found = await self._message(argument)
        if found is None:
            return
        parts = argument.split()
        if len(parts) != 2 or not parts[1].isdigit():
            await self._error("TOP needs a message number and a number of lines")
            return
        data = found[1].data
        for separator in (b"\r\n\r\n", b"\n\n"):
            if separator in data:
                header, body = data.split(separator, 1)
                lines = body.splitlines(keepends=True)[: int(parts[1])]
                data = header + separator + b"".join(lines)
                break
        await self._multiline("+OK", data)

    async def _cmd_RETR(self, argument: str) -> None:
        found = await self._message(argument)
        if found is not None:
            await self._multiline(f"+OK {len(found[1].data)} octets", found[1].data)

    async def _cmd_DELE(self, argument: str) -> None:
        found = await self._message(argument)
        if found is not None:
            self.deleted.add(found[0])
            await self.connection.send(f"+OK Message {found[0]} deleted")

    async def _cmd_NOOP(self, argument: str) -> None:
        if self.user is None:
            await self._error("Log in first")
            return
        await self.connection.send("+OK")

    async def _cmd_RSET(self, argument: str) -> None:
        self.deleted.clear()
        await self._cmd_NOOP(argument)

    async def _cmd_QUIT(self, argument: str) -> None:
        if self.user is not None and self.deleted:
            self.mail.remove(self.user, {self.maildrop[n - 1].uid for n in self.deleted})
        await self.connection.send("+OK Logging out.")
        self.done = True
