"""A small IMAP4rev1 server for the sandbox: enough of RFC 3501 for a mail client to connect,
secure the connection, log in and look into its inbox.

Commands: CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN, AUTHENTICATE (PLAIN with an authorization
identity, XOAUTH2, OAUTHBEARER), SELECT and EXAMINE (INBOX only), SEARCH and UID SEARCH (ALL, UID, SINCE, HEADER,
SUBJECT, FROM, TO), FETCH and UID FETCH (see imap_fetch.py), STORE and UID STORE of flags, EXPUNGE,
CHECK, CLOSE, UNSELECT: enough for a sync cycle to read and delete what it processed. Anything else
is answered BAD.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
import ssl

from datetime import date, datetime, timezone

from mbxtui.demo import imap_fetch, sasl
from mbxtui.demo.connection import ConnectionClosed, LineConnection
from mbxtui.demo.mailsystem import MailSystem, StoredMessage

log = logging.getLogger("mbxtui.demo.servers")

GREETING = "* OK Fernhill Mail IMAP4rev1 server (mbxtui demo sandbox) ready"
MAX_LITERAL = 64 * 1024
MAX_COMMAND = 256 * 1024
MAX_FAILED_LOGINS = 5
MAX_BAD_COMMANDS = 20
_LITERAL_AT_END = re.compile(rb"\{(\d{1,9})(\+?)\}$")
_SEARCH_HEADER_KEYS = {"SUBJECT": "Subject", "FROM": "From", "TO": "To"}


class _Bad(Exception):
    """A command the sandbox does not understand: answered BAD with this text."""


class ImapSession:
    """One client connection. ``starttls_context`` None: STARTTLS is not offered, and a plaintext
    login is allowed, as on an old server."""

    def __init__(self, connection: LineConnection, mail: MailSystem,
                 starttls_context: ssl.SSLContext | None) -> None:
        self.connection = connection
        self.mail = mail
        self.starttls_context = starttls_context
        self.user: str | None = None
        self.selected = False
        self.read_only = False
        self.reported_exists = 0
        self.failed_logins = 0
        self.bad_commands = 0
        self.done = False

    async def run(self) -> None:
        try:
            await self.connection.send(GREETING)
            while not self.done:
                tokens = await self._read_command()
                if tokens:
                    await self._dispatch(tokens)
                else:
                    await self._bad("*", "Empty command")
        except TimeoutError:
            with contextlib.suppress(ConnectionClosed):
                await self.connection.send("* BYE Autologout: idle for too long")
        except ConnectionClosed:
            pass

    # -- reading commands --

    async def _read_command(self) -> list[bytes]:
        """The tokens of the next command (tag and command name first), literals read in."""
        tokens: list[bytes] = []
        size = 0
        while True:
            line = await self.connection.read_line()
            size += len(line)
            literal = _LITERAL_AT_END.search(line)
            tokens.extend(_tokenise(line[: literal.start()] if literal else line))
            if literal is None:
                return tokens
            length = int(literal[1])
            size += length
            if length > MAX_LITERAL or size > MAX_COMMAND:
                await self.connection.send("* BYE Command too long")
                raise ConnectionClosed("command too long")
            if not literal[2]:
                await self.connection.send("+ Ready for literal data")
            tokens.append(await self.connection.read_exactly(length))

    async def _dispatch(self, tokens: list[bytes]) -> None:
        tag = tokens[0].decode("ascii", "replace")
        if len(tokens) < 2:
            await self._bad(tag, "Missing command")
            return
        name = tokens[1].decode("ascii", "replace").upper()
        arguments = tokens[2:]
        if name == "UID" and arguments:
            name = "UID " + arguments[0].decode("ascii", "replace").upper()
            arguments = arguments[1:]
        handler = getattr(self, "_cmd_" + name.replace(" ", "_"), None)
        if handler is None:
            await self._bad(tag, f"{name} is not supported by the sandbox server")
            return
        try:
            await handler(tag, arguments)
        except _Bad as bad:
            await self._bad(tag, str(bad))

    async def _bad(self, tag: str, text: str) -> None:
        self.bad_commands += 1
        if self.bad_commands > MAX_BAD_COMMANDS:
            await self.connection.send("* BYE Too many invalid commands")
            raise ConnectionClosed("too many invalid commands")
        await self.connection.send(f"{tag} BAD {text}")

    # -- any state --

    def _capabilities(self) -> str:
        capabilities = ["IMAP4rev1", "LITERAL+", "UNSELECT"]
        if self.user is None:
            if self._may_start_tls:
                capabilities.append("STARTTLS")
            if self._may_log_in:
                capabilities += ["AUTH=PLAIN", "AUTH=XOAUTH2", "AUTH=OAUTHBEARER"]
            else:
                capabilities.append("LOGINDISABLED")
        return " ".join(capabilities)

    @property
    def _may_start_tls(self) -> bool:
        return self.starttls_context is not None and not self.connection.encrypted

    @property
    def _may_log_in(self) -> bool:
        return self.connection.encrypted or self.starttls_context is None

    async def _cmd_CAPABILITY(self, tag: str, arguments: list[bytes]) -> None:
        await self.connection.send(f"* CAPABILITY {self._capabilities()}")
        await self.connection.send(f"{tag} OK CAPABILITY completed")

    async def _cmd_NOOP(self, tag: str, arguments: list[bytes]) -> None:
        if self.selected:
            await self._report_new_messages()
        await self.connection.send(f"{tag} OK NOOP completed")

    _cmd_CHECK = _cmd_NOOP

    async def _cmd_LOGOUT(self, tag: str, arguments: list[bytes]) -> None:
        await self.connection.send("* BYE Logging out")
        await self.connection.send(f"{tag} OK LOGOUT completed")
        self.done = True

    # -- not authenticated --

    async def _cmd_STARTTLS(self, tag: str, arguments: list[bytes]) -> None:
        if not self._may_start_tls:
            raise _Bad("STARTTLS is not available")
        await self.connection.send(f"{tag} OK Begin TLS negotiation now")
        await self.connection.start_tls(self.starttls_context)

    async def _cmd_LOGIN(self, tag: str, arguments: list[bytes]) -> None:
        self._require_not_authenticated()
        if len(arguments) != 2:
            raise _Bad("LOGIN needs a user name and a password")
        if not self._may_log_in:
            await self.connection.send(
                f"{tag} NO [PRIVACYREQUIRED] Plaintext login is not allowed before STARTTLS")
            return
        login, password = (_text(argument) for argument in arguments)
        await self._finish_login(tag, "", login, password=password)

    async def _cmd_AUTHENTICATE(self, tag: str, arguments: list[bytes]) -> None:
        self._require_not_authenticated()
        if not arguments or len(arguments) > 2:
            raise _Bad("AUTHENTICATE needs a mechanism")
        mechanism = arguments[0].decode("ascii", "replace").upper()
        if mechanism not in ("PLAIN", *sasl.TOKEN_MECHANISMS):
            await self.connection.send(f"{tag} NO [CANNOT] Unsupported authentication mechanism")
            return
        if not self._may_log_in:
            await self.connection.send(
                f"{tag} NO [PRIVACYREQUIRED] Authentication is not allowed before STARTTLS")
            return
        if len(arguments) == 2:
            encoded = arguments[1]
        else:
            await self.connection.send("+ ")
            encoded = await self.connection.read_line()
        if encoded.strip() == b"*":
            raise _Bad("Authentication cancelled")
        try:
            response = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _Bad("Invalid base64 in the authentication response") from None
        if mechanism == "PLAIN":
            parts = response.split("\0")
            if len(parts) != 3:
                raise _Bad("Invalid PLAIN response")
            authzid, login, password = parts
            await self._finish_login(tag, authzid, login, password=password)
        else:
            user, token = sasl.bearer_login(mechanism, response)
            if mechanism == "OAUTHBEARER" and not self.mail.check_token(user, token):
                await self.connection.send(f"+ {sasl.oauthbearer_error('IMAP.AccessAsApp')}")
                await self.connection.read_line()  # the client's ^A, which ends the exchange
            await self._finish_login(tag, "", user, token=token)

    async def _finish_login(self, tag: str, authzid: str, login: str, *, password: str | None = None,
                            token: str | None = None) -> None:
        if token is not None:
            authenticated = self.mail.check_token(login, token)
        else:
            authenticated = self.mail.check_password(login, password or "")
        mailbox = authzid or login
        if not authenticated:
            self.failed_logins += 1
            log.info("IMAP %s: login of %r refused", self.connection.peer, login)
            if self.failed_logins >= MAX_FAILED_LOGINS:
                await self.connection.send("* BYE Too many failed logins")
                raise ConnectionClosed("too many failed logins")
            # Exchange Online answers a token it will not take (no permission, no access to the
            # mailbox) with these words and no response code.
            refusal = "AUTHENTICATE failed." if token is not None else "[AUTHENTICATIONFAILED] Authentication failed."
            await self.connection.send(f"{tag} NO {refusal}")
            return
        if not self.mail.may_act_for(login, mailbox):
            log.info("IMAP %s: %r may not act for %r", self.connection.peer, login, mailbox)
            await self.connection.send(
                f"{tag} NO [AUTHORIZATIONFAILED] Authorization failed: {login} may not act for {mailbox}")
            return
        self.user = mailbox.strip().lower()
        await self.connection.send(f"{tag} OK Logged in")

    def _require_not_authenticated(self) -> None:
        if self.user is not None:
            raise _Bad("Already authenticated")

    # -- authenticated --

    async def _cmd_SELECT(self, tag: str, arguments: list[bytes], *, read_only: bool = False) -> None:
        self._require_authenticated()
        if len(arguments) != 1:
            raise _Bad("SELECT needs one mailbox name")
        self.selected = False
        if _text(arguments[0]).upper() != "INBOX":
            await self.connection.send(f"{tag} NO [NONEXISTENT] The sandbox has only INBOX")
            return
        uid_validity, messages = self.mail.messages(self.user)
        next_uid = self.mail.next_uid(self.user)
        self.selected = True
        self.read_only = read_only
        self.reported_exists = len(messages)
        for line in (
            r"* FLAGS (\Answered \Flagged \Deleted \Seen \Draft)",
            r"* OK [PERMANENTFLAGS ()] No permanent flags in the sandbox",
            f"* {len(messages)} EXISTS",
            "* 0 RECENT",
            f"* OK [UIDVALIDITY {uid_validity}] UIDs valid",
            f"* OK [UIDNEXT {next_uid}] Predicted next UID",
        ):
            await self.connection.send(line)
        mode, name = ("READ-ONLY", "EXAMINE") if read_only else ("READ-WRITE", "SELECT")
        await self.connection.send(f"{tag} OK [{mode}] {name} completed")

    async def _cmd_EXAMINE(self, tag: str, arguments: list[bytes]) -> None:
        await self._cmd_SELECT(tag, arguments, read_only=True)

    def _require_authenticated(self) -> None:
        if self.user is None:
            raise _Bad("Log in first")

    # -- selected --

    async def _cmd_SEARCH(self, tag: str, arguments: list[bytes], *, by_uid: bool = False) -> None:
        self._require_selected()
        criteria = [a for a in arguments if a not in (b"(", b")")]
        if len(criteria) >= 2 and criteria[0].upper() == b"CHARSET":
            criteria = criteria[2:]
        _, messages = self.mail.messages(self.user)
        try:
            matches = _search(messages, criteria)
        except imap_fetch.FetchError as error:
            raise _Bad(str(error)) from None
        numbers = [message.uid if by_uid else index for index, message in matches]
        await self.connection.send("* SEARCH" + "".join(f" {number}" for number in numbers))
        await self.connection.send(f"{tag} OK {'UID ' if by_uid else ''}SEARCH completed")

    async def _cmd_UID_SEARCH(self, tag: str, arguments: list[bytes]) -> None:
        await self._cmd_SEARCH(tag, arguments, by_uid=True)

    async def _cmd_FETCH(self, tag: str, arguments: list[bytes], *, by_uid: bool = False) -> None:
        self._require_selected()
        if len(arguments) < 2:
            raise _Bad("FETCH needs a sequence set and the items to fetch")
        _, messages = self.mail.messages(self.user)
        chosen = self._chosen(messages, arguments[0], by_uid)
        items = imap_fetch.fetch_items(arguments[1:])
        if by_uid and not any(item.upper() == "UID" for item in items):
            items.insert(0, "UID")
        for number, message in chosen:
            parts: list[bytes] = []
            try:
                for item in items:
                    if item.upper() == "UID":
                        parts.append(f"UID {message.uid}".encode())
                        continue
                    text, literal = imap_fetch.answer(item, message.data, message.arrived, sorted(message.flags))
                    parts.append(text.encode() if literal is None else
                                 text.encode() + b" {%d}\r\n" % len(literal) + literal)
            except imap_fetch.FetchError as error:
                raise _Bad(str(error)) from None
            await self.connection.send_bytes(f"* {number} FETCH (".encode() + b" ".join(parts) + b")\r\n")
        await self.connection.send(f"{tag} OK {'UID ' if by_uid else ''}FETCH completed")

    async def _cmd_UID_FETCH(self, tag: str, arguments: list[bytes]) -> None:
        await self._cmd_FETCH(tag, arguments, by_uid=True)

    async def _cmd_STORE(self, tag: str, arguments: list[bytes], *, by_uid: bool = False) -> None:
        self._require_selected()
        if self.read_only:
            await self.connection.send(f"{tag} NO [READ-ONLY] The mailbox was opened with EXAMINE")
            return
        if len(arguments) < 3:
            raise _Bad("STORE needs a sequence set, an action and flags")
        action = arguments[1].decode("ascii", "replace").upper()
        if action.removesuffix(".SILENT") not in ("+FLAGS", "-FLAGS"):
            raise _Bad("the sandbox stores +FLAGS and -FLAGS only")
        flags = {_text(token) for token in arguments[2:] if token not in (b"(", b")")}
        _, messages = self.mail.messages(self.user)
        chosen = self._chosen(messages, arguments[0], by_uid)
        self.mail.flag(self.user, {message.uid for _, message in chosen}, flags, add=action.startswith("+"))
        if not action.endswith(".SILENT"):
            _, messages = self.mail.messages(self.user)
            uids = {message.uid for _, message in chosen}
            for number, message in enumerate(messages, start=1):
                if message.uid in uids:
                    uid = f"UID {message.uid} " if by_uid else ""
                    await self.connection.send(f"* {number} FETCH ({uid}FLAGS ({' '.join(sorted(message.flags))}))")
        await self.connection.send(f"{tag} OK {'UID ' if by_uid else ''}STORE completed")

    async def _cmd_UID_STORE(self, tag: str, arguments: list[bytes]) -> None:
        await self._cmd_STORE(tag, arguments, by_uid=True)

    async def _cmd_EXPUNGE(self, tag: str, arguments: list[bytes]) -> None:
        self._require_selected()
        if self.read_only:
            await self.connection.send(f"{tag} NO [READ-ONLY] The mailbox was opened with EXAMINE")
            return
        for number in self.mail.expunge(self.user):
            await self.connection.send(f"* {number} EXPUNGE")
            self.reported_exists -= 1
        await self.connection.send(f"{tag} OK EXPUNGE completed")

    def _chosen(self, messages: list[StoredMessage], sequence: bytes,
                by_uid: bool) -> list[tuple[int, StoredMessage]]:
        """(sequence number, message) of the messages a sequence set names."""
        try:
            if by_uid:
                wanted = imap_fetch.parse_set(_text(sequence), messages[-1].uid if messages else 0)
                return [(n, m) for n, m in enumerate(messages, start=1) if m.uid in wanted]
            wanted = imap_fetch.parse_set(_text(sequence), len(messages))
        except imap_fetch.FetchError as error:
            raise _Bad(str(error)) from None
        return [(n, m) for n, m in enumerate(messages, start=1) if n in wanted]

    async def _cmd_CLOSE(self, tag: str, arguments: list[bytes]) -> None:
        self._require_selected()
        self.selected = False
        await self.connection.send(f"{tag} OK CLOSE completed")

    _cmd_UNSELECT = _cmd_CLOSE

    def _require_selected(self) -> None:
        if not self.selected:
            raise _Bad("Select a mailbox first")

    async def _report_new_messages(self) -> None:
        _, messages = self.mail.messages(self.user)
        if len(messages) != self.reported_exists:
            self.reported_exists = len(messages)
            await self.connection.send(f"* {len(messages)} EXISTS")


def _search(messages: list[StoredMessage], criteria: list[bytes]) -> list[tuple[int, StoredMessage]]:
    """The (sequence number, message) pairs matching every criterion."""
    tests = []
    remaining = list(criteria)
    while remaining:
        key = remaining.pop(0).decode("ascii", "replace").upper()
        if key == "ALL":
            continue
        if key == "UID" and remaining:
            largest = messages[-1].uid if messages else 0
            wanted = imap_fetch.parse_set(_text(remaining.pop(0)), largest)
            tests.append(lambda message, wanted=wanted: message.uid in wanted)
            continue
        if key == "SINCE" and remaining:
            since = imap_fetch.parse_search_date(_text(remaining.pop(0)))
            tests.append(lambda message, since=since: _arrival_date(message) >= since)
            continue
        if key == "HEADER" and len(remaining) >= 2:
            name, value = _text(remaining.pop(0)), _text(remaining.pop(0))
        elif key in _SEARCH_HEADER_KEYS and remaining:
            name, value = _SEARCH_HEADER_KEYS[key], _text(remaining.pop(0))
        else:
            raise _Bad("The sandbox searches by ALL, UID, SINCE, HEADER, SUBJECT, FROM and TO only")
        tests.append(lambda message, name=name, value=value: message.header_contains(name, value))
    return [(number, message) for number, message in enumerate(messages, start=1)
            if all(test(message) for test in tests)]


def _arrival_date(message: StoredMessage) -> date:
    return datetime.fromtimestamp(message.arrived, timezone.utc).date()


def _text(token: bytes) -> str:
    return token.decode("utf-8", "replace")


def _tokenise(line: bytes) -> list[bytes]:
    """Atoms, quoted strings (unquoted here) and parentheses, in order."""
    tokens: list[bytes] = []
    position = 0
    while position < len(line):
        char = line[position:position + 1]
        if char == b" ":
            position += 1
        elif char in (b"(", b")"):
            tokens.append(char)
            position += 1
        elif char == b'"':
            value = bytearray()
            position += 1
            while position < len(line) and line[position:position + 1] != b'"':
                if line[position:position + 1] == b"\\" and position + 1 < len(line):
                    position += 1
                value += line[position:position + 1]
                position += 1
            tokens.append(bytes(value))
            position += 1
        else:
            end = position
            while end < len(line) and line[end:end + 1] not in (b" ", b"(", b")", b'"'):
                end += 1
            tokens.append(line[position:end])
            position = end
    return tokens
