"""Secrets and access, proved.

1. Secrets never leak. Distinctive passwords and tokens (non-ASCII among them) go in through every
   door: the command line's standard input and the console's masked fields. They are used against
   the real mail lab (right and wrong), refused in hostile positions, and echoed back by careless
   servers; every command and screen that touches them runs. Then the database, its WAL and SHM,
   every other file of the data directory, every output and every screenshot are searched for them
   in every form they could take (raw, UTF-16, JSON-escaped, hex, inside the base64 of a SASL
   PLAIN or XOAUTH2 string, cut off or with its whitespace squeezed).
2. The data directory and the database files are created owner-only under a permissive umask, and
   a database other users can read is warned about.
3. Every mutating service refuses an operator whose role does not allow it, names the roles that
   may, and writes nothing: a table of every such service by every role, kept complete by a test
   that looks for services missing from it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import html
import importlib
import inspect
import io
import json
import os
import pkgutil
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, Static

import mbxtui.core.services
from mbxtui import __version__, cli, logs
from mbxtui.core import db, profile_check
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import AlertLevel, Role
from mbxtui.core.errors import PermissionDenied
from mbxtui.core.jobs import queue as jobs
from mbxtui.core.models import Alert, Mailbox, database
from mbxtui.core.permissions import GRANTS, Actor, Permission
from mbxtui.core.secrets import SECRETS_FILE_NAME, SecretStore
from mbxtui.core.services import (
    alerts, bulk, credentials, enablement, imports, mailbox_views, mailboxes, operators, outgoing, profiles,
    settings, users,
)
from mbxtui.core.oauth import delegated
from mbxtui.core.services import authorizations
from mbxtui.core.services.alerts import raise_alert
from mbxtui.core.services.selection import Selection
from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen, MailboxEditScreen
from mbxtui.tui.screens.profiles import ProfileDetailScreen, ProfileFormScreen
from tests.backends import Databases, dump
from tests.lab.oauth_fixtures import lab_certificates, module_provider  # noqa: F401  (fixtures)
from tests.lab.oauth_provider import OAuthProvider
from tests.core.support import snapshot
from tests.hardening.hostile import MOST_COMMANDS, Conversation, HostileServer
from tests.integration.conftest import (  # noqa: F401  (fixtures)
    CLI_TIMEOUT, MASTER_PASSWORD, REPO_ROOT, Org, org, secret_store, secrets_dir,
)
from tests.tui.conftest import console as crash_console, console_env, unlocked_store  # noqa: F401  (fixtures)

# --- finding a secret wherever it could have gone -------------------------------------------------

RUN = 8  # this many consecutive characters of a secret, found anywhere, count as a leak


@dataclass(frozen=True)
class Secret:
    """``runs``: also look for runs of RUN characters (a cut-off or whitespace-squeezed copy);
    only for values too distinctive to occur in paths or messages by chance."""

    label: str
    value: str
    runs: bool = True


@dataclass(frozen=True)
class Leak:
    secret: str
    form: str
    where: str

    def __str__(self) -> str:
        return f"{self.secret} ({self.form}) in {self.where}"


def base64_cores(data: bytes) -> list[bytes]:
    """The base64 of ``data`` wherever it sits inside a longer base64 string (a SASL PLAIN or
    XOAUTH2 response, say): one core per alignment, leaving out the 4-character groups that mix
    in the bytes around it."""
    cores = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data)
        core = encoded[4 if shift else 0:(shift + len(data)) // 3 * 4]
        if len(core) >= RUN:
            cores.append(core)
    return cores


def leak_patterns(secret: Secret) -> dict[bytes, str]:
    """Every form of the secret to look for, with what it is."""
    patterns: dict[bytes, str] = {}

    def add(pattern: bytes, form: str) -> None:
        patterns.setdefault(pattern, form)

    raw = secret.value.encode()
    add(raw, "raw UTF-8")
    add(secret.value.encode("utf-16-le"), "UTF-16")
    add(json.dumps(secret.value)[1:-1].encode(), "JSON-escaped")
    add(raw.hex().encode(), "hex")
    add(raw.hex().upper().encode(), "hex")
    for core in base64_cores(raw):
        add(core, "base64, as inside a SASL PLAIN or XOAUTH2 string")
    if secret.runs:
        for core in base64_cores(raw[:9]):
            add(core, "base64 of its first characters, as in a cut-off SASL string")
        for text in dict.fromkeys((secret.value, " ".join(secret.value.split()))):
            for start in range(0, len(text), RUN):
                run = text[start:start + RUN] if start + RUN <= len(text) else text[-RUN:]
                add(run.encode(), "a run of its characters")
                add(json.dumps(run)[1:-1].encode(), "a JSON-escaped run of its characters")
    return patterns


def find_leaks(secrets: Sequence[Secret], sources: Mapping[str, bytes]) -> list[Leak]:
    leaks = []
    for secret in secrets:
        for pattern, form in leak_patterns(secret).items():
            leaks += [Leak(secret.label, form, where) for where, data in sources.items() if pattern in data]
    return leaks


def files_under(directory: Path, *, except_names: Sequence[str] = ()) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in sorted(directory.rglob("*"))
            if path.is_file() and path.name not in except_names}


def database_files(db_path: Path | str) -> dict[str, bytes]:
    """The database file, its write-ahead log and its shared-memory index, as they are on disk (on
    PostgreSQL: every row of every table)."""
    if isinstance(db_path, str):
        return {db_path: "\n".join(dump(db_path)).encode()}
    return {str(path): path.read_bytes()
            for path in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")) if path.exists()}


def svg_sources(name: str, svg: str) -> dict[str, bytes]:
    """A screenshot as it is, and as the text it shows (tags dropped, entities decoded)."""
    shown = html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")
    return {f"{name} (SVG)": svg.encode(), f"{name} (text shown)": shown.encode()}


def assert_no_leaks(secrets: Sequence[Secret], sources: Mapping[str, bytes]) -> None:
    leaks = find_leaks(secrets, sources)
    assert not leaks, "secrets leaked:\n" + "\n".join(f"  {leak}" for leak in leaks[:40])


PLANTED = Secret("planted secret", "Plänted-Sécret  ☂ x9Kq2")
PLANTED_LOGIN = "alice@example.test"


@pytest.mark.parametrize("form, data", [
    ("raw UTF-8", PLANTED.value.encode()),
    ("UTF-16", PLANTED.value.encode("utf-16-le")),
    ("JSON-escaped", json.dumps({"detail": PLANTED.value}).encode()),
    ("hex", PLANTED.value.encode().hex().encode()),
    ("SASL PLAIN", base64.b64encode(f"\0{PLANTED_LOGIN}\0{PLANTED.value}".encode())),
    ("SASL PLAIN with an authorization identity",
     base64.b64encode(f"{PLANTED_LOGIN}\0sync-master@example.test\0{PLANTED.value}".encode())),
    ("XOAUTH2", base64.b64encode(f"user={PLANTED_LOGIN}\x01auth=Bearer {PLANTED.value}\x01\x01".encode())),
    ("a cut-off SASL PLAIN string",
     b"535 refused AUTH PLAIN " + base64.b64encode(f"\0{PLANTED_LOGIN}\0{PLANTED.value}".encode())[:48] + b"..."),
    ("a copy with its whitespace squeezed", b"server said: " + " ".join(PLANTED.value.split()).encode()),
    ("a copy cut off after a few characters", b"server said: PASS " + PLANTED.value[:10].encode() + b"..."),
])
def test_the_leak_finder_finds_every_form_of_a_secret(form: str, data: bytes):
    assert find_leaks([PLANTED], {"haystack": b"<<" + data + b">>"}), f"{form} was not found"


def test_the_leak_finder_is_quiet_about_what_is_not_the_secret():
    near_misses = {
        "a secret much like it": "Plänt3d-Sëcret ☂ x9Kq3".encode(),
        "its label": b"planted secret: set",
        "a base64 of other credentials": base64.b64encode(f"\0{PLANTED_LOGIN}\0some other password".encode()),
    }
    assert find_leaks([PLANTED], near_misses) == []


# --- servers that say back what they were sent ---------------------------------------------------

def said_back(line: bytes) -> str:
    """What a careless server quotes in its refusal: the client's line and, where a word of it is
    base64, what that decodes to (NUL and ^A shown as '|')."""
    text = line.decode("utf-8", "replace").strip()
    decoded = []
    for word in text.split():
        if len(word) < RUN:
            continue
        try:
            decoded.append(base64.b64decode(word, validate=True).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError):
            continue
    quoted = text + (" decoded: " + " ".join(decoded) if decoded else "")
    return quoted.replace("\0", "|").replace("\x01", "|")


def command_of(line: bytes, *, tagged: bool) -> tuple[str, str, list[str]]:
    words = line.decode("utf-8", "replace").split()
    tag = words.pop(0) if tagged and words else ""
    command = words.pop(0).upper() if words else ""
    return tag, command, words


def careless_imap(conversation: Conversation) -> None:
    conversation.send_line("* OK careless IMAP server ready")
    for _ in range(MOST_COMMANDS):
        line = conversation.read_line()
        tag, command, arguments = command_of(line, tagged=True)
        if command == "CAPABILITY":
            conversation.send_line("* CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2")
            conversation.send_line(f"{tag} OK CAPABILITY done")
        elif command in ("AUTHENTICATE", "LOGIN"):
            if command == "AUTHENTICATE" and len(arguments) < 2:
                conversation.send_line("+ ")
                line = conversation.read_line()
            conversation.send_line(f"{tag} NO [AUTHENTICATIONFAILED] refused: {said_back(line)}")
        elif command == "LOGOUT":
            conversation.send_line("* BYE")
            conversation.send_line(f"{tag} OK LOGOUT done")
            return
        else:
            conversation.send_line(f"{tag} BAD unknown command")


def careless_pop3(conversation: Conversation) -> None:
    conversation.send_line("+OK careless POP3 server ready")
    for _ in range(MOST_COMMANDS):
        line = conversation.read_line()
        _, command, arguments = command_of(line, tagged=False)
        if command == "CAPA":
            for answer in ("+OK capabilities follow", "USER", "SASL PLAIN XOAUTH2", "."):
                conversation.send_line(answer)
        elif command == "USER":
            conversation.send_line("+OK")
        elif command in ("PASS", "AUTH"):
            if command == "AUTH" and len(arguments) < 2:
                conversation.send_line("+ ")
                line = conversation.read_line()
            conversation.send_line(f"-ERR [AUTH] refused: {said_back(line)}")
        elif command == "QUIT":
            conversation.send_line("+OK bye")
            return
        else:
            conversation.send_line("-ERR unknown command")


def careless_smtp(conversation: Conversation) -> None:
    conversation.send_line("220 careless.test ESMTP ready")
    for _ in range(MOST_COMMANDS):
        line = conversation.read_line()
        _, command, arguments = command_of(line, tagged=False)
        if command in ("EHLO", "HELO"):
            conversation.send_line("250-careless.test")
            conversation.send_line("250 AUTH PLAIN XOAUTH2")
        elif command == "AUTH":
            if len(arguments) < 2:
                conversation.send_line("334 ")
                line = conversation.read_line()
            conversation.send_line(f"535 5.7.8 refused: {said_back(line)}")
        elif command == "QUIT":
            conversation.send_line("221 2.0.0 bye")
            return
        else:
            conversation.send_line("250 2.0.0 ok")


CARELESS = {"imap": careless_imap, "pop3": careless_pop3, "smtp": careless_smtp}
ECHOED_SECRETS = {
    "ascii": "Echoed-Password-r5Yp3",
    "unicode": "Echoed-Pässwörd-☂-r5Yp3",
    "spaced": "Echoed  Pässwörd\t\tr5Yp3  end",
    "long": "Echoed-Long-Password-" + "".join(f"{n:03d}w" for n in range(80)),
}

def echo_cases() -> Iterator[Any]:
    for protocol in CARELESS:
        for kind in ("password", "oauth2"):
            for shape in ECHOED_SECRETS:
                yield pytest.param(protocol, kind, shape, id=f"{protocol}-{kind}-{shape}")


ECHO_MAILBOX = "echo@example.test"


@pytest.mark.parametrize("protocol, kind, shape", list(echo_cases()))
def test_a_secret_a_server_echoes_back_is_not_recorded(org: Org, protocol: str, kind: str, shape: str):
    """Test & Enable against a server that quotes the credentials it was sent in its refusal: the
    sentence, the alerts, the stored steps and the database files never hold the secret."""
    secret = ECHOED_SECRETS[shape]
    auth = "mailbox" if kind == "password" else "oauth2"
    with HostileServer(CARELESS[protocol]) as server:
        profiles.create(org.admin, name="careless", type="pop3_smtp" if protocol == "pop3" else "imap_smtp",
                        incoming_host="127.0.0.1", incoming_port=server.port, incoming_tls="none",
                        incoming_auth=auth, outgoing_host="127.0.0.1", outgoing_port=server.port,
                        outgoing_tls="none", outgoing_auth=auth, timeout_seconds=5)
        incoming = "none" if protocol == "smtp" else "server_side_sync"
        outgoing = "server_side_sync" if protocol == "smtp" else "none"
        add_mailbox(org, ECHO_MAILBOX, "careless", incoming_method=incoming, outgoing_method=outgoing)
        what = credentials.PASSWORD if kind == "password" else credentials.TOKEN
        credentials.set_mailbox_secret(org.admin, ECHO_MAILBOX, secret, org.store, what)
        org.test_enable(ECHO_MAILBOX)
        received = server.received_in_clear

    sent = [secret.encode(), *base64_cores(secret.encode())]
    assert any(form in received for form in sent), "the secret never reached the server: nothing was tested"
    row = org.row(ECHO_MAILBOX)
    assert row.last_error_code == "AUTH_FAILED", row.last_error_text
    assert "refused" in row.last_error_text, "the server's quote is not in the sentence: nothing was tested"
    sources = {
        "mailbox show --json": json.dumps(mailboxes.show(org.admin, ECHO_MAILBOX).as_dict(), default=str).encode(),
        "last test": json.dumps(jobs.last_result(row.id).as_dict()).encode(),
        "alerts --json": json.dumps(alerts.list_alerts(org.admin, include_dismissed=True),
                                    ensure_ascii=False).encode(),
        **database_files(org.db_path),
    }
    assert_no_leaks([Secret(f"{shape} {kind}", secret)], sources)


# --- every command and screen that touches a secret ----------------------------------------------

ALICE, BOB, JOSE, OLGA = (f"{name}@example.test" for name in ("alice", "bob", "jose", "olga"))
WRONG_PASSWORD = "Wrong-Pässwörd-☃-q7Zx3"
PROFILE_PASSWORD = "Prof-Gëheim-密码-k9Tv2"
MAILBOX_TOKEN = "ya29.Mbx-Tökën-€-w4Rj8"
PROFILE_TOKEN = "ya29.Prof-Tökën-£-h2Lm5"
CONSOLE_PASSWORD = "Console-Pässwörd-✓-b8Nc1"
CONSOLE_TOKEN = "ya29.Console-Tökën-¥-d3Fs6"
REFUSED_SECRET = "Refused-Sëcret-∅-m6Gh4"
OAUTH_CLIENT_SECRET = "Client-Sëcret-Ω-p5Wd7"
PROFILE_USERNAME = "oauth-app@example.test"


def add_mailbox(org: Org, email: str, profile: str, **edits: Any) -> Mailbox:
    """A user and its approved mailbox on ``profile``, with no secret set."""
    users.add_user(org.admin, email.split("@")[0], email)
    mailboxes.edit(org.admin, email, profile=profile, **edits)
    bulk.approve(org.admin, Selection.of_emails([email]))
    return org.row(email)


@dataclass
class Outputs:
    """What every command printed, by command (stdout and stderr apart), and the log file every
    command writes to (--log-file). Commands that take or use a secret run as a separate process,
    as an operator runs them."""

    org: Org
    log_file: Path
    printed: dict[str, bytes] = field(default_factory=dict)
    runs: int = 0

    def run(self, *args: str, stdin: str = "", env: Mapping[str, str] | None = None,
            expect: int = 0) -> subprocess.CompletedProcess:
        command = self.org.cli_command("--log-file", str(self.log_file), *args)
        self.runs += 1
        completed = subprocess.run(command, input=stdin.encode(), capture_output=True,
                                   env={**self.org.cli_env(), **(env or {})}, cwd=REPO_ROOT, timeout=CLI_TIMEOUT)
        name = "mbxtui " + " ".join(args)
        self.printed[f"{name} (stdout)"] = completed.stdout
        self.printed[f"{name} (stderr)"] = completed.stderr
        assert completed.returncode == expect, (
            f"{name} exited {completed.returncode}, not {expect}: {completed.stderr.decode(errors='replace')}")
        return completed

    def run_here(self, *args: str) -> None:
        """A command that opens no keyring, run by this process (the same code without the cost of
        starting an interpreter); what it prints is kept as for the others."""
        bound = database.obj
        self.runs += 1
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.main(["--db", str(self.org.db_path), "--log-file", str(self.log_file), *args])
        if database.obj is not bound:  # the command opened the database anew: close that, rebind ours
            database.obj.close()
            database.initialize(bound)
        name = "mbxtui " + " ".join(args)
        self.printed[f"{name} (stdout)"] = stdout.getvalue().encode()
        self.printed[f"{name} (stderr)"] = stderr.getvalue().encode()
        assert code == 0, f"{name} exited {code}: {stderr.getvalue()}"

    def json(self, *args: str, expect: int = 0) -> Any:
        return json.loads(self.run(*args, "--json", expect=expect).stdout)


@dataclass
class Console:
    """What the console showed: screenshots, the text of every Static, notifications."""

    shown: dict[str, bytes] = field(default_factory=dict)

    def capture(self, app: MbxApp, name: str) -> None:
        self.shown.update(svg_sources(f"console {name}", app.export_screenshot()))
        texts = [str(widget.render()) for widget in app.screen.query(Static)]
        self.shown[f"console {name} (widgets)"] = "\n".join(texts).encode()
        self.shown[f"console {name} (notifications)"] = "\n".join(
            str(notification.message) for notification in app._notifications).encode()


async def settle(app: MbxApp, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


def drive_console(org: Org, console: Console) -> None:
    """Open the screens that show or take secrets: mailbox detail and edit (a password typed in),
    profile detail with its test connection and alerts, profile edit (a token typed in)."""
    app = MbxApp(org.admin, db_path=org.db_path, data_dir=org.secrets_dir, run_tests=False, store=org.store)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(app, pilot)
            console.capture(app, "mailbox grid")
            await app.push_screen(MailboxDetailScreen(org.row(ALICE).id))
            await settle(app, pilot)
            console.capture(app, "mailbox detail")
            await pilot.press("e")
            await pilot.pause()
            assert isinstance(app.screen, MailboxEditScreen)
            app.screen.query_one("#password", Input).value = CONSOLE_PASSWORD
            console.capture(app, "mailbox edit with a password typed")
            await pilot.press("ctrl+s")
            await settle(app, pilot)
            assert isinstance(app.screen, MailboxDetailScreen), [n.message for n in app._notifications]
            console.capture(app, "mailbox detail after saving")

            await app.push_screen(ProfileDetailScreen("Lab master"))
            await settle(app, pilot)
            console.capture(app, "profile detail")
            await pilot.press("c")
            await settle(app, pilot)
            connection = str(app.screen.query_one("#connection", Static).render())
            assert "AUTH_FAILED" in connection, connection
            console.capture(app, "profile test connection")
            await pilot.press("3")
            await pilot.pause()
            console.capture(app, "profile alerts")

            await app.push_screen(ProfileDetailScreen("Lab oauth"))
            await settle(app, pilot)
            await pilot.press("e")
            await pilot.pause()
            assert isinstance(app.screen, ProfileFormScreen)
            app.screen.query_one("#oauth2_token", Input).value = CONSOLE_TOKEN
            console.capture(app, "profile edit with a token typed")
            await pilot.press("ctrl+s")
            await settle(app, pilot)
            assert isinstance(app.screen, ProfileDetailScreen), [n.message for n in app._notifications]
            console.capture(app, "profile detail after saving")

            for name in ("alerts", "failed"):
                app.action_go(name)
                await settle(app, pilot)
                console.capture(app, f"{name} screen")

    asyncio.run(scenario())


def test_secrets_never_leak_from_any_command_screen_or_file(org: Org):
    """R4: every secret goes in, is used and is refused through the command line and the console;
    none comes out in any output, screenshot, database file or other file of the data directory."""
    lab = org.lab
    org.profile("Lab")
    org.profile("Lab master", incoming_auth="profile", outgoing_auth="profile", username=lab.master_login)
    org.profile("Lab oauth", incoming_auth="oauth2", outgoing_auth="oauth2", username=PROFILE_USERNAME,
                verify_delivery=False)
    # Tokens from a provider: a Microsoft 365 authority where nothing listens, so the client secret is
    # used (a token request is attempted) and sent nowhere.
    org.profile("Lab m365", incoming_auth="oauth2", outgoing_auth="oauth2", oauth_provider="microsoft365",
                oauth_tenant="lab-tenant", oauth_client_id="lab-app",
                oauth_issuer=f"https://{lab.host}:{lab.ports['refused']}")
    for email, profile in ((ALICE, "Lab"), (JOSE, "Lab"), (BOB, "Lab master"), (OLGA, "Lab oauth")):
        add_mailbox(org, email, profile)
    operators.add(org.admin, "vic", "viewer")
    secrets = [
        Secret("wrong mailbox password", WRONG_PASSWORD),
        Secret("right non-ASCII mailbox password", lab.users[JOSE]),
        Secret("profile password", PROFILE_PASSWORD),
        Secret("mailbox OAuth2 token", MAILBOX_TOKEN),
        Secret("profile OAuth2 token", PROFILE_TOKEN),
        Secret("password typed in the console", CONSOLE_PASSWORD),
        Secret("token typed in the console", CONSOLE_TOKEN),
        Secret("secret refused", REFUSED_SECRET),
        Secret("OAuth client secret", OAUTH_CLIENT_SECRET),
        Secret("lab master password", lab.master_password, runs=False),
        Secret("keyring master password", MASTER_PASSWORD, runs=False),
    ]
    out = Outputs(org, org.workdir / "log" / "mbxtui.log")
    out.log_file.parent.mkdir()

    # In through standard input, as an operator or a script gives them (one through the service, as
    # the console gives it). Each command that opens the encrypted keyring costs a key derivation:
    # the commands below are the fewest that take every path.
    out.run("mailbox", "set-password", ALICE, "--password-stdin", stdin=WRONG_PASSWORD + "\r\n")
    out.run("profile", "set-password", "Lab master", "--password-stdin", stdin=PROFILE_PASSWORD)
    out.run("mailbox", "set-password", OLGA, "--password-stdin", "--token", stdin=MAILBOX_TOKEN + "\n")
    out.run("profile", "set-password", "Lab oauth", "--password-stdin", "--token", stdin=PROFILE_TOKEN + "\n")
    out.run("profile", "set-oauth", "Lab m365", "--client-secret-stdin", stdin=OAUTH_CLIENT_SECRET + "\n")
    credentials.set_mailbox_secret(org.admin, JOSE, lab.users[JOSE], org.store)

    # Refused, with the secret where an error message might quote it.
    out.run("mailbox", "set-password", ALICE, "--password-stdin", stdin=REFUSED_SECRET + "\0tail\n", expect=1)
    out.run("mailbox", "set-password", ALICE, "--password-stdin", stdin=REFUSED_SECRET * 200 + "\n", expect=1)
    out.run("--as", "vic", "profile", "set-password", "Lab", "--password-stdin", "--token", stdin=REFUSED_SECRET,
            expect=1)
    out.run("mailbox", "set-password", ALICE, "--password-stdin", stdin=REFUSED_SECRET,
            env={"MBXTUI_MASTER_PASSWORD": REFUSED_SECRET}, expect=1)
    assert credentials.mailbox_secret(org.store, org.row(ALICE).id).reveal() == WRONG_PASSWORD

    # Used: right and wrong against the real lab, tokens against servers that lack XOAUTH2 (refused
    # there before the token is sent; NO_CREDENTIALS would mean it was never stored).
    report = out.json("test-enable", ALICE, JOSE, BOB, OLGA, "--wait", expect=3)
    outcomes = {result["email"]: (result["outcome"], result["error_code"]) for result in report["results"]}
    assert outcomes == {ALICE: ("failed", "AUTH_FAILED"), JOSE: ("passed", None), BOB: ("failed", "AUTH_FAILED"),
                        OLGA: ("failed", "AUTH_UNAVAILABLE")}
    out.run("test-enable", ALICE)
    assert b"AUTH_FAILED" in out.run("worker", "--once").stdout
    connection_test = out.json("profile", "test", "Lab master", expect=3)
    assert connection_test["directions"]["incoming"]["failure"]["code"] == "AUTH_FAILED"
    assert b"AUTH_UNAVAILABLE" in out.run("profile", "test", "Lab oauth", expect=3).stdout
    assert b"OAUTH_PROVIDER_UNREACHABLE" in out.run("profile", "test", "Lab m365", expect=3).stdout

    console = Console()
    with logs.log_file(out.log_file):
        drive_console(org, console)
    assert credentials.mailbox_secret(org.store, org.row(ALICE).id).reveal() == CONSOLE_PASSWORD
    assert credentials.profile_secret(org.store, profiles.get("Lab oauth").id, credentials.TOKEN).reveal() == CONSOLE_TOKEN

    # Out: every export as JSON, and as text what shows secrets' state, tests or history.
    exports = [["mailbox", "list", "--view", "all"], ["profile", "list"], ["user", "list"], ["queue", "list"],
               ["operator", "list"], ["settings", "show"], ["whoami"], ["alerts", "list", "--all"],
               ["audit", "list", "--limit", "1000"]]
    exports += [["mailbox", "show", email] for email in (ALICE, JOSE, BOB, OLGA)]
    exports += [["audit", "list", "--mailbox", email] for email in (ALICE, JOSE, BOB, OLGA)]
    exports += [["profile", "show", name] for name in ("Lab", "Lab master", "Lab oauth", "Lab m365")]
    texts = [["mailbox", "list", "--view", "all"], ["mailbox", "show", ALICE], ["profile", "show", "Lab master"],
             ["alerts", "list", "--all"], ["audit", "list", "--limit", "1000"], ["audit", "list", "--mailbox", ALICE]]
    for command in [*([*command, "--json"] for command in exports), *texts]:
        out.run_here(*command)
    alice_export = json.loads(out.printed[f"mbxtui mailbox show {ALICE} --json (stdout)"])
    assert alice_export["password"] == "set" and alice_export["last_test"]["outcome"] == "failed"
    history = json.loads(out.printed["mbxtui audit list --limit 1000 --json (stdout)"])
    assert {"mailbox.set_password", "profile.set_oauth2-token"} <= {entry["action"] for entry in history}
    out.run("alerts", "dismiss", "--all")

    log = out.log_file.read_bytes()
    assert log.count(f"mbxtui {__version__}: ".encode()) == out.runs, "a command did not write to the log"
    assert f"{ALICE}: failed (incoming: AUTH_FAILED".encode() in log, "the worker's events are not in the log"
    sources = {
        "the log file": log,
        **out.printed,
        **console.shown,
        **database_files(org.db_path),
        **files_under(org.workdir),
        **files_under(org.secrets_dir, except_names=[SECRETS_FILE_NAME]),
    }
    for screenshot in sorted((REPO_ROOT / "screenshots").glob("*.svg")):
        sources.update(svg_sources(str(screenshot), screenshot.read_text(encoding="utf-8")))
    if isinstance(org.db_path, str):
        assert org.db_path in sources, "the database was not searched"
    else:
        assert any(name.endswith("-wal") for name in sources), "the WAL was not searched"

    # The search can fail: a secret planted in a file of the data directory is found there.
    planted = org.secrets_dir / "planted.txt"
    planted.write_bytes(base64.b64encode(f"\0{ALICE}\0{WRONG_PASSWORD}".encode()))
    try:
        found = find_leaks(secrets, files_under(org.secrets_dir, except_names=[SECRETS_FILE_NAME]))
    finally:
        planted.unlink()
    assert {leak.where for leak in found} == {str(planted)}

    assert_no_leaks(secrets, sources)


# --- a crash prints nothing secret ----------------------------------------------------------------

CRASH_SECRET = "Crash-Lökal-Sëcret-⚡-p5Wd8"


class ForcedBug(RuntimeError):
    """Raised where a secret is a local variable of the frame: what a bug there would look like."""


async def crash_with_a_typed_password(app: MbxApp, pilot: Any, shown: dict[str, bytes]) -> None:
    """Type ``CRASH_SECRET`` into a mailbox's password field and save: ``action_save`` (its
    ``password`` local holding the secret) raises ``ForcedBug`` on the UI thread."""
    await settle(app, pilot)
    await pilot.press("enter", "e")
    await settle(app, pilot)
    assert isinstance(app.screen, MailboxEditScreen)
    app.screen.query_one("#password", Input).focus()
    await pilot.press(*CRASH_SECRET)
    shown.update(svg_sources("console with the password typed", app.export_screenshot()))
    await pilot.press("ctrl+s")
    await pilot.pause()


def run_console_to_its_crash(console: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    def broken_run_save(self: MailboxEditScreen, save: object, then: object) -> None:
        raise ForcedBug("a bug while saving")

    monkeypatch.setattr(MailboxEditScreen, "run_save", broken_run_save)
    shown: dict[str, bytes] = {}
    with pytest.raises(ForcedBug):
        console.run(lambda app, pilot: crash_with_a_typed_password(app, pilot, shown))
    return shown


@pytest.mark.parametrize("report_to", ["log file", "crash report file"])
def test_a_console_crash_prints_no_secret_on_screen_stderr_log_or_report(
        crash_console: Any, report_to: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]):
    """Issue 16, finding 3: a bug in a frame holding a typed password stops the console with one
    line; the screen, the terminal, the log and the crash report never hold the password."""
    log_path = tmp_path / "console.log"
    with logs.log_file(log_path if report_to == "log file" else None):
        shown = run_console_to_its_crash(crash_console, monkeypatch)
    out, err = capfd.readouterr()
    reports = sorted(crash_console.data_dir.glob("crash-*.txt"))
    report = log_path if report_to == "log file" else reports[0]
    assert err.count("\n") == 1 and f"The report is in {report}:" in err
    assert "ForcedBug: a bug while saving" in report.read_text()
    assert len(reports) == (0 if report_to == "log file" else 1)
    sources = {**shown, "stdout": out.encode(), "stderr": err.encode(),
               **files_under(tmp_path, except_names=[SECRETS_FILE_NAME]),
               **files_under(crash_console.data_dir, except_names=[SECRETS_FILE_NAME])}
    assert str(report) in sources, "the report was not searched"
    assert_no_leaks([Secret("password typed before a crash", CRASH_SECRET)], sources)


def test_the_crash_sweep_finds_a_secret_in_textuals_own_crash_report(
        crash_console: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]):
    """The search can fail: Textual's own handler (show_locals=True) prints the password."""
    from textual.app import App

    monkeypatch.setattr(MbxApp, "_handle_exception", App._handle_exception)
    run_console_to_its_crash(crash_console, monkeypatch)
    found = find_leaks([Secret("password typed before a crash", CRASH_SECRET)],
                       {"stderr": capfd.readouterr().err.encode()})
    assert {leak.where for leak in found} == {"stderr"}


