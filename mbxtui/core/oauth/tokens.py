"""The access tokens of a process: one per profile, client settings, credential and subject,
fetched once and shared by every thread, renewed before it expires, kept in memory only.

Threads asking for the same token while it is fetched wait for that one request rather than
sending their own; a failure is remembered for a few seconds, so that a profile's hundred
mailboxes tested at once while the provider is down send it one request, not a hundred. Each token
obtained and each failure is recorded for the console (token_state.py), without the token.

A token's life is counted on the monotonic clock from when its answer came (``expires_in``), never
as a moment of the wall clock: a wall clock set 3 h back would otherwise use a token 3 h after it
expired, and one set forward would throw away every token at once. Only what the console shows
(token_state.py's "expires") is a moment of the wall clock."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Callable

from mbxtui.core import clock
from mbxtui.core.oauth.settings import OAuthSettings
from mbxtui.core.oauth.token_state import StateRecorder
from mbxtui.core.probes.base import ErrorCode
from mbxtui.core.secret_value import Secret

RENEW_BEFORE = 300.0  # seconds before expiry a token is renewed (half its life, for shorter ones)
FAILURE_REMEMBERED = 5.0


class TokenError(Exception):
    """No token: ``code`` classifies it (R14), ``message`` says what to do."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class IssuedToken:
    value: Secret
    expires_in: float  # seconds from when it was issued


Fetch = Callable[[OAuthSettings, str, Secret, "str | None"], IssuedToken]


def _fetch_from_provider(settings: OAuthSettings, kind: str, credential: Secret, subject: str | None) -> IssuedToken:
    from mbxtui.core.oauth import providers  # the HTTP libraries load on the first token, not with the CLI

    return providers.fetch(settings, kind, credential, subject)


@dataclass(frozen=True)
class _Key:
    settings: OAuthSettings
    kind: str
    credential_digest: str  # the credential itself stays out of the key: a key may be shown in a debugger
    subject: str | None


@dataclass
class _Entry:
    token: Secret | None = None
    renew_at: float = 0.0  # clock.monotonic(): a jump of the wall clock neither keeps nor drops a token
    failure: TokenError | None = None
    failed_until: float = 0.0


@dataclass(frozen=True)
class _Outcome:
    token: Secret | None = None
    failure: TokenError | None = None
    fetched: bool = False  # the provider was asked just now: an outcome to record
    lifetime: float = 0.0


class TokenCache:
    def __init__(self, fetch: Fetch = _fetch_from_provider, recorder: StateRecorder | None = None) -> None:
        self._fetch = fetch
        self._recorder = recorder
        self._entries: dict[_Key, _Entry] = {}
        self._locks: dict[_Key, threading.Lock] = {}
        self._guard = threading.Lock()

    def token(self, settings: OAuthSettings, kind: str, credential: Secret, subject: str | None = None) -> Secret:
        """A valid access token; raises ``TokenError`` when the provider gives none."""
        outcome = self._token(settings, kind, credential, subject)
        # Recorded once the threads waiting for the same token have it: the write may wait on the database.
        if outcome.fetched and self._recorder is not None:
            if outcome.failure is not None:
                self._recorder.failed(settings, outcome.failure.code, outcome.failure.message)
            else:
                self._recorder.obtained(settings, outcome.lifetime)
        if outcome.failure is not None:
            raise outcome.failure
        assert outcome.token is not None
        return outcome.token

    def _token(self, settings: OAuthSettings, kind: str, credential: Secret, subject: str | None) -> _Outcome:
        key = _key(settings, kind, credential, subject)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            entry = self._entries.setdefault(key, _Entry())
            now = clock.monotonic()
            if entry.token is not None and now < entry.renew_at:
                return _Outcome(token=entry.token)
            if entry.failure is not None and now < entry.failed_until:
                return _Outcome(failure=entry.failure)
            try:
                issued = self._fetch(settings, kind, credential, subject)
            except TokenError as failure:
                entry.failure, entry.failed_until = failure, clock.monotonic() + FAILURE_REMEMBERED
                return _Outcome(failure=failure, fetched=True)
            lifetime = max(issued.expires_in, 0.0)
            entry.token = issued.value
            entry.renew_at = clock.monotonic() + lifetime - min(RENEW_BEFORE, lifetime / 2)
            entry.failure = None
            return _Outcome(token=entry.token, fetched=True, lifetime=lifetime)

    def discard(self, settings: OAuthSettings, kind: str, credential: Secret, subject: str | None,
                token: Secret) -> None:
        """Forget ``token`` (a mail server refused it): the next request fetches a new one. A token
        renewed meanwhile by another thread is kept."""
        key = _key(settings, kind, credential, subject)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            entry = self._entries.get(key)
            if entry is not None and entry.token is not None and entry.token.reveal() == token.reveal():
                entry.token, entry.renew_at = None, 0.0

    def forget(self) -> None:
        """Drop every token and remembered failure (a test starting afresh)."""
        with self._guard:
            self._entries.clear()
            self._locks.clear()
        if self._recorder is not None:
            self._recorder.forget()


def _key(settings: OAuthSettings, kind: str, credential: Secret, subject: str | None) -> _Key:
    return _Key(settings, kind, hashlib.sha256(credential.reveal().encode("utf-8")).hexdigest(), subject)


_process_cache = TokenCache(recorder=StateRecorder())


def token(settings: OAuthSettings, kind: str, credential: Secret, subject: str | None = None) -> Secret:
    """The process's token for this profile's client (and ``subject``, for Google)."""
    return _process_cache.token(settings, kind, credential, subject)


def discard(settings: OAuthSettings, kind: str, credential: Secret, subject: str | None, token: Secret) -> None:
    _process_cache.discard(settings, kind, credential, subject, token)


def forget_tokens() -> None:
    _process_cache.forget()
