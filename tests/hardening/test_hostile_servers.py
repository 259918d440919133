"""Hostile and broken servers: whatever a server does, a probe ends on time with a classified
failure and a sentence naming the server, never raises, keeps its memory bounded and never sends
a credential in clear; and the job runner keeps serving the other mailboxes meanwhile.

Each test starts its own misbehaving server on 127.0.0.1 (``tests.hardening.hostile``); the pool
test adds the real mail lab for the good mailboxes.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from mbxtui.core.jobs import queue as jobs
from mbxtui.core.jobs.runner import MailboxTested, RunSummary
from mbxtui.core.probes import imap, pop3, smtp
from mbxtui.core.probes.base import Credentials, Endpoint, ErrorCode, ProbeResult, Step
from tests.hardening.hostile import (
    ABSENT,
    CUT,
    HOST,
    REFUSE,
    Conversation,
    HostileServer,
    Plan,
    Script,
    TestAuthority,
    imap_dialogue,
    pop3_dialogue,
    secret_leaks,
    self_signed_context,
    smtp_dialogue,
)
from tests.integration.conftest import Org, org, secret_store, secrets_dir  # noqa: F401  (fixtures)

MAILBOX = "alice@hostile.test"
SECRET = "Hostile-Pa55word-7f3b9c1e"
CREDENTIALS = Credentials("password", MAILBOX, SECRET)
PROBE_TIMEOUT = 5.0
SILENCE_TIMEOUT = 1.0
TRICKLE_TIMEOUT = 2.5
TRICKLE_INTERVAL = 1.0  # each byte well within any per-read timeout: only a whole-probe deadline ends it
# What a probe may take beyond its timeout: closing, thread scheduling on a busy 2-core machine.
TIMEOUT_SLACK = 0.5
# A probe that knows it failed does not wait for the timeout (saying goodbye to a server that no
# longer follows the conversation, for instance).
QUICK_FAILURE = 1.5
# Tracing memory makes Python several times slower: a traced probe gets its whole timeout.
TRACED = PROBE_TIMEOUT
# How long a probe may run past its timeout before the test calls it hung.
HANG_MARGIN = 5.0
FLOOD_LIMIT = 64 * 1024 * 1024  # what a flooding server sends at most: far above the memory bound
MEMORY_BOUND = 20 * 1024 * 1024
GARBAGE = b"\x00\xff\xfeSSH-2.0-OpenSSH_9.2 \x1b[31m\x9b\r\n"  # with a terminal escape sequence
TLS_RECORD_HANDSHAKE = b"\x16\x03"  # how a ClientHello starts

LOGIN_COMMANDS = {
    "imap": {"LOGIN", "AUTHENTICATE"},
    "pop3": {"USER", "PASS", "APOP", "AUTH"},
    "smtp": {"AUTH"},
}


@dataclass(frozen=True)
class Protocol:
    name: str
    dialogue: Callable[[Plan], Script]
    greeting: bytes  # how a good greeting starts
    probe: Callable[[Endpoint, Credentials], ProbeResult]

    def __str__(self) -> str:
        return self.name

    def commands_in(self, received: bytes) -> list[str]:
        """The command words of the lines a server received (IMAP lines start with a tag)."""
        position = 1 if self.name == "imap" else 0
        words = (line.split() for line in received.decode("utf-8", "replace").splitlines())
        return [w[position].upper() for w in words if len(w) > position]


PROTOCOLS = [
    Protocol("imap", imap_dialogue, b"* OK ", imap.probe),
    Protocol("pop3", pop3_dialogue, b"+OK ", pop3.probe),
    Protocol("smtp", smtp_dialogue, b"220 ",
             lambda endpoint, credentials: smtp.probe(endpoint, credentials, sender=MAILBOX,
                                                      recipient=MAILBOX)),
]
BY_NAME = {protocol.name: protocol for protocol in PROTOCOLS}


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> TestAuthority:
    return TestAuthority(tmp_path_factory.mktemp("hostile-ca"))


@pytest.fixture(scope="module")
def good_tls(authority: TestAuthority):
    """A certificate the probes trust, for servers that misbehave after the handshake."""
    return authority.server_context()


@dataclass
class Outcome:
    result: ProbeResult
    seconds: float


def run_probe(protocol: Protocol, server: HostileServer, tls: str, *, timeout: float = PROBE_TIMEOUT,
              ca_file: str | None = None) -> Outcome:
    """Probe the server from a thread of its own, so that a hang fails the test instead of
    stopping the suite; whatever escapes the probe fails it too."""
    endpoint = Endpoint(HOST, server.port, tls, timeout=timeout, ca_file=ca_file)
    ended: dict[str, object] = {}

    def probe() -> None:
        try:
            ended["result"] = protocol.probe(endpoint, CREDENTIALS)
        except BaseException as exc:  # noqa: BLE001  (the test reports it)
            ended["escaped"] = exc

    thread = threading.Thread(target=probe, name=f"{protocol} probe", daemon=True)
    started = time.perf_counter()
    thread.start()
    thread.join(timeout + HANG_MARGIN)
    seconds = time.perf_counter() - started
    assert not thread.is_alive(), f"the {protocol} probe still runs after {seconds:.1f} s: it hangs"
    assert "escaped" not in ended, f"an exception escaped the {protocol} probe: {ended['escaped']!r}"
    return Outcome(ended["result"], seconds)  # type: ignore[arg-type]


def assert_classified(outcome: Outcome, server: HostileServer, step: Step, code: ErrorCode, *,
                      within: float = QUICK_FAILURE) -> str:
    """The probe failed at ``step`` with ``code``, ``within`` that many seconds, with a sentence
    naming the server, and the server received no secret in clear. Returns the sentence."""
    result = outcome.result
    failure = result.failure
    assert failure is not None, f"the probe passed against a hostile server: {result.steps}"
    assert (failure.step, failure.code) == (step, code), failure
    assert result.steps[-1].step == step and not result.steps[-1].ok, result.steps
    assert f"{HOST}:{server.port}" in failure.message, failure.message
    assert failure.message[0].islower() and ": " in failure.message, failure.message
    assert outcome.seconds <= within, f"took {outcome.seconds:.2f} s, more than {within} s"
    assert secret_leaks(server.received_in_clear, SECRET) == []
    return failure.message


def peak_memory(action: Callable[[], Outcome]) -> tuple[Outcome, int]:
    """What ``action`` returns and the most memory Python had allocated meanwhile, above what it
    had allocated before."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        outcome = action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return outcome, peak - before