def test_a_command_line_crash_prints_no_secret(crash_console: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capfd: pytest.CaptureFixture[str]):
    """A bug after ``--password-stdin`` was read (the secret a local of the command): one line on
    stderr, the traceback in the crash report file, the secret in neither."""
    operators.add(crash_console.admin, operators.os_login(), "global_admin")  # who the command runs as
    monkeypatch.setenv("MBXTUI_MASTER_PASSWORD", "master password of a crash test")

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ForcedBug("a bug while storing")

    monkeypatch.setattr(credentials, "set_mailbox_secret", broken)
    monkeypatch.setattr(sys, "stdin", io.StringIO(CRASH_SECRET + "\n"))
    bound = database.obj
    try:
        code = cli.main(["--db", str(crash_console.db_path), "mailbox", "set-password", "carla@corp.test",
                         "--password-stdin"])
    finally:
        if database.obj is not bound:
            database.obj.close()
            database.initialize(bound)
    out, err = capfd.readouterr()
    reports = sorted(crash_console.data_dir.glob("crash-*.txt"))
    assert code == 1 and out == "" and len(reports) == 1, (code, out, err)
    report = reports[0]
    assert err == (f"mbxtui stopped on an unexpected error (ForcedBug). The report is in {report}: "
                   "send it to whoever maintains mbxtui.\n")
    text = report.read_text()
    assert "mailbox set-password stopped on an unexpected error" in text and "ForcedBug: a bug while storing" in text
    assert report.stat().st_mode & 0o777 == 0o600
    sources = {"stdout": out.encode(), "stderr": err.encode(),
               **files_under(crash_console.data_dir, except_names=[SECRETS_FILE_NAME])}
    assert_no_leaks([Secret("password read from stdin before a crash", CRASH_SECRET)], sources)


