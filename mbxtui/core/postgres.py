"""The PostgreSQL connection, made to understand the SQL the services share with SQLite.

Driver: psycopg2, peewee's default PostgreSQL driver. Its parameters are bound on the client, as
sqlite3 binds them, so a statement means the same on both backends (psycopg 3 binds on the server,
which must then guess the type of every bare ``?``).

Each connection:
- takes ``?`` placeholders (rewritten to ``%s`` outside quoted text, once per distinct statement);
- sends Python booleans as 0 and 1: flags are INTEGER columns on both backends;
- reads timestamps back as the text SQLite stores (``2026-01-31 12:00:00``), so raw SQL returns
  the same values on both backends (the models parse that text into datetimes);
- checks the server's certificate (``sslmode=verify-full``) when the host is not this machine,
  unless the URL or ``PGSSLMODE`` chooses an sslmode (see ``ssl_parameters``).
"""

from __future__ import annotations

import functools
import os
import re
import select
from typing import Any, Iterable, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

import peewee
import psycopg2
import psycopg2.extensions

from mbxtui.core.endpoint_binding import is_loopback
from mbxtui.core.errors import InvalidInput, one_line
from mbxtui.core.paths import SERVER_SCHEMES

CONNECT_TIMEOUT_SECONDS = 10
# A session that goes silent inside a transaction (its host cut off or paused, a process stopped
# without closing its socket) is ended by the server after this long, its transaction rolled back:
# else it keeps the write lock every writer queues for (dialect.WRITER_LOCK) and every worker on
# every host waits with it, for as long as the server's TCP keepalive takes to notice (2 hours by
# default). No transaction of mbxtui's waits this long between two statements.
IDLE_IN_TRANSACTION_SECONDS = 10
_TIMESTAMP_OID = 1114  # timestamp without time zone
TIMESTAMP_AS_TEXT = psycopg2.extensions.new_type((_TIMESTAMP_OID,), "TIMESTAMP_AS_TEXT", lambda value, cursor: value)


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def check_url(url: str) -> str:
    """``url`` if it names a PostgreSQL database (user, host and port optional), else InvalidInput."""
    shown = shown_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput("db", f"{shown} is not a PostgreSQL URL: {exc}") from None
    if parts.scheme.lower() not in SERVER_SCHEMES:
        raise InvalidInput("db", f"{shown}: the scheme must be postgresql://")
    name = unquote(parts.path.lstrip("/"))
    if not name or "/" in name:
        raise InvalidInput("db", f"{shown} names no database: use postgresql://USER@HOST:PORT/DBNAME")
    if port == 0:
        raise InvalidInput("db", f"{shown}: port 0 is out of range 1-65535")
    if parts.fragment:
        raise InvalidInput("db", f"{shown}: a PostgreSQL URL has no #fragment")
    return url