protocols = pytest.mark.parametrize("protocol", PROTOCOLS, ids=str)


# --- the conversation goes wrong before any login ---------------------------------------------------

@protocols
def test_garbage_instead_of_a_greeting(protocol):
    def garbage(conversation: Conversation) -> None:
        conversation.send(GARBAGE)
        conversation.hold()

    with HostileServer(garbage) as server:
        outcome = run_probe(protocol, server, "starttls")

    sentence = assert_classified(outcome, server, Step.GREETING, ErrorCode.PROTOCOL_ERROR)
    assert f"the server's {protocol.name.upper()} port" in sentence
    assert "\x1b" not in sentence


@protocols
def test_garbage_answering_the_first_command(protocol):
    def garbage_then_silence(conversation: Conversation) -> None:
        conversation.send(protocol.greeting + b"hostile server ready\r\n")
        conversation.read_line()  # CAPABILITY, CAPA or EHLO
        conversation.send(GARBAGE)
        conversation.hold()

    with HostileServer(garbage_then_silence) as server:
        outcome = run_probe(protocol, server, "starttls")

    assert_classified(outcome, server, Step.GREETING, ErrorCode.PROTOCOL_ERROR)


@protocols
def test_a_greeting_then_silence_times_out_within_the_timeout(protocol):
    def greet_then_say_nothing(conversation: Conversation) -> None:
        conversation.send(protocol.greeting + b"hostile server ready\r\n")
        conversation.hold()

    with HostileServer(greet_then_say_nothing) as server:
        outcome = run_probe(protocol, server, "starttls", timeout=SILENCE_TIMEOUT)

    sentence = assert_classified(outcome, server, Step.GREETING, ErrorCode.TIMEOUT,
                                 within=SILENCE_TIMEOUT + TIMEOUT_SLACK)
    assert outcome.seconds >= SILENCE_TIMEOUT * 0.9
    assert outcome.result.failure.transient
    assert "the greeting" in sentence and "1 s timeout" in sentence


