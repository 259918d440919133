"""What the console shows of a profile's OAuth2 tokens. Tokens live only in the memory of the process
that fetched them (tokens.py); each process records here, in the database, when it obtained one and
until when it is valid, and its last failure to get one (code, sentence, when), so that a profile's
detail shows what the workers see. Never a token, never a credential.

A busy process writes a profile's row at most once a minute while the outcome stays the same (Google
tokens are fetched per mailbox); a token after a failure, another error code or other settings are
written at once."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any, Callable

import peewee

from mbxtui.core.db import write_transaction
from mbxtui.core.errors import MbxError
from mbxtui.core.models import OAuthTokenState, database, utcnow
from mbxtui.core.oauth.settings import OAuthSettings

RECORD_INTERVAL = 60.0  # seconds between two writes of the same outcome for a profile
TOKEN_FIELDS = ("obtained_on", "expires_on", "error_code", "error_text", "error_on")

log = logging.getLogger(__name__)

_SAME_SETTINGS = ("oauth_token_state.provider = excluded.provider "
                  "AND coalesce(oauth_token_state.tenant, '') = coalesce(excluded.tenant, '') "
                  "AND coalesce(oauth_token_state.client_id, '') = coalesce(excluded.client_id, '')")
_KEPT = "CASE WHEN " + _SAME_SETTINGS + " THEN oauth_token_state.{0} END"
_UPSERT = (
    "INSERT INTO oauth_token_state (profile_id, provider, tenant, client_id, obtained_on, expires_on, "
    "error_code, error_text, error_on) SELECT id, ?, ?, ?, ?, ?, ?, ?, ? FROM profile WHERE id = ? "
    "ON CONFLICT (profile_id) DO UPDATE SET {0}, provider = excluded.provider, tenant = excluded.tenant, "
    "client_id = excluded.client_id")
# A token keeps the last error (it says when it happened) unless it was for other settings; an error
# keeps the last token likewise.
_RECORD_TOKEN = _UPSERT.format(
    "obtained_on = excluded.obtained_on, expires_on = excluded.expires_on, "
    + ", ".join(f"{column} = {_KEPT.format(column)}" for column in ("error_code", "error_text", "error_on")))
_RECORD_ERROR = _UPSERT.format(
    "error_code = excluded.error_code, error_text = excluded.error_text, error_on = excluded.error_on, "
    + ", ".join(f"{column} = {_KEPT.format(column)}" for column in ("obtained_on", "expires_on")))


class StateRecorder:
    """Writes token outcomes to ``oauth_token_state``, rate-limited per profile; a failure to write
    is logged and never stops the token it records."""

    def __init__(self, interval: float = RECORD_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[int, tuple[float, tuple[Any, ...]]] = {}  # profile id -> (written at, outcome)
        self._guard = threading.Lock()

    def _due(self, settings: OAuthSettings, outcome: str) -> bool:
        key = (settings.provider, settings.tenant, settings.client_id, outcome)
        with self._guard:
            now = self._clock()
            last = self._last.get(settings.profile_id)
            if last is not None and last[1] == key and now - last[0] < self.interval:
                return False
            self._last[settings.profile_id] = (now, key)
            return True

    def obtained(self, settings: OAuthSettings, expires_in: float) -> None:
        if self._due(settings, "token"):
            now = utcnow()
            expires = now + timedelta(seconds=int(max(expires_in, 0.0)))
            self._write(_RECORD_TOKEN, settings, [now, expires, None, None, None])

    def failed(self, settings: OAuthSettings, code: str, message: str) -> None:
        if self._due(settings, code):
            self._write(_RECORD_ERROR, settings, [None, None, str(code), message, utcnow()])

    def forget(self) -> None:
        with self._guard:
            self._last.clear()

    def _write(self, sql: str, settings: OAuthSettings, values: list[Any]) -> None:
        if database.obj is None:
            return  # no database in this process (a token fetched on its own)
        # Tokens are fetched on probe threads that otherwise never touch the database: a connection
        # opened here is closed here, not left to the garbage collector after the thread ends (it
        # kept the file's WAL index open, under the name of a file since renamed or deleted).
        opened_here = database.is_closed()
        try:
            with write_transaction():
                database.execute_sql(sql, [settings.provider, settings.tenant, settings.client_id, *values,
                                           settings.profile_id])
        except (peewee.PeeweeException, MbxError) as exc:
            log.warning("could not record the OAuth2 token state of profile %s: %s", settings.profile_id, exc)
            with self._guard:
                self._last.pop(settings.profile_id, None)
        finally:
            if opened_here:
                database.close()


def _moment(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat(sep=" ") if isinstance(value, datetime) else str(value)


def token_view(profile: Any) -> dict[str, Any]:
    """The token state recorded for ``profile`` (a row with its OAuth settings), as ``profile show``
    prints it under ``oauth``: all None until a process fetched a token with these settings."""
    row = OAuthTokenState.get_or_none(OAuthTokenState.profile == profile.id)
    current = (row is not None and row.provider == profile.oauth_provider
               and (row.tenant or "") == (profile.oauth_tenant or "")
               and (row.client_id or "") == (profile.oauth_client_id or ""))
    return {field: (_moment(getattr(row, field)) if field.endswith("_on") else getattr(row, field)) if current
            else None for field in TOKEN_FIELDS}
