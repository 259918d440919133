"""What a command runs with: the open database, the acting operator, the secret store; and the
inputs several groups read the same way (a secret on standard input, a selection of mailboxes)."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mbxtui.cli.options import UsageError
from mbxtui.cli.output import safe

if TYPE_CHECKING:
    import peewee

    from mbxtui.core.permissions import Actor
    from mbxtui.core.secrets import SecretStore
    from mbxtui.core.services.selection import Selection

log = logging.getLogger(__name__)


class Context:
    """What a command runs with: the open database, the acting operator, the secret store."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.db_path: Path | str | None = None
        self._actor: Actor | None = None
        self._store: SecretStore | None = None

    def database_path(self) -> Path | str:
        """Where the database is: ``--db``, else $MBXTUI_DB, else the file in the user data dir."""
        from mbxtui.core import paths

        return paths.database_location(self.args.db) if self.args.db else paths.default_database()

    def open_database(self, *, warn: bool = True) -> peewee.Database:
        """``warn``: print the storage warnings on stderr now (the console prints them once it closes:
        while it runs, the terminal is its own)."""
        from mbxtui.core import db, paths

        path = self.database_path()
        if isinstance(path, Path) and path.parent == paths.data_dir():
            paths.private_data_dir()  # refused when another user's: the database would be made there
        self.db_path = path
        database = db.open_database(path)
        if warn:
            self.warn_about_storage()
        return database

    def warn_about_storage(self) -> None:
        """Who else may read or write the open database and its directories, on stderr."""
        from mbxtui.core import paths

        for warning in paths.storage_warnings(self.db_path, paths.data_dir()):
            print(f"mbxtui: warning: {safe(warning)}", file=sys.stderr)
            log.warning("warning: %s", warning)

    @property
    def actor(self) -> Actor:
        if self._actor is None:
            from mbxtui.core import server_roles
            from mbxtui.core.services import operators

            actor = operators.current_actor(as_login=self.args.as_login)
            server_roles.assume(actor)
            self._actor = actor
        return self._actor

    @property
    def store(self) -> SecretStore:
        if self._store is None:
            self._store = open_secret_store()
        return self._store


def open_secret_store() -> SecretStore:
    """The keyring; when only the encrypted file is available, unlock it with the master password
    from MBXTUI_MASTER_PASSWORD or asked for on the terminal (never a prompt of another library)."""
    from mbxtui.core import paths
    from mbxtui.core.secrets import MASTER_PASSWORD_ENV, SecretsError, SecretStore

    store = SecretStore.open(paths.private_data_dir())
    if store.warning:
        print(f"mbxtui: warning: {safe(store.warning)}", file=sys.stderr)
        log.warning("%s", store.warning)
    if not store.needs_master_password:
        return store
    password = os.environ.get(MASTER_PASSWORD_ENV)
    if password is None:
        if not _has_terminal():
            raise SecretsError(
                f"no OS keyring is available and {store.backend_name} is locked: set {MASTER_PASSWORD_ENV} "
                "or run this command from a terminal to be asked for the master password"
            )
        prompt = f"Master password for {safe(store.backend_name)}: "
        if store.creating_new_file:
            print(f"mbxtui: no OS keyring is available; secrets will be kept in {safe(store.backend_name)}, "
                  "encrypted with a master password you choose now.", file=sys.stderr)
            password = getpass.getpass("New master password: ")
            if password != getpass.getpass("Repeat the master password: "):
                raise SecretsError("the two master passwords differ; nothing was stored")
        else:
            password = getpass.getpass(prompt)
    store.unlock(password)
    if store.notice:
        print(f"mbxtui: {safe(store.notice)}", file=sys.stderr)
    return store


def _has_terminal() -> bool:
    try:
        with open("/dev/tty"):
            return True
    except OSError:
        return False


def read_secret(args: argparse.Namespace, what: str) -> str:
    """The password or token given on standard input (never on the command line)."""
    from mbxtui.core.services.credentials import check_secret, read_secret_line

    if not args.password_stdin:
        raise UsageError(f"give the {what} on standard input with --password-stdin (never on the command line)")
    return check_secret(what, read_secret_line(sys.stdin))


def selection(args: argparse.Namespace) -> Selection:
    """The mailboxes a bulk command names: addresses, a view (with a filter), or a profile's."""
    from mbxtui.core.services.selection import Selection

    emails = getattr(args, "emails", None) or []
    view = getattr(args, "view", None)
    filter_text = getattr(args, "filter", None)
    profile = getattr(args, "profile_all", None)
    given = sum(bool(x) for x in (emails, view or filter_text, profile))
    if given != 1:
        raise UsageError("name the mailboxes: EMAIL..., or --view/--filter" + (", or --profile" if hasattr(args, "profile_all") else ""))
    if emails:
        return Selection.of_emails(emails)
    if profile:
        return Selection.of_profile(profile)
    return Selection.of_view(view, filter_text)