@protocols
def test_one_byte_per_second_cannot_stretch_the_timeout(protocol):
    def trickle(conversation: Conversation) -> None:
        conversation.trickle(protocol.greeting + b"x" * 100, TRICKLE_INTERVAL)

    with HostileServer(trickle) as server:
        outcome = run_probe(protocol, server, "starttls", timeout=TRICKLE_TIMEOUT)
        sent = server.sent

    assert_classified(outcome, server, Step.GREETING, ErrorCode.TIMEOUT,
                      within=TRICKLE_TIMEOUT + TIMEOUT_SLACK)
    assert sent >= 2, "the server kept the probe reading: its bytes came in time for every read"


@protocols
def test_an_endless_response_line_keeps_memory_bounded(protocol):
    def endless_line(conversation: Conversation) -> None:
        conversation.flood(protocol.greeting, b"A" * 65536, FLOOD_LIMIT)

    with HostileServer(endless_line) as server:
        outcome, peak = peak_memory(lambda: run_probe(protocol, server, "starttls"))

    assert_classified(outcome, server, Step.GREETING, ErrorCode.PROTOCOL_ERROR, within=TRACED)
    assert peak < MEMORY_BOUND, f"the probe held {peak / 2**20:.0f} MiB of an endless line"


@protocols
def test_an_endless_multiline_response_keeps_memory_bounded(protocol):
    prefix, line = {
        "imap": (b"", b"* CAPABILITY IMAP4rev1 X-ENDLESS\r\n"),
        "pop3": (b"+OK capabilities follow\r\n", b"X-CAPABILITY\r\n"),
        "smtp": (b"250-hostile.test\r\n", b"250-X-EXTENSION\r\n"),
    }[protocol.name]

    def endless_answer(conversation: Conversation) -> None:
        conversation.send(protocol.greeting + b"hostile server ready\r\n")
        conversation.read_line()  # CAPABILITY, CAPA or EHLO
        conversation.flood(prefix, line * 4096, FLOOD_LIMIT)

    with HostileServer(endless_answer) as server:
        outcome, peak = peak_memory(lambda: run_probe(protocol, server, "starttls"))

    assert_classified(outcome, server, Step.GREETING, ErrorCode.PROTOCOL_ERROR, within=TRACED)
    assert peak < MEMORY_BOUND, f"the probe held {peak / 2**20:.0f} MiB of an endless answer"


def test_an_imap_literal_announcing_a_gigabyte_keeps_memory_bounded():
    def huge_literal(conversation: Conversation) -> None:
        conversation.flood(b"* OK [ALERT] {1000000000}\r\n", b"A" * 65536, FLOOD_LIMIT)

    with HostileServer(huge_literal) as server:
        outcome, peak = peak_memory(lambda: run_probe(BY_NAME["imap"], server, "starttls"))

    assert_classified(outcome, server, Step.GREETING, ErrorCode.PROTOCOL_ERROR, within=TRACED)
    assert peak < MEMORY_BOUND, f"the probe held {peak / 2**20:.0f} MiB for one literal"


# --- the connection is cut in the middle of a step --------------------------------------------------

def _read_client_hello_then(end: str) -> Script:
    def play(conversation: Conversation) -> None:
        conversation.read_some()
        conversation.reset() if end == "reset" else conversation.hang_up()

    return play


@protocols
@pytest.mark.parametrize("end", ["close", "reset"])
@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_a_disconnect_in_the_middle_of_the_tls_handshake(protocol, tls, end, authority):
    if tls == "implicit":
        script = _read_client_hello_then(end)
    else:
        script = protocol.dialogue(Plan(starttls=CUT))

    with HostileServer(script) as server:
        outcome = run_probe(protocol, server, tls, ca_file=authority.ca_file)

    sentence = assert_classified(outcome, server, Step.TLS, ErrorCode.TLS_HANDSHAKE)
    assert "TLS handshake" in sentence
    assert TLS_RECORD_HANDSHAKE in server.received_in_clear, "the client never started TLS"


@protocols
def test_a_disconnect_after_the_login_command(protocol, authority, good_tls):
    with HostileServer(protocol.dialogue(Plan(auth=CUT)), implicit_tls=good_tls) as server:
        outcome = run_probe(protocol, server, "implicit", ca_file=authority.ca_file)

    sentence = assert_classified(outcome, server, Step.AUTHENTICATE, ErrorCode.CONNECTION_RESET)
    assert outcome.result.failure.transient
    assert "closed the connection during the login" in sentence
    assert LOGIN_COMMANDS[protocol.name] & set(protocol.commands_in(server.received_decrypted))


