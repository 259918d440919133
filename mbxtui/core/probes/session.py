"""One probe's run: its steps, timed and recorded in order; its deadline; its connection.

The protocol modules describe the conversation; the session turns every way it can end into a
``ProbeResult``: a step that raises is classified, the deadline turns anything after it into
``TIMEOUT``, and the connection is closed whatever happens.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mbxtui.core.descriptors import out_of_descriptors
from mbxtui.core.faults import database_fault
from mbxtui.core.probes.base import (
    Credentials,
    Endpoint,
    ErrorCode,
    Failure,
    ProbeResult,
    Step,
    StepResult,
)
from mbxtui.core.probes.classify import (
    ProbeContext,
    classify,
    internal_error,
    starttls_refused_sentence,
    starttls_unavailable_sentence,
    timeout_failure,
)
from mbxtui.core.probes.tls import BoundedSocket, Deadline, describe_tls, ssl_context
from mbxtui.core.secret_value import CONCEALED, Secret

TLS_MODES = ("implicit", "starttls", "none")
# A step's read may wait up to this share of the timeout past the deadline before the socket's
# timeout is set anew (the watchdog still ends the connection at the deadline).
_TIMEOUT_SLACK = 0.05
# OAUTHBEARER is used only where XOAUTH2 is not offered: every server that knows both takes XOAUTH2.
OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
CREDENTIAL_KINDS = ("password", "oauth2", "none")
# After these the server no longer follows the conversation: a goodbye (LOGOUT, QUIT) would wait
# for an answer that does not come, holding the probe until its deadline.
_CONVERSATION_BROKEN = frozenset(
    {
        ErrorCode.TIMEOUT,
        ErrorCode.PROTOCOL_ERROR,
        ErrorCode.CONNECTION_RESET,
        ErrorCode.TLS_HANDSHAKE,
        ErrorCode.TLS_CERTIFICATE,
        ErrorCode.INTERNAL_ERROR,
    }
)


def oauth_mechanism(offered: list[str] | set[str]) -> str | None:
    """The SASL mechanism an OAuth2 login uses among those the server offers (upper case)."""
    return next((mechanism for mechanism in OAUTH_MECHANISMS if mechanism in offered), None)


class StepFailed(Exception):
    """Raised inside a step when the probe itself finds the step failed (a capability missing, the
    test message not found), with the code and sentence to report."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Stopped(Exception):
    """Ends the conversation after a failed step; the failure is already recorded."""


@dataclass
class StepNote:
    """What a step found, for the step's record (the TLS version, the number of messages...)."""

    detail: str = ""