# --- files owner-only ----------------------------------------------------------------------------

CREATE_UNDER_PERMISSIVE_UMASK = r"""
import io, json, os, sys
os.umask(0o022)
from mbxtui.cli import main
codes = [main(["init"]), main(["user", "add", "--name", "Ann", "--email", "ann@corp.test"])]
sys.stdin = io.StringIO("owner-only pässword\n")
codes.append(main(["mailbox", "set-password", "ann@corp.test", "--password-stdin"]))
data_dir = os.environ["MBXTUI_DATA_DIR"]
with open(os.path.join(os.path.dirname(data_dir), "plain-file"), "w"):
    pass  # what the umask gives a file created without care
modes = {os.path.relpath(os.path.join(root, name), data_dir): os.stat(os.path.join(root, name)).st_mode & 0o777
         for root, directories, files in os.walk(data_dir) for name in directories + files}
modes["."] = os.stat(data_dir).st_mode & 0o777
print(json.dumps({"codes": codes, "modes": modes}))
"""


def cli_environment(data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("MBXTUI_") and key not in ("PYTHON_KEYRING_BACKEND", "NO_COLOR")}
    env.update({"MBXTUI_DATA_DIR": str(data_dir), "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
                "MBXTUI_MASTER_PASSWORD": "master password of an owner-only test", "PYTHONDONTWRITEBYTECODE": "1"})
    return env