def test_a_disconnect_in_the_middle_of_data(authority, good_tls):
    protocol = BY_NAME["smtp"]
    with HostileServer(protocol.dialogue(Plan(data=CUT)), implicit_tls=good_tls) as server:
        outcome = run_probe(protocol, server, "implicit", ca_file=authority.ca_file)

    sentence = assert_classified(outcome, server, Step.SEND, ErrorCode.CONNECTION_RESET)
    assert outcome.result.failure.transient
    assert outcome.result.message_id is None
    assert "closed the connection during sending the test message" in sentence
    assert "DATA" in protocol.commands_in(server.received_decrypted)


# --- certificates -----------------------------------------------------------------------------------

CERTIFICATES = {
    "expired": "has expired",
    "other host": "for another host name",
    "self-signed": "unknown authority (self-signed certificate)",
}


@pytest.fixture(scope="module")
def bad_certificates(authority: TestAuthority, tmp_path_factory: pytest.TempPathFactory):
    return {
        "expired": authority.expired_context(),
        "other host": authority.other_host_context(),
        "self-signed": self_signed_context(tmp_path_factory.mktemp("self-signed")),
    }


@protocols
@pytest.mark.parametrize("tls", ["implicit", "starttls"])
@pytest.mark.parametrize("certificate", list(CERTIFICATES))
def test_a_bad_certificate_is_refused_before_any_login(protocol, tls, certificate, authority,
                                                       bad_certificates):
    context = bad_certificates[certificate]
    if tls == "implicit":
        server = HostileServer(protocol.dialogue(Plan()), implicit_tls=context)
    else:
        server = HostileServer(protocol.dialogue(Plan(tls=context)))
    # The self-signed certificate is checked against the system's CAs, the others against the
    # profile's CA file, which signed them.
    ca_file = None if certificate == "self-signed" else authority.ca_file

    with server:
        outcome = run_probe(protocol, server, tls, ca_file=ca_file)

    sentence = assert_classified(outcome, server, Step.TLS, ErrorCode.TLS_CERTIFICATE)
    assert CERTIFICATES[certificate] in sentence
    assert server.received_decrypted == b""


# --- STARTTLS refused, and no fallback to a login in clear ------------------------------------------

REFUSED = "offers STARTTLS but refused it"


@pytest.mark.parametrize(("name", "refusal", "code", "words"), [
    ("imap", None, ErrorCode.STARTTLS_UNAVAILABLE, REFUSED),
    ("imap", "{tag} BAD STARTTLS disabled", ErrorCode.STARTTLS_UNAVAILABLE, "STARTTLS disabled"),
    ("pop3", None, ErrorCode.STARTTLS_UNAVAILABLE, "-ERR STLS is not available now"),
    # RFC 3207: "454 TLS not available due to temporary reason", retried like any SMTP 4xx (R14).
    ("smtp", None, ErrorCode.SMTP_TEMPORARY, "temporarily refused the TLS handshake (454 4.7.0"),
    ("smtp", "554 5.7.3 TLS is not for you", ErrorCode.STARTTLS_UNAVAILABLE, "554 5.7.3 TLS is not for you"),
], ids=["imap NO", "imap BAD", "pop3 -ERR", "smtp 454", "smtp 554"])
def test_starttls_offered_then_refused(name, refusal, code, words):
    protocol = BY_NAME[name]
    with HostileServer(protocol.dialogue(Plan(starttls=REFUSE, refusal=refusal))) as server:
        outcome = run_probe(protocol, server, "starttls")

    sentence = assert_classified(outcome, server, Step.TLS, code)
    assert words in sentence
    if code == ErrorCode.STARTTLS_UNAVAILABLE:
        assert REFUSED in sentence and "nothing was sent" in sentence
    assert not LOGIN_COMMANDS[name] & set(protocol.commands_in(server.received_in_clear))