def _named_hosts(url: str) -> list[str]:
    """The hosts ``url`` names, as libpq reads them: ``?host=``, the URL's host, ``PGHOST``; then
    ``?hostaddr=``, ``PGHOSTADDR``. Empty: libpq's default unix socket."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    named = (query.get("host", [""])[-1] or unquote(parts.hostname or "") or os.environ.get("PGHOST", "")
             or query.get("hostaddr", [""])[-1] or os.environ.get("PGHOSTADDR", ""))
    return [host for host in named.split(",") if host]


def _on_this_machine(host: str) -> bool:
    return host.startswith(("/", "@")) or is_loopback(host)  # a unix socket, or loopback


def ssl_parameters(url: str) -> dict[str, str]:
    """``sslmode=verify-full`` when ``url`` names a host other than this machine (libpq's default,
    ``prefer``, encrypts without checking who answers); nothing when the URL or ``PGSSLMODE`` sets
    an sslmode, or toward loopback and unix sockets."""
    if "sslmode" in parse_qs(urlsplit(url).query, keep_blank_values=True) or os.environ.get("PGSSLMODE"):
        return {}
    if all(_on_this_machine(host) for host in _named_hosts(url)):
        return {}
    return {"sslmode": "verify-full"}


def connect_failure(url: str, message: str) -> str:
    """Why a connection to ``url`` failed, in one sentence: libpq's words, or what to do when the
    default of ``ssl_parameters`` is what refused it."""
    message = one_line(message)
    if not ssl_parameters(url):
        return message
    root = re.search(r'root certificate file "([^"]*)" does not exist', message)
    if root:
        return (f"mbxtui checks the certificate of a server on another host (sslmode=verify-full) and there is no "
                f"root certificate at {root.group(1)}: add sslrootcert=FILE naming the CA's certificate to the URL "
                f"(sslrootcert=system for the system's CAs), or set sslmode there")
    if "does not support SSL" in message:
        return ("the server does not offer SSL, which mbxtui requires of a server on another host "
                "(sslmode=verify-full): enable SSL on the server, or add sslmode=disable to the URL to connect "
                "without it")
    return message


@functools.lru_cache(maxsize=1024)
def pyformat(sql: str) -> str:
    """``sql`` with each ``?`` outside quoted text turned into ``%s`` and each ``%`` doubled; SQL
    without such a ``?`` (peewee's own) is returned as it is."""
    out: list[str] = []
    quote = ""
    found = False
    for char in sql:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "?":
            out.append("%s")
            found = True
            continue
        out.append("%%" if char == "%" else char)
    return "".join(out) if found else sql


def _flags_as_integers(params: Any) -> Any:
    if params is None or isinstance(params, dict):
        return params
    if any(value is True or value is False for value in params):
        return [int(value) if value is True or value is False else value for value in params]
    return params


class QmarkCursor(psycopg2.extensions.cursor):
    def execute(self, query: str, vars: Any = None) -> None:
        if not vars:  # nothing to bind: every % is the statement's own
            return super().execute(query)
        return super().execute(pyformat(query), _flags_as_integers(vars))

    def executemany(self, query: str, vars_list: Iterable[Sequence[Any]]) -> None:
        return super().executemany(pyformat(query), [_flags_as_integers(v) for v in vars_list])


class MbxPostgresqlDatabase(peewee.PostgresqlDatabase):
    dialect_name = "postgresql"
    # The role every connection acts as (``mbxtui --as``; see server_roles.act_as), or None.
    assumed_role: str | None = None

    def _connect(self):
        connection = super()._connect()
        psycopg2.extensions.register_type(TIMESTAMP_AS_TEXT, connection)
        self.assume_role(connection)
        return connection

    def assume_role(self, connection) -> None:
        """SET ROLE on ``connection`` (autocommit: it lasts for the session) when a role is assumed."""
        if self.assumed_role is None:
            return
        with connection.cursor() as cursor:
            cursor.execute("SET ROLE " + psycopg2.extensions.quote_ident(self.assumed_role, connection))


def database_for(url: str) -> MbxPostgresqlDatabase:
    return MbxPostgresqlDatabase(
        url, cursor_factory=QmarkCursor, connect_timeout=CONNECT_TIMEOUT_SECONDS,
        options=f"-c datestyle=ISO -c timezone=UTC -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_SECONDS}s",
        application_name="mbxtui", **ssl_parameters(url),
    )


class Reader:
    """A plain driver connection as the grid reads through it (sqlite3's ``execute`` and
    ``interrupt``), and a fingerprint that changes whenever any transaction commits a change."""

    def __init__(self, connection):
        self._connection = connection

    def execute(self, sql: str, params: Sequence[Any] = ()):
        cursor = self._connection.cursor()
        cursor.execute(sql, params)
        return cursor

    def interrupt(self) -> None:
        self._connection.cancel()

    def fingerprint(self) -> str:
        # The snapshot names the transactions still running and the next one to start: a write
        # changes it when it starts and again when it ends.
        return self.execute("SELECT CAST(pg_current_snapshot() AS text)").fetchone()[0]


# The channel migration 5's triggers NOTIFY when mailboxes or profiles change.
CHANGE_CHANNEL = "mbxtui_mailbox"


class ChangeListener:
    """A connection of its own that LISTENs for the change channel (see ``dialect.change_signal``)."""

    def __init__(self, url: str):
        self._connection = psycopg2.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                            application_name="mbxtui changes", **ssl_parameters(url))
        self._connection.autocommit = True
        with self._connection.cursor() as cursor:
            cursor.execute(f"LISTEN {CHANGE_CHANNEL}")
        self._wake_read, self._wake_write = os.pipe()

    def wait(self, timeout: float) -> bool:
        """True as soon as a change was committed since the last call; False after ``timeout``
        seconds without one, or at once once interrupted."""
        if not self._connection.notifies:
            ready, _, _ = select.select([self._connection, self._wake_read], [], [], timeout)
            if self._wake_read in ready or not ready:
                return False
            self._connection.poll()
        changed = bool(self._connection.notifies)
        self._connection.notifies.clear()
        return changed

    def interrupt(self) -> None:
        os.write(self._wake_write, b"x")

    def close(self) -> None:
        self._connection.close()
        os.close(self._wake_read)
        os.close(self._wake_write)