class ProbeSession:
    """The state of one probe; ``login_required`` is false where authentication ``none`` is
    allowed (SMTP)."""

    def __init__(
        self,
        protocol: str,
        endpoint: Endpoint,
        credentials: Credentials,
        *,
        login_required: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.credentials = credentials
        self.result = ProbeResult(protocol)
        self._concealed: list[Secret] = [credentials.secret] if credentials.secret else []
        self.context = ProbeContext(
            protocol=protocol.upper(),
            endpoint=endpoint,
            login=credentials.username if credentials.kind != "none" else "",
            acting_for=credentials.authorization_identity if credentials.kind != "none" else None,
            secret_name="OAuth2 token" if credentials.kind == "oauth2" else "password",
            concealed=self._concealed,
            token_issued=credentials.kind == "oauth2" and credentials.token_issued,
        )
        self.deadline = Deadline(endpoint.timeout)
        self.connection: socket.socket | None = None
        self._login_required = login_required
        self._timed: tuple[socket.socket | None, float] = (None, 0.0)  # the socket whose timeout was set, when
        self._current_step = Step.CHECK

    def run(self, converse: Callable[[], None]) -> ProbeResult:
        """Run ``converse`` (which opens the connection and takes the steps) and return the
        result; never raises for anything a server or the network does."""
        problem = self._check_settings()
        if problem is not None:
            self._record_failure(Step.CHECK, 0.0, problem[0], problem[1])
            return self.result
        with self.deadline:
            try:
                converse()
            except _Stopped:
                pass
            except Exception as exc:  # raised between steps: a bug in the probe itself
                if database_fault(exc) is not None:  # a cycle's write: the database's fault, not the server's
                    raise
                failure = internal_error(exc, self._current_step, self.context)
                self._record_failure(self._current_step, 0.0, failure.code, failure.message)
            finally:
                if self.connection is not None:
                    self.connection.close()
        return self.result

    @contextlib.contextmanager
    def step(self, step: Step) -> Iterator[StepNote]:
        """Time one step and record it; if it raises, record the classified failure and end the
        conversation."""
        self._current_step = step
        note = StepNote()
        started = time.perf_counter()
        if self.deadline.passed:
            self._stop(step, started, timeout_failure(step, self.context))
        self._bound_connection()
        try:
            yield note
        except StepFailed as failed:
            self._stop(step, started, Failure(step, failed.code, failed.message))
        except Exception as exc:
            if database_fault(exc) is not None:  # the runner says it: no failure of the server's
                raise
            if self.deadline.passed:
                self._stop(step, started, timeout_failure(step, self.context))
            self._stop(step, started, classify(exc, step, self.context))
        self.result.steps.append(
            StepResult(step, True, time.perf_counter() - started, self._conceal(note.detail))
        )

    def open_connection(self) -> socket.socket:
        """Resolve, connect and, for implicit TLS, complete the TLS handshake: the steps every
        protocol starts with. Returns the connected (and for implicit TLS, encrypted) socket."""
        with self.step(Step.RESOLVE) as note:
            addresses = self._resolve()
            note.detail = ", ".join(dict.fromkeys(str(entry[4][0]) for entry in addresses))
        with self.step(Step.CONNECT) as note:
            sock = self._connect(addresses)
            self.use_connection(sock)
            self.deadline.guard(sock)
            note.detail = str(sock.getpeername()[0])
        if self.endpoint.tls == "implicit":
            with self.step(Step.TLS) as note:
                sock = self.tls_context().wrap_socket(sock, server_hostname=self.endpoint.host)
                self.use_connection(sock)
                note.detail = describe_tls(sock)
        return sock

    @property
    def may_say_goodbye(self) -> bool:
        """Whether to end the conversation politely: there is time left, and nothing failed or
        the server refused something in the protocol's own words."""
        failure = self.result.failure
        return not self.deadline.passed and (
            failure is None or failure.code not in _CONVERSATION_BROKEN
        )

    def use_connection(self, sock: socket.socket) -> None:
        """Follow the socket a library now talks through (it changes when TLS starts)."""
        self.connection = sock

    def tls_context(self) -> ssl.SSLContext:
        try:
            return ssl_context(self.endpoint.ca_file)
        except OSError as exc:  # ssl.SSLError is an OSError too
            if out_of_descriptors(exc):
                raise  # classified as this machine's limit, not the CA file's fault
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
            raise StepFailed(
                ErrorCode.TLS_CERTIFICATE,
                f"cannot load the profile's CA file {self.endpoint.ca_file!r} ({reason}): check "
                f"the path and that the file holds PEM certificates",
            ) from exc

    def starttls_unavailable(self) -> StepFailed:
        return StepFailed(
            ErrorCode.STARTTLS_UNAVAILABLE, starttls_unavailable_sentence(self.context)
        )

    def starttls_refused(self, refusal: Exception) -> StepFailed:
        """The server offered STARTTLS, then refused the command (``refusal`` is what the
        library raised with its answer)."""
        return StepFailed(
            ErrorCode.STARTTLS_UNAVAILABLE, starttls_refused_sentence(self.context, refusal)
        )

    def auth_unavailable(self, offered: str) -> StepFailed:
        wanted = "XOAUTH2 or OAUTHBEARER" if self.credentials.kind == "oauth2" else "PLAIN"
        return StepFailed(
            ErrorCode.AUTH_UNAVAILABLE,
            f"the {self.context.protocol} server at {self.context.where} does not offer "
            f"{wanted} authentication (it offers: {offered or 'nothing'}): check the profile's "
            f"authentication and TLS settings, or enable {wanted} on the server",
        )

    def sasl_plain(self) -> Secret:
        """The base64 ``AUTH PLAIN`` response, in UTF-8 so non-ASCII passwords work (a Secret:
        it holds the password)."""
        credentials = self.credentials
        identity = credentials.authorization_identity or ""
        return self._concealed_base64(
            Secret(f"{identity}\0{credentials.username}\0{credentials.secret.reveal()}")
        )

    def sasl_xoauth2(self) -> Secret:
        credentials = self.credentials
        return self._concealed_base64(
            Secret(f"user={credentials.username}\x01auth=Bearer {credentials.secret.reveal()}\x01\x01")
        )

    def sasl_oauthbearer(self) -> Secret:
        """RFC 7628's initial client response: a GS2 header naming the mailbox, then the bearer token."""
        credentials = self.credentials
        identity = credentials.username.replace("=", "=3D").replace(",", "=2C")
        return self._concealed_base64(Secret(
            f"n,a={identity},\x01host={self.endpoint.host}\x01port={self.endpoint.port}\x01"
            f"auth=Bearer {credentials.secret.reveal()}\x01\x01"))

    def sasl_oauth(self, mechanism: str) -> Secret:
        return self.sasl_oauthbearer() if mechanism == "OAUTHBEARER" else self.sasl_xoauth2()

    def note_oauth_challenge(self, challenge: bytes | str) -> None:
        """Keep what a server's OAuth2 error challenge says (RFC 7628 3.2.2: base64 JSON with
        ``status``, ``scope``...), for the sentence of the refusal that follows."""
        if isinstance(challenge, str):
            challenge = challenge.encode("ascii", "replace")
        challenge = challenge.strip()
        try:
            decoded = json.loads(base64.b64decode(challenge, validate=True)) if challenge else None
        except (binascii.Error, ValueError):
            try:  # imaplib hands the challenge over decoded already
                decoded = json.loads(challenge)
            except ValueError:
                return
        if isinstance(decoded, dict):
            self.context.oauth_error.update(
                {key: " ".join(str(value).split())[:200] for key, value in decoded.items()
                 if key in ("status", "scope", "schemes") and isinstance(value, (str, int))})

    def _concealed_base64(self, text: Secret) -> Secret:
        encoded = Secret(base64.b64encode(text.reveal().encode("utf-8")).decode("ascii"))
        self._concealed.append(encoded)
        return encoded

    def _check_settings(self) -> tuple[ErrorCode, str] | None:
        endpoint, credentials = self.endpoint, self.credentials
        if endpoint.tls not in TLS_MODES:
            return (
                ErrorCode.INTERNAL_ERROR,
                f"the TLS mode {endpoint.tls!r} is not one of {', '.join(TLS_MODES)}: fix the "
                f"profile",
            )
        if credentials.kind not in CREDENTIAL_KINDS:
            return (
                ErrorCode.INTERNAL_ERROR,
                f"the authentication {credentials.kind!r} is not one of "
                f"{', '.join(CREDENTIAL_KINDS)}: fix the profile",
            )
        if credentials.kind == "none":
            if self._login_required:
                return (
                    ErrorCode.NO_CREDENTIALS,
                    f"{self.context.protocol} needs a login, but the authentication is none: set "
                    f"the mailbox's or the profile's credentials",
                )
            return None
        if not credentials.username:
            return (
                ErrorCode.NO_CREDENTIALS,
                "no user name is set: set the mailbox's or the profile's user name",
            )
        if not credentials.secret:
            return (
                ErrorCode.NO_CREDENTIALS,
                f"no {self.context.secret_name} is set for {credentials.username!r}: set it for "
                f"the mailbox or the profile",
            )
        return None

    def _resolve(self) -> list[tuple]:
        """``getaddrinfo`` cannot be interrupted, so it runs in its own thread and the probe stops
        waiting for it at the deadline. An IP address needs no lookup, nor the thread."""
        host, port = self.endpoint.address or self.endpoint.host, self.endpoint.port
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        outcome: dict[str, object] = {}

        def look_up() -> None:
            try:
                outcome["addresses"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except Exception as exc:
                outcome["error"] = exc

        lookup = threading.Thread(target=look_up, name=f"resolve {host}", daemon=True)
        lookup.start()
        lookup.join(self.deadline.remaining())
        if lookup.is_alive():
            raise TimeoutError(f"looking up {host!r} took too long")
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        return outcome["addresses"]  # type: ignore[return-value]

    def _connect(self, addresses: list[tuple]) -> socket.socket:
        """Try each address in turn, as ``socket.create_connection`` does, within the deadline."""
        last_error: OSError | None = None
        for family, kind, protocol, _, address in addresses:
            sock = BoundedSocket(family, kind, protocol)
            sock.settimeout(self.deadline.socket_timeout())
            try:
                sock.connect(address)
            except OSError as exc:
                sock.close()
                last_error = exc
                if self.deadline.passed:
                    break
                continue
            return sock
        assert last_error is not None, "getaddrinfo returns at least one address or raises"
        raise last_error

    def _bound_connection(self) -> None:
        """Keep a read from waiting much past the deadline (the watchdog ends the connection at
        the deadline itself): the socket's timeout is set to what is left when it was set longer
        ago than ``_TIMEOUT_SLACK`` of the timeout, or on a new socket. Setting it at every step
        released the interpreter lock each time and waited to get it back behind the other
        cycles (bench/sync.py --profile: 400 calls, 2.6 of the 20 pool threads' 21 s)."""
        if self.connection is None:
            return
        now = time.perf_counter()
        timed_socket, timed_at = self._timed
        if timed_socket is self.connection and now - timed_at < self.endpoint.timeout * _TIMEOUT_SLACK:
            return
        self._timed = (self.connection, now)
        # A library may have closed it after an error; the step then reports that error.
        with contextlib.suppress(OSError):
            self.connection.settimeout(self.deadline.socket_timeout())

    def _stop(self, step: Step, started: float, failure: Failure) -> None:
        self._record_failure(step, time.perf_counter() - started, failure.code, failure.message)
        raise _Stopped

    def _record_failure(self, step: Step, seconds: float, code: ErrorCode, message: str) -> None:
        self.result.steps.append(StepResult(step, False, seconds))
        self.result.failure = Failure(step, code, self._conceal(message))
        if code == ErrorCode.OAUTH_PERMISSION_MISSING and self.credentials.on_token_refused is not None:
            self.credentials.on_token_refused()

    def _conceal(self, text: str) -> str:
        for secret in self._concealed:
            text = text.replace(secret.reveal(), CONCEALED)
        return text