@protocols
@pytest.mark.parametrize("starttls", [REFUSE, ABSENT, CUT, "bad certificate"])
def test_no_fallback_to_a_login_in_clear_when_starttls_fails(protocol, starttls, authority,
                                                            bad_certificates):
    """The server offers plaintext AUTH all along and accepts any login: a probe that logged in
    anyway, or reconnected without TLS, would hand it the password."""
    if starttls == "bad certificate":
        plan = Plan(tls=bad_certificates["other host"])
    else:
        plan = Plan(starttls=starttls)

    with HostileServer(protocol.dialogue(plan)) as server:
        outcome = run_probe(protocol, server, "starttls", ca_file=authority.ca_file)

    result = outcome.result
    assert result.failure is not None and result.failure.step == Step.TLS, result.failure
    assert result.failure.code != ErrorCode.INTERNAL_ERROR, result.failure
    assert Step.AUTHENTICATE not in [step.step for step in result.steps]
    assert len(server.conversations) == 1, "the probe connected again"
    assert not LOGIN_COMMANDS[protocol.name] & set(protocol.commands_in(server.received_in_clear))
    assert secret_leaks(server.received_in_clear, SECRET) == []


@pytest.mark.parametrize(("protocol", "form"), [
    (BY_NAME["imap"], "base64"),  # AUTHENTICATE PLAIN
    (BY_NAME["pop3"], "as is"),  # PASS
    (BY_NAME["smtp"], "base64"),  # AUTH PLAIN
], ids=str)
def test_the_recorder_sees_a_password_sent_in_clear(protocol, form):
    """What proves the tests above: with TLS mode none, which the profile must say explicitly,
    the same server receives the password, and the recorder finds it."""
    with HostileServer(protocol.dialogue(Plan(starttls=ABSENT))) as server:
        outcome = run_probe(protocol, server, "none")

    assert outcome.result.ok, outcome.result.failure
    leaks = secret_leaks(server.received_in_clear, SECRET)
    assert leaks and all(leak.startswith(form) for leak in leaks), leaks


# --- the worker pool ---------------------------------------------------------------------------------

POOL_TIMEOUT = 2  # seconds: the hostile profiles' timeout
ALICE, BOB, JOSE = "alice@example.test", "bob@example.test", "jose@example.test"


def _silence(conversation: Conversation) -> None:
    conversation.hold()


def _trickle(conversation: Conversation) -> None:
    conversation.trickle(b"* OK " + b"x" * 100, TRICKLE_INTERVAL)


def _flood(conversation: Conversation) -> None:
    conversation.flood(b"220 ", b"A" * 65536, FLOOD_LIMIT)


@dataclass(frozen=True)
class HostileProfile:
    """A profile's two misbehaving servers (given a certificate the probes trust), its TLS mode,
    and the error code each direction's probe must end with."""

    incoming: Callable[[ssl.SSLContext], HostileServer]
    outgoing: Callable[[ssl.SSLContext], HostileServer]
    tls: str
    incoming_code: ErrorCode
    outgoing_code: ErrorCode


HOSTILE_PROFILES = {
    "silent": HostileProfile(lambda _: HostileServer(_silence), lambda _: HostileServer(_silence),
                             "starttls", ErrorCode.TIMEOUT, ErrorCode.TIMEOUT),
    "trickling": HostileProfile(lambda _: HostileServer(_trickle), lambda _: HostileServer(_trickle),
                                "starttls", ErrorCode.TIMEOUT, ErrorCode.TIMEOUT),
    "flooding": HostileProfile(lambda _: HostileServer(_flood), lambda _: HostileServer(_flood),
                               "starttls", ErrorCode.PROTOCOL_ERROR, ErrorCode.PROTOCOL_ERROR),
    "cutting": HostileProfile(
        lambda tls: HostileServer(imap_dialogue(Plan(auth=CUT)), implicit_tls=tls),
        lambda tls: HostileServer(smtp_dialogue(Plan(data=CUT)), implicit_tls=tls),
        "implicit", ErrorCode.CONNECTION_RESET, ErrorCode.CONNECTION_RESET),
    "refusing": HostileProfile(
        lambda _: HostileServer(imap_dialogue(Plan(starttls=REFUSE))),
        lambda _: HostileServer(smtp_dialogue(Plan(starttls=REFUSE))),
        "starttls", ErrorCode.STARTTLS_UNAVAILABLE, ErrorCode.SMTP_TEMPORARY),
}
# The queue's order (mailbox creation order): the good mailboxes come after the four that hold a
# thread for the whole timeout, and all fit in the pool at once.
POOL_QUEUE = [
    "silent0", "trickling0", "silent1", "trickling1", ALICE,
    "flooding0", "cutting0", "refusing0", BOB,
    "flooding1", "cutting1", "refusing1", JOSE,
]
POOL_THREADS = 7