@pytest.mark.sqlite_only("the modes of the SQLite file, its WAL and shared-memory index")
def test_the_data_directory_and_database_files_are_created_owner_only_under_a_permissive_umask(tmp_path: Path):
    data_dir = tmp_path / "home" / "mbxtui-data"
    env = cli_environment(data_dir)
    done = subprocess.run([sys.executable, "-c", CREATE_UNDER_PERMISSIVE_UMASK], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["codes"] == [0, 0, 0], done.stderr
    assert (tmp_path / "home" / "plain-file").stat().st_mode & 0o777 == 0o644, "the umask was not permissive"
    modes = {name: oct(mode) for name, mode in report["modes"].items()}
    expected = {".": "0o700", "mbxtui.db": "0o600", "mbxtui.db-wal": "0o600", "mbxtui.db-shm": "0o600",
                SECRETS_FILE_NAME: "0o600", f"{SECRETS_FILE_NAME}.lock": "0o600"}
    assert modes == expected

    database = data_dir / "mbxtui.db"
    warning = f"mbxtui: warning: {database} can be read by other users; run: chmod 600 {database}\n"
    for mode, warned in ((0o644, True), (0o640, True), (0o604, True), (0o600, False)):
        os.chmod(database, mode)
        whoami = subprocess.run([sys.executable, "-m", "mbxtui", "whoami"], env=env, cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=CLI_TIMEOUT)
        assert whoami.returncode == 0, whoami.stderr
        assert whoami.stderr == (warning if warned else ""), oct(mode)


# --- every mutating service refuses a role that may not use it -----------------------------------

ROLE_LOGINS = {Role.GLOBAL_ADMIN: "alice", Role.SERVICE_ADMIN: "sam", Role.SYSTEM_ADMIN: "syd",
               Role.VIEWER: "vic"}
KEPT_SECRET = "Kept-Sëcret-p2Wd8"
NEW_SECRET = "New-Sëcret-t5Hy1"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def roles_template(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Path | str:
    """Operators of every role, two profiles (their servers refuse connections at once), users and
    queues active and not, a pending mailbox, an inactive one, alerts."""
    path = databases.new(tmp_path_factory.mktemp("roles"), "roles_template")
    database = db.open_database(path)
    try:
        admin = operators.initialise(login=ROLE_LOGINS[Role.GLOBAL_ADMIN])
        for role, login in ROLE_LOGINS.items():
            if role != Role.GLOBAL_ADMIN:
                operators.add(admin, login, role.value)
        port = closed_port()
        for name in ("imap", "second"):
            profiles.create(admin, name=name, type="imap_smtp", incoming_host="127.0.0.1", incoming_port=port,
                            incoming_tls="implicit", incoming_auth="mailbox", outgoing_host="127.0.0.1",
                            outgoing_port=port, outgoing_tls="starttls", outgoing_auth="mailbox", timeout_seconds=2)
        settings.update(admin, default_profile="imap")
        for name in ("ann", "bob", "cy", "dee", "eve"):
            users.add_user(admin, name.capitalize(), f"{name}@corp.test")
        users.deactivate_user(admin, "dee@corp.test")
        bulk.deactivate(admin, Selection.of_emails(["eve@corp.test"]))
        users.add_queue(admin, "Sales", "sales@corp.test", "ann@corp.test")
        users.add_queue(admin, "Old", "old@corp.test", "ann@corp.test")
        users.deactivate_queue(admin, "old@corp.test")
        with write_transaction():
            bob = Mailbox.get(Mailbox.email == "bob@corp.test")
            raise_alert(AlertLevel.ERROR, "AUTH_FAILED", "incoming test of bob@corp.test failed", mailbox=bob)
            raise_alert(AlertLevel.WARNING, "TIMEOUT", "outgoing test of bob@corp.test failed for now", mailbox=bob)
    finally:
        database.close()
    return path


@dataclass
class RoleWorld:
    store: SecretStore
    csv_path: Path
    actors: dict[Role, Actor]
    oauth_provider: OAuthProvider

    def keyring(self) -> dict[str, str | None]:
        """The secrets the services under test could write or remove."""
        values = {}
        for email in ("ann@corp.test", "bob@corp.test"):
            for what in (credentials.PASSWORD, credentials.TOKEN):
                values[f"{email} {what}"] = credentials.mailbox_secret(self.store, mailboxes.get(email).id, what)
        for what in (credentials.PASSWORD, credentials.TOKEN):
            values[f"imap {what}"] = credentials.profile_secret(self.store, profiles.get("imap").id, what)
        values["cy refresh token"] = credentials.mailbox_secret(self.store, mailboxes.get("cy@corp.test").id,
                                                                delegated.REFRESH_TOKEN)
        return {key: None if value is None else value.reveal() for key, value in values.items()}


@pytest.fixture
def role_world(databases: Databases, roles_template: Path | str, tmp_path: Path,
               secret_store: SecretStore, module_provider: OAuthProvider) -> Iterator[RoleWorld]:
    delegation_provider = module_provider  # whose device codes ``mailbox authorize`` completes (profile "oauth")
    delegation_provider.register("corp", "mbxtui")
    path = databases.copy(roles_template, tmp_path / "data")
    database = db.open_database(path)
    try:
        # Secret keys carry the install id: a new one keeps this copy's secrets its own.
        database.execute_sql("UPDATE meta SET value = ? WHERE key = 'install_id'", [uuid.uuid4().hex])
        actors = {role: operators.current_actor(login=login) for role, login in ROLE_LOGINS.items()}
        credentials.set_mailbox_secret(actors[Role.GLOBAL_ADMIN], "ann@corp.test", KEPT_SECRET, secret_store)
        credentials.set_profile_secret(actors[Role.GLOBAL_ADMIN], "imap", KEPT_SECRET, secret_store)
        profiles.create(actors[Role.GLOBAL_ADMIN], name="oauth", type="imap_smtp", incoming_host="imap.corp.test",
                        incoming_port=993, incoming_tls="implicit", incoming_auth="oauth2",
                        outgoing_host="smtp.corp.test", outgoing_port=587, outgoing_tls="starttls",
                        outgoing_auth="oauth2", oauth_provider="generic", oauth_client_id="mbxtui",
                        oauth_issuer=f"{delegation_provider.url}/generic",
                        ca_file=str(delegation_provider.certificates.ca_file))
        mailboxes.edit(actors[Role.GLOBAL_ADMIN], "cy@corp.test", profile="oauth")
        # R34: secrets whose endpoint changed since they were set, for the confirmations to confirm.
        database.execute_sql("UPDATE mailbox SET password_bound_to = NULL")
        database.execute_sql("UPDATE profile SET password_bound_to = NULL")
        csv_path = tmp_path / "users.csv"
        csv_path.write_text("name,email\nNia,nia@corp.test\n", encoding="utf-8")
        database.execute_sql(  # R29: an email that failed, for outgoing.resend
            "INSERT INTO email_activity (direction, state, message_id, sender, \"to\", cc, subject, size, attachments, "
            "preview, in_reply_to, created_on) VALUES ('outgoing', 'failed', '<failed@corp.test>', 'ann@corp.test', "
            "'[\"x@outside.test\"]', '[]', 'Failed', 0, '[]', '', '', CURRENT_TIMESTAMP)")
        yield RoleWorld(secret_store, csv_path, actors, delegation_provider)
    finally:
        database.close()
        databases.drop(path)


@dataclass(frozen=True)
class MutatingService:
    """A service, the permissions it needs, and a call of it that succeeds for a role allowed."""

    function: Callable[..., Any]
    permissions: tuple[Permission, ...]
    call: Callable[[Callable[..., Any], Actor, RoleWorld], Any]
    writes_database: bool = True

    @property
    def name(self) -> str:
        return qualified_name(self.function)

    def allows(self, role: Role) -> bool:
        return all(role in GRANTS[permission] for permission in self.permissions)

    def roles_needed(self, role: Role) -> list[str]:
        """The roles a refusal of ``role`` should name: those of the first permission it lacks."""
        lacking = next(permission for permission in self.permissions if role not in GRANTS[permission])
        return [r.value for r in Role if r in GRANTS[lacking]]


def failed_email_id() -> int:
    return database.execute_sql("SELECT id FROM email_activity WHERE message_id = '<failed@corp.test>'").fetchone()[0]


def qualified_name(function: Callable[..., Any]) -> str:
    return f"{function.__module__.rsplit('.', 1)[1]}.{function.__qualname__}"


CONFIGURE, APPROVE, TEST = Permission.CONFIGURE, Permission.APPROVE, Permission.TEST
BOB_ONLY = Selection.of_emails(["bob@corp.test"])

MUTATING_SERVICES = [
    MutatingService(operators.add, (Permission.MANAGE_OPERATORS,), lambda f, a, w: f(a, "newop", "viewer")),
    MutatingService(operators.set_role, (Permission.MANAGE_OPERATORS,),
                    lambda f, a, w: f(a, "vic", "system_admin")),
    MutatingService(operators.remove, (Permission.MANAGE_OPERATORS,), lambda f, a, w: f(a, "vic")),
    MutatingService(users.add_user, (CONFIGURE,), lambda f, a, w: f(a, "Nia", "nia@corp.test")),
    MutatingService(users.add_queue, (CONFIGURE,),
                    lambda f, a, w: f(a, "Support", "support@corp.test", "ann@corp.test")),
    MutatingService(users.deactivate_user, (CONFIGURE,), lambda f, a, w: f(a, "cy@corp.test")),
    MutatingService(users.activate_user, (CONFIGURE,), lambda f, a, w: f(a, "dee@corp.test")),
    MutatingService(users.deactivate_queue, (CONFIGURE,), lambda f, a, w: f(a, "sales@corp.test")),
    MutatingService(users.activate_queue, (CONFIGURE,), lambda f, a, w: f(a, "old@corp.test")),
    MutatingService(profiles.create, (CONFIGURE,), lambda f, a, w: f(
        a, name="third", type="pop3_smtp", incoming_host="pop.corp.test", incoming_port=995, incoming_tls="implicit",
        incoming_auth="mailbox", outgoing_host="smtp.corp.test", outgoing_port=465, outgoing_tls="implicit",
        outgoing_auth="mailbox")),
    MutatingService(profiles.update, (CONFIGURE,), lambda f, a, w: f(a, "imap", max_connections=5)),
    MutatingService(settings.update, (CONFIGURE,), lambda f, a, w: f(a, retry_attempts=3)),
    MutatingService(credentials.set_profile_secret, (CONFIGURE,), lambda f, a, w: f(a, "imap", NEW_SECRET, w.store)),
    MutatingService(credentials.set_profile_oauth, (CONFIGURE,),
                    lambda f, a, w: f(a, "oauth", "client_secret", NEW_SECRET, w.store)),
    MutatingService(credentials.set_mailbox_secret, (CONFIGURE,),
                    lambda f, a, w: f(a, "bob@corp.test", NEW_SECRET, w.store, credentials.TOKEN)),
    MutatingService(authorizations.authorize, (CONFIGURE,), lambda f, a, w: f(
        a, "cy@corp.test", w.store, lambda code: w.oauth_provider.approve(code.user_code, "cy@corp.test"))),
    # Authorized first by the global admin (only for a role allowed: a refused one must find nothing written).
    MutatingService(authorizations.deauthorize, (CONFIGURE,), lambda f, a, w: (
        a.role in GRANTS[CONFIGURE] and authorizations.authorize(
            w.actors[Role.GLOBAL_ADMIN], "cy@corp.test", w.store,
            lambda code: w.oauth_provider.approve(code.user_code, "cy@corp.test")), f(a, "cy@corp.test", w.store))),
    MutatingService(credentials.clear_mailbox_secret, (CONFIGURE,), lambda f, a, w: f(a, "ann@corp.test", w.store)),
    MutatingService(credentials.confirm_profile_secret, (Permission.CONFIRM_SECRET,), lambda f, a, w: f(a, "imap")),
    MutatingService(credentials.confirm_mailbox_secrets, (Permission.CONFIRM_SECRET,),
                    lambda f, a, w: f(a, Selection.of_emails(["ann@corp.test"]))),
    MutatingService(bulk.approve, (APPROVE,), lambda f, a, w: f(a, Selection.of_emails(["ann@corp.test"]))),
    MutatingService(bulk.reject, (APPROVE,), lambda f, a, w: f(a, Selection.of_emails(["ann@corp.test"]))),
    MutatingService(bulk.bulk_edit, (CONFIGURE,), lambda f, a, w: f(a, BOB_ONLY, profile="second")),
    MutatingService(bulk.apply_defaults, (CONFIGURE, TEST), lambda f, a, w: f(a, BOB_ONLY)),
    MutatingService(bulk.deactivate, (CONFIGURE,), lambda f, a, w: f(a, BOB_ONLY)),
    MutatingService(bulk.activate, (CONFIGURE,), lambda f, a, w: f(a, Selection.of_emails(["eve@corp.test"]))),
    MutatingService(mailboxes.edit, (CONFIGURE,), lambda f, a, w: f(a, "bob@corp.test", name="Robert")),
    MutatingService(mailboxes.create_forward_mailbox, (CONFIGURE,),
                    lambda f, a, w: f(a, name="Forwarder", email="fwd@corp.test", profile="imap")),
    MutatingService(imports.import_csv, (CONFIGURE,), lambda f, a, w: f(a, "users", w.csv_path)),
    MutatingService(alerts.dismiss, (Permission.DISMISS_ALERTS,),
                    lambda f, a, w: f(a, [alert.id for alert in Alert.select()])),
    MutatingService(alerts.dismiss_matching, (Permission.DISMISS_ALERTS,), lambda f, a, w: f(a, level="error")),
    MutatingService(enablement.schedule, (TEST,), lambda f, a, w: f(a, BOB_ONLY)),
    MutatingService(outgoing.queue_email, (Permission.SEND_EMAIL,),
                    lambda f, a, w: f(a, "ann@corp.test", ["x@outside.test"], [], "Hello", "Body")),
    MutatingService(outgoing.resend, (Permission.SEND_EMAIL,), lambda f, a, w: f(a, failed_email_id())),
    MutatingService(profile_check.check_profile, (TEST,), lambda f, a, w: f(a, "imap", w.store),
                    writes_database=False),
]

# Functions taking an actor first that change nothing, or write only for a caller that has checked
# the actor's role (inside its transaction): each with why it needs no check of its own.
READ_ONLY = {
    "alerts.list_alerts", "alerts.count_alerts", "audit.list_entries", "mailbox_views.list_mailboxes",
    "mailbox_views.ids_in_view", "mailbox_views.rows_by_ids", "mailboxes.show", "mailbox_views.where_for",
    "operators.list_operators", "profiles.show", "profiles.list_profiles", "settings.show", "users.list_users",
    "users.list_queues", "profile_mailboxes.mailboxes_of_profile", "mailbox_pages.MailboxPages",
    "credentials.mailbox_secret_state",
    "activities.list_activities", "activities.show_activity", "mailbox_views.sync_of", "health.health",
    "activities.page_activities", "activities.head_activities", "activities.count_activities",
    "activities.activity_detail",
    "sync_monitor.snapshot", "authorizations.state_of",
}
CALLED_BY_CHECKED_SERVICES = {
    "audit.record": "the audit entry of a change its caller was allowed to make",
    "audit.record_selection": "the audit entry of a set-based change its caller was allowed to make",
    "audit.record_inserted": "the audit entry of the rows an import its caller was allowed to make inserted",
    "selection.materialise": "fills this connection's temporary selection table only",
    "bulk.deactivate_selected": "the R19 step of users.deactivate_* and bulk.deactivate",
    "outgoing.create_pending": "queue_email after its check, and mbxtui's own notices to owners (R32) as SYSTEM",
}
MODULES_WITH_SERVICES = ("mbxtui.core.profile_check",)


def role_cases() -> Iterator[Any]:
    for service in MUTATING_SERVICES:
        for role in Role:
            verdict = "allowed" if service.allows(role) else "refused"
            yield pytest.param(service, role, id=f"{service.name}-{role.value}-{verdict}")


@pytest.mark.parametrize("service, role", list(role_cases()))
def test_a_mutating_service_runs_only_for_the_roles_granted_it(role_world: RoleWorld, service: MutatingService,
                                                               role: Role):
    actor = role_world.actors[role]
    database_before, keyring_before = snapshot(), role_world.keyring()
    if service.allows(role):
        result = service.call(service.function, actor, role_world)
        changed = snapshot() != database_before or role_world.keyring() != keyring_before
        assert changed == service.writes_database, f"{service.name} as {role.value} changed nothing"
        if not service.writes_database:
            assert result.directions, result
        return
    with pytest.raises(PermissionDenied) as refusal:
        service.call(service.function, actor, role_world)
    message = str(refusal.value)
    assert f"{actor.login} is {role.value}" in message, message
    for needed in service.roles_needed(role):
        assert needed in message, f"the refusal does not name {needed}: {message}"
    assert snapshot() == database_before, f"{service.name} refused {role.value} but wrote to the database"
    assert role_world.keyring() == keyring_before, f"{service.name} refused {role.value} but changed a secret"


def test_the_refusal_of_an_approval_names_exactly_the_roles_that_may_approve(role_world: RoleWorld):
    with pytest.raises(PermissionDenied) as refusal:
        bulk.approve(role_world.actors[Role.SYSTEM_ADMIN], Selection.of_emails(["ann@corp.test"]))
    assert str(refusal.value) == ("syd is system_admin and may not approve or reject email addresses: this needs "
                                  "the role global_admin or service_admin")


def services_taking_an_actor() -> set[str]:
    """Every public function (or class) of the service modules whose first parameter is ``actor``."""
    package = mbxtui.core.services
    names = [f"{package.__name__}.{module.name}" for module in pkgutil.iter_modules(package.__path__)]
    found = set()
    for module in map(importlib.import_module, [*names, *MODULES_WITH_SERVICES]):
        for name, value in vars(module).items():
            if name.startswith("_") or getattr(value, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(value):
                parameters = list(inspect.signature(value).parameters)
            elif inspect.isclass(value):
                parameters = list(inspect.signature(value.__init__).parameters)[1:]
            else:
                continue
            if parameters[:1] == ["actor"]:
                found.add(f"{module.__name__.rsplit('.', 1)[1]}.{name}")
    return found


def test_every_service_taking_an_actor_is_in_the_role_table():
    found = services_taking_an_actor()
    tabled = {service.name for service in MUTATING_SERVICES}
    known = tabled | READ_ONLY | set(CALLED_BY_CHECKED_SERVICES)
    assert len(tabled) == len(MUTATING_SERVICES), "a service is in the table twice"
    assert not found - known, (
        f"services taking an actor that no test holds to the roles: {sorted(found - known)}; add each to "
        "MUTATING_SERVICES (or, if it changes nothing, to READ_ONLY)")
    assert not known - found, f"the table names services that no longer exist: {sorted(known - found)}"
    assert {"bulk.approve", "enablement.schedule", "profile_check.check_profile"} <= tabled
