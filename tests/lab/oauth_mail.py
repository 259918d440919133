"""Mail servers that take OAuth2 tokens, beside the lab's: a second Dovecot with an ``oauth2``
passdb (XOAUTH2 and OAUTHBEARER on IMAP and POP3, each token checked by introspection at the local
provider, tests/lab/oauth_provider.py) and a submission server taking XOAUTH2, checked the same way.

    oauth = start_oauth_mail(mail_lab, workdir)       # or the fixture in the tests that use it
    oauth.provider.register(TENANT, CLIENT, secret=...)
    ports: oauth.ports["imaps"|"imap"|"pop3s"|"pop3"|"smtp"] (smtp: STARTTLS, AUTH XOAUTH2)
    oauth.stop()

Both serve the lab's own mailboxes (same users, same Maildirs; mail accepted is delivered through the
lab's Dovecot), so a message sent as alice@example.test here is read back over IMAP here or there.
An app's token acts for the mailboxes of the domain the provider granted it (Dovecot:
``username_format = %d``), when it holds the role of the protocol (IMAP and POP3:
``IMAP.AccessAsApp``, Dovecot's ``scope``; SMTP: ``SMTP.SendAsApp``). A refusal is what Exchange
Online answers a token without the permission: IMAP ``NO AUTHENTICATE failed``, SMTP 535 after the
XOAUTH2 error challenge.
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
SMTP_ROLE = "SMTP.SendAsApp"


class OAuthDovecot(Dovecot):
    """The lab's Dovecot configuration, with XOAUTH2 and OAUTHBEARER answered by an oauth2 passdb
    (PLAIN stays, for the readiness check)."""

    def __init__(self, *args: object, introspection_url: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.oauth2_args = self.paths.config.with_name("dovecot-oauth2.conf.ext")
        self.introspection_url = introspection_url

    def _config_text(self) -> str:
        self.oauth2_args.write_text(
            "introspection_mode = post\n"
            f"introspection_url = {self.introspection_url}\n"
            "force_introspection = yes\n"
            "active_attribute = active\n"
            "active_value = true\n"
            "username_attribute = email\n"
            "username_format = %d\n"
            f"scope = {IMAP_ROLE}\n", encoding="utf-8")
        text = super()._config_text()
        replaced = (text.replace("auth_mechanisms = plain login", "auth_mechanisms = plain login xoauth2 oauthbearer")
                    .replace("instance_name = mbxtui-lab-", "instance_name = mbxtui-oauth-lab-")
                    .replace("passdb {\n  driver = passwd-file", "passdb {\n  mechanisms = plain login\n"
                                                                 "  driver = passwd-file"))
        oauth2_passdb = ("passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                         f"  args = {self.oauth2_args}\n}}\nuserdb {{")
        replaced = replaced.replace("userdb {", oauth2_passdb, 1)
        if replaced.count("xoauth2") != 2 or replaced.count("mechanisms = plain login\n") != 2:
            raise AssertionError("the lab's Dovecot configuration changed: update OAuthDovecot")
        return replaced


class OAuthSMTP(LabSMTP):
    """The lab's submission server taking XOAUTH2 (and no password) from apps the provider
    granted ``SMTP.SendAsApp`` for the mailbox's domain."""

    def __init__(self, handler: DeliveringHandler, listener: SmtpListener, lab_loop: LabLoop,
                 provider: OAuthProvider) -> None:
        self.provider = provider
        super().__init__(handler, listener, lab_loop)

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
        login, bearer = fields.get("user", ""), fields.get("auth", "")
        token = bearer[len("Bearer "):] if bearer.startswith("Bearer ") else ""
        if self.accounts.is_mailbox(login) and self.provider.may(token, login, SMTP_ROLE):
            return AuthResult(success=True, auth_data=LoginPassword(login.lower().encode(), b""))
        # RFC 7628 / Google's XOAUTH2: the error as a base64 JSON challenge, answered with an empty line.
        error = {"status": "401", "schemes": "bearer", "scope": SMTP_ROLE}
        await self.challenge_auth(json.dumps(error).encode())
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

    def log_tail(self, lines: int = 40) -> str:
        return self._dovecot.log_tail(lines)

    def stop(self) -> None:
        self._resources.close()


def start_oauth_mail(lab: MailLab, workdir: Path) -> OAuthMail:
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as resources:
        certificates = lab._dovecot.certificates
        provider = OAuthProvider(certificates).start()
        resources.callback(provider.stop)
        # Unix socket paths are limited to 108 bytes: Dovecot's base_dir lives in a short path.
        spool = Path(tempfile.mkdtemp(prefix="mbxtui-oauth-"))
        resources.callback(shutil.rmtree, spool, ignore_errors=True)
        dovecot = OAuthDovecot(find_dovecot(), workdir, spool, lab._accounts, certificates,
                               introspection_url=provider.introspection_url)
        resources.callback(dovecot.stop)
        dovecot.start()
        handler = DeliveringHandler(lab._accounts, lab._dovecot.deliver)
        listener = SmtpListener(starttls_context=certificates.server_context())
        lab_loop = lab._lab_loop
        server = lab_loop.call(lab_loop.serve_protocol(lambda: OAuthSMTP(handler, listener, lab_loop, provider),
                                                       None))
        resources.callback(lambda: lab_loop.call(_closed(server)))
        ports = {**dovecot.ports, "smtp": server_port(server)}
        return OAuthMail(lab.host, lab.ca_file, provider, ports, resources.pop_all(), dovecot)


async def _closed(server: object) -> None:
    server.close()  # type: ignore[attr-defined]


__all__ = ["IMAP_ROLE", "OAuthMail", "SMTP_ROLE", "start_oauth_mail"]