def _pool_password(login: str) -> str:
    return f"Pool-Pa55word-{login}-4d2a"


@pytest.mark.servers
def test_the_worker_pool_keeps_serving_good_mailboxes_beside_hostile_servers(
        org: Org, authority: TestAuthority, good_tls: ssl.SSLContext) -> None:  # noqa: F811
    org.profile("lab")
    with contextlib.ExitStack() as stack:
        servers = {name: (stack.enter_context(shape.incoming(good_tls)),
                          stack.enter_context(shape.outgoing(good_tls)))
                   for name, shape in HOSTILE_PROFILES.items()}
        for name, (incoming, outgoing) in servers.items():
            shape = HOSTILE_PROFILES[name]
            org.profile(name, incoming_port=incoming.port, outgoing_port=outgoing.port,
                        incoming_tls=shape.tls, outgoing_tls=shape.tls, ca_file=authority.ca_file,
                        timeout_seconds=POOL_TIMEOUT, verify_delivery=False)
        hostile: dict[str, str] = {}  # email -> profile
        emails = []
        for entry in POOL_QUEUE:
            if "@" in entry:
                org.mailbox(entry, "lab")
                emails.append(entry)
                continue
            email = f"{entry}@example.test"
            hostile[email] = entry.rstrip("0123456789")
            org.mailbox(email, hostile[email], password=_pool_password(entry))
            emails.append(email)

        finished_at: dict[str, float] = {}
        summary, seconds = _run_bounded(org, emails, finished_at)
        received_in_clear = {name: incoming.received_in_clear + outgoing.received_in_clear
                             for name, (incoming, outgoing) in servers.items()}

    # Each mailbox's two directions are tested one after the other, each within the timeout.
    assert seconds < 2 * POOL_TIMEOUT + 3.0, f"the run took {seconds:.1f} s"
    assert summary.tested == len(emails)
    for email in (ALICE, BOB, JOSE):
        row = org.row(email)
        assert (row.overall_status, row.incoming_enabled, row.outgoing_enabled) == ("success", True, True), \
            (email, row.last_error_code, row.last_error_text)
        # Served while the silent and trickling servers still held their threads.
        assert finished_at[email] < POOL_TIMEOUT, f"{email} waited {finished_at[email]:.1f} s"
    for email, name in hostile.items():
        row = org.row(email)
        shape = HOSTILE_PROFILES[name]
        assert (row.overall_status, row.incoming_enabled, row.outgoing_enabled) == ("failure", False, False)
        assert _failure_codes(row.id) == {"incoming": shape.incoming_code.value,
                                          "outgoing": shape.outgoing_code.value}, email
        assert f"{HOST}:" in row.last_error_text, row.last_error_text
        login = email.split("@")[0]
        assert secret_leaks(received_in_clear[name], _pool_password(login)) == [], email


def _failure_codes(mailbox_id: int) -> dict[str, str]:
    result = jobs.last_result(mailbox_id)
    assert result is not None, "no finished test"
    return {direction: probe["failure"]["code"]
            for direction, probe in result.directions.items() if probe["failure"]}


def _run_bounded(org: Org, emails: list[str], finished_at: dict[str, float]) -> tuple[RunSummary, float]:
    """Schedule Test & Enable for ``emails`` and run the job runner, in a thread of its own, until
    nothing is due; ``finished_at`` gets the seconds at which each mailbox's result was written.
    Fails the test if the runner does not end in time."""
    org.schedule(*emails)
    started = time.perf_counter()

    def note(events: list[MailboxTested]) -> None:
        for event in events:
            finished_at[event.email] = time.perf_counter() - started

    runner = org.runner(threads=POOL_THREADS, on_tested=note)
    ended: dict[str, object] = {}

    def run() -> None:
        try:
            ended["summary"] = runner.run()
        except BaseException as exc:  # noqa: BLE001  (the test reports it)
            ended["escaped"] = exc

    thread = threading.Thread(target=run, name="test runner", daemon=True)
    thread.start()
    thread.join(2 * POOL_TIMEOUT + HANG_MARGIN)
    seconds = time.perf_counter() - started
    assert not thread.is_alive(), f"the job runner still runs after {seconds:.1f} s"
    assert "escaped" not in ended, f"the job runner raised {ended['escaped']!r}"
    return ended["summary"], seconds  # type: ignore[return-value]
