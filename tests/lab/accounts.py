"""The lab's mail accounts: one source of truth for Dovecot's passwd-files and the SMTP server."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

DOMAIN = "example.test"
BUSY_RECIPIENT = f"busy@{DOMAIN}"

BASE_USERS = {
    f"alice@{DOMAIN}": "alice-secret",
    f"bob@{DOMAIN}": "bob-secret",
    f"jose@{DOMAIN}": "pässwörd-ñ€",
}
DISABLED_USER = f"carol.disabled@{DOMAIN}"
DISABLED_PASSWORD = "carol-secret"
MASTER_LOGIN = f"sync-master@{DOMAIN}"
MASTER_PASSWORD = "master-secret"
# Dovecot's auth_master_user_separator: "alice@example.test*sync-master@example.test" logs in
# as alice with the master's password.
MASTER_SEPARATOR = "*"


@dataclass(frozen=True)
class MailOwner:
    """The numeric owner of the Maildirs (Dovecot refuses uid 0 for mail)."""

    uid: int
    gid: int


class Accounts:
    """Users, the disabled user and the master user; writes the passwd-files Dovecot reads.

    Reads (from the SMTP server's thread) and writes (from the test thread) may overlap: the
    users dict is only ever replaced or grown under the lock, never shrunk.
    """

    def __init__(self, users_file: Path, masters_file: Path, mail_root: Path, owner: MailOwner):
        self.users_file = users_file
        self.masters_file = masters_file
        self.mail_root = mail_root
        self.owner = owner
        self.users: dict[str, str] = {**BASE_USERS, DISABLED_USER: DISABLED_PASSWORD}
        self._next_number: dict[str, int] = {}
        self._lock = threading.Lock()

    def home(self, login: str) -> Path:
        return self.mail_root / login

    def write_files(self) -> None:
        with self._lock:
            self._write_users_file()
            _write_atomically(self.masters_file, f"{MASTER_LOGIN}:{{PLAIN}}{MASTER_PASSWORD}\n")

    def add_users(self, count: int, prefix: str) -> list[str]:
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        _check_login_prefix(prefix)
        with self._lock:
            first = self._next_number.get(prefix, 1)
            logins = [f"{prefix}{number:04d}@{DOMAIN}" for number in range(first, first + count)]
            self._next_number[prefix] = first + count
            self.users.update({login: f"pw-{login}" for login in logins})
            self._write_users_file()
        return logins

    def is_mailbox(self, address: str) -> bool:
        return address.lower() in self.users

    def authenticate(self, authzid: str, login: str, password: str) -> str | None:
        """The login a session acts as after these credentials, or None when refused.

        Mirrors the Dovecot passdbs: a disabled user is refused even with the right password, and
        the master user may act for any enabled user (PLAIN authzid or "user*master").
        """
        if MASTER_SEPARATOR in login:
            target, _, master = login.partition(MASTER_SEPARATOR)
            if authzid and authzid != target:
                return None
            authzid, login = target, master
        if authzid and authzid != login:
            if login != MASTER_LOGIN or password != MASTER_PASSWORD:
                return None
            return authzid if self._may_log_in(authzid) else None
        if self._may_log_in(login) and self.users[login] == password:
            return login
        return None

    def _may_log_in(self, login: str) -> bool:
        return login in self.users and login != DISABLED_USER

    def _write_users_file(self) -> None:
        lines = []
        for login, password in self.users.items():
            extra = "nologin reason=account-disabled" if login == DISABLED_USER else ""
            lines.append(
                f"{login}:{{PLAIN}}{password}:{self.owner.uid}:{self.owner.gid}::"
                f"{self.home(login)}::{extra}\n"
            )
        _write_atomically(self.users_file, "".join(lines))


def _check_login_prefix(prefix: str) -> None:
    # ':' separates passwd-file fields, '*' the master user, '@' the domain.
    if not prefix or any(character in prefix for character in ":*@ \n"):
        raise ValueError(f"login prefix {prefix!r} is empty or has ':', '*', '@' or a space")


def _write_atomically(path: Path, text: str) -> None:
    """Dovecot re-reads a passwd-file whose size or mtime changed; never let it see half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    # The auth process reads the file as Dovecot's internal user.
    partial.chmod(0o644)
    os.replace(partial, path)
