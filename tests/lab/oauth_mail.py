"""Mail servers that take OAuth2 tokens, beside the lab's: a second Dovecot with an ``oauth2``
passdb (XOAUTH2 and OAUTHBEARER on IMAP and POP3, each token checked by introspection at the local
provider, tests/lab/oauth_provider.py) and a submission server taking XOAUTH2 and OAUTHBEARER, checked
the same way. ``start_oauth_mail(..., mechanisms=("OAUTHBEARER",))`` offers OAUTHBEARER alone.

    oauth = start_oauth_mail(mail_lab, workdir)       # or the fixture in the tests that use it
    oauth.provider.register(TENANT, CLIENT, secret=...)
    ports: oauth.ports["imaps"|"imap"|"pop3s"|"pop3"|"smtp"] (smtp: STARTTLS, AUTH XOAUTH2 OAUTHBEARER)
    oauth.smtp_auth_disabled.add(EMAIL or EVERY_MAILBOX)   # SMTP: 535 5.7.139, as Exchange Online
    oauth.stop()

Both serve the lab's own mailboxes (same users, same Maildirs; mail accepted is delivered through the
lab's Dovecot), so a message sent as alice@example.test here is read back over IMAP here or there.
An app's token acts for the mailboxes of the domain the provider granted it (Dovecot:
``username_format = %d``), when it holds the role of the protocol, as Exchange Online checks it
(IMAP: ``IMAP.AccessAsApp``; POP3: ``POP.AccessAsApp``; each Dovecot's ``scope``; SMTP:
``SMTP.SendAsApp``). Dovecot 2.3 takes one ``scope`` per oauth2 passdb and expands no variable in its
introspection URL (``%s`` there makes the auth process panic), so POP3 is served by a second Dovecot
on the same Maildirs, whose passdb wants ``POP.AccessAsApp``. A refusal is what Exchange Online
answers a token without the permission: IMAP ``NO AUTHENTICATE failed``, POP3 ``-ERR``, SMTP 535
after the XOAUTH2 error challenge.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from .dovecot import Dovecot, find_dovecot
from .mail_lab import MailLab
from .oauth_provider import OAuthProvider
from .smtp import DeliveringHandler, LabSMTP, SmtpListener
from .loop import LabLoop, server_port

IMAP_ROLE = "IMAP.AccessAsApp"
POP_ROLE = "POP.AccessAsApp"
SMTP_ROLE = "SMTP.SendAsApp"
MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
EVERY_MAILBOX = "*"  # in ``smtp_auth_disabled``: SMTP AUTH off for the whole tenant


class OAuthDovecot(Dovecot):
    """The lab's Dovecot configuration, with XOAUTH2 and OAUTHBEARER answered by an oauth2 passdb
    (PLAIN stays, for the readiness check)."""

    def __init__(self, *args: object, introspection_url: str, mechanisms: tuple[str, ...] = MECHANISMS,
                 role: str = IMAP_ROLE, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.role = role  # the scope its oauth2 passdb wants of every token
        self.oauth2_args = self.paths.config.with_name("dovecot-oauth2.conf.ext")
        self.introspection_url = introspection_url
        self.mechanisms = " ".join(mechanism.lower() for mechanism in mechanisms)

    def _config_text(self) -> str:
        self.oauth2_args.write_text(
            "introspection_mode = post\n"
            f"introspection_url = {self.introspection_url}\n"
            "force_introspection = yes\n"
            "active_attribute = active\n"
            "active_value = true\n"
            "username_attribute = email\n"
            "username_format = %d\n"
            f"scope = {self.role}\n", encoding="utf-8")
        text = super()._config_text()
        replaced = (text.replace("auth_mechanisms = plain login", f"auth_mechanisms = plain login {self.mechanisms}")
                    .replace("instance_name = mbxtui-lab-", f"instance_name = mbxtui-oauth-{self.role.split('.')[0].lower()}-lab-")
                    .replace("passdb {\n  driver = passwd-file", "passdb {\n  mechanisms = plain login\n"
                                                                 "  driver = passwd-file"))
        oauth2_passdb = (f"passdb {{\n  driver = oauth2\n  mechanisms = {self.mechanisms}\n"
                         f"  args = {self.oauth2_args}\n}}\nuserdb {{")
        replaced = replaced.replace("userdb {", oauth2_passdb, 1)
        if replaced.count(self.mechanisms) != 2 or replaced.count("mechanisms = plain login\n") != 2:
            raise AssertionError("the lab's Dovecot configuration changed: update OAuthDovecot")
        return replaced


class OAuthSMTP(LabSMTP):
    """The lab's submission server taking XOAUTH2 and OAUTHBEARER (and no password) from apps the
    provider granted ``SMTP.SendAsApp`` for the mailbox's domain. ``mechanisms`` are those it offers;
    ``smtp_auth_disabled`` holds the mailboxes (or ``EVERY_MAILBOX``) it answers as Exchange Online does
    where SMTP AUTH is turned off."""

    def __init__(self, handler: DeliveringHandler, listener: SmtpListener, lab_loop: LabLoop,
                 provider: OAuthProvider, mechanisms: tuple[str, ...] = MECHANISMS,
                 smtp_auth_disabled: set[str] | None = None) -> None:
        self.provider = provider
        self.smtp_auth_disabled = smtp_auth_disabled if smtp_auth_disabled is not None else set()
        super().__init__(handler, listener, lab_loop)
        for mechanism in MECHANISMS:
            if mechanism not in mechanisms:
                self._auth_methods.pop(mechanism, None)

    async def auth_PLAIN(self, _: SMTP, args: list[str]) -> AuthResult:
        await self.push("504 5.7.4 Unrecognized authentication type")
        return AuthResult(success=False, handled=True)

    async def auth_LOGIN(self, _: SMTP, args: list[str]) -> AuthResult:
        return await self.auth_PLAIN(_, args)

    async def auth_XOAUTH2(self, _: SMTP, args: list[str]) -> AuthResult:
        response = await self.initial_response(args)
        if response is None:
            return AuthResult(success=False, handled=True)
        fields = dict(part.split("=", 1) for part in response.decode("utf-8", "replace").split("\x01") if "=" in part)
        return await self._bearer(fields.get("user", ""), fields.get("auth", ""), ending=b"")

    async def auth_OAUTHBEARER(self, _: SMTP, args: list[str]) -> AuthResult:
        """RFC 7628: ``n,a=USER,`` then ``key=value`` pairs separated by %x01."""
        response = await self.initial_response(args)
        if response is None:
            return AuthResult(success=False, handled=True)
        header, _, rest = response.decode("utf-8", "replace").partition("\x01")
        gs2 = header.split(",")
        if len(gs2) < 3 or gs2[0] != "n" or not gs2[1].startswith("a="):
            await self.push("501 5.5.2 Invalid OAUTHBEARER GS2 header")
            return AuthResult(success=False, handled=True)
        login = gs2[1][2:].replace("=2C", ",").replace("=3D", "=")
        fields = dict(part.split("=", 1) for part in rest.split("\x01") if "=" in part)
        return await self._bearer(login, fields.get("auth", ""), ending=b"\x01")

    async def _bearer(self, login: str, bearer: str, *, ending: bytes) -> AuthResult:
        if self.smtp_auth_disabled & {EVERY_MAILBOX, login.lower()}:
            whom = "Tenant" if EVERY_MAILBOX in self.smtp_auth_disabled else "Mailbox"
            await self.push(f"535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
                            f"the {whom}. Visit https://aka.ms/smtp_auth_disabled for more information.")
            return AuthResult(success=False, handled=True)
        token = bearer[len("Bearer "):] if bearer.startswith("Bearer ") else ""
        if self.accounts.is_mailbox(login) and self.provider.may(token, login, SMTP_ROLE):
            return AuthResult(success=True, auth_data=LoginPassword(login.lower().encode(), b""))
        # RFC 7628 / Google's XOAUTH2: the error as a base64 JSON challenge, which the client answers
        # to end the exchange: XOAUTH2 with an empty line, OAUTHBEARER with a single %x01.
        error = {"status": "401", "schemes": "bearer", "scope": SMTP_ROLE}
        answer = await self.challenge_auth(json.dumps(error).encode())
        if answer != ending:
            await self.push("501 5.5.2 The client did not end the failed exchange as its mechanism says")
            return AuthResult(success=False, handled=True)
        await self.push("535 5.7.3 Authentication unsuccessful")
        return AuthResult(success=False, handled=True)


@dataclass
class OAuthMail:
    host: str
    ca_file: str
    provider: OAuthProvider
    ports: dict[str, int]
    _resources: contextlib.ExitStack = field(repr=False)
    _dovecot: OAuthDovecot = field(repr=False)
    smtp_auth_disabled: set[str] = field(default_factory=set)  # mailboxes (or EVERY_MAILBOX), see OAuthSMTP
    _pop3_dovecot: OAuthDovecot | None = field(default=None, repr=False)

    def log_tail(self, lines: int = 40) -> str:
        pop3 = f"\n--- POP3 ---\n{self._pop3_dovecot.log_tail(lines)}" if self._pop3_dovecot is not None else ""
        return self._dovecot.log_tail(lines) + pop3

    def stop(self) -> None:
        self._resources.close()


def start_oauth_mail(lab: MailLab, workdir: Path, *, mechanisms: tuple[str, ...] = MECHANISMS) -> OAuthMail:
    """``mechanisms``: the OAuth2 SASL mechanisms its IMAP, POP3 and SMTP servers offer."""
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as resources:
        certificates = lab._dovecot.certificates
        provider = OAuthProvider(certificates).start()
        resources.callback(provider.stop)
        # Unix socket paths are limited to 108 bytes: Dovecot's base_dir lives in a short path.
        spool = Path(tempfile.mkdtemp(prefix="mbxtui-oauth-"))
        resources.callback(shutil.rmtree, spool, ignore_errors=True)
        dovecot = OAuthDovecot(find_dovecot(), workdir, spool, lab._accounts, certificates,
                               introspection_url=provider.introspection_url, mechanisms=mechanisms)
        resources.callback(dovecot.stop)
        dovecot.start()
        pop3_spool = Path(tempfile.mkdtemp(prefix="mbxtui-oauth-pop3-"))
        resources.callback(shutil.rmtree, pop3_spool, ignore_errors=True)
        (workdir / "pop3").mkdir(exist_ok=True)
        pop3_dovecot = OAuthDovecot(find_dovecot(), workdir / "pop3", pop3_spool, lab._accounts, certificates,
                                    introspection_url=provider.introspection_url, mechanisms=mechanisms, role=POP_ROLE)
        resources.callback(pop3_dovecot.stop)
        pop3_dovecot.start()
        handler = DeliveringHandler(lab._accounts, lab._dovecot.deliver)
        listener = SmtpListener(starttls_context=certificates.server_context())
        lab_loop = lab._lab_loop
        disabled: set[str] = set()
        server = lab_loop.call(lab_loop.serve_protocol(
            lambda: OAuthSMTP(handler, listener, lab_loop, provider, mechanisms, disabled), None))
        resources.callback(lambda: lab_loop.call(_closed(server)))
        ports = {**dovecot.ports, "pop3": pop3_dovecot.ports["pop3"], "pop3s": pop3_dovecot.ports["pop3s"],
                 "smtp": server_port(server)}
        return OAuthMail(lab.host, lab.ca_file, provider, ports, resources.pop_all(), dovecot, disabled, pop3_dovecot)


async def _closed(server: object) -> None:
    server.close()  # type: ignore[attr-defined]


__all__ = ["EVERY_MAILBOX", "IMAP_ROLE", "MECHANISMS", "OAuthMail", "POP_ROLE", "SMTP_ROLE", "start_oauth_mail"]
