"""Speed of Test & Enable (issue 3) against the lab's Dovecot and SMTP server, printed beside the
targets.

    .venv/bin/python bench/test_enable.py [--mailboxes 1000] [--connections 32] [--verify on|off|both]

For each setting of the profile's "verify delivery", two runs over the same mailboxes, side by side:

  * bare loop: as many threads as the connection bound, doing only the protocol steps with one
    shared TLS context: SMTP connect, EHLO, STARTTLS, EHLO, AUTH PLAIN, send a message to the
    mailbox itself, QUIT; then IMAP over implicit TLS, AUTHENTICATE PLAIN, SELECT INBOX read-only
    (with verify delivery also NOOP and SEARCH for the message until found), LOGOUT;
  * mbxtui: `enablement.schedule` of every mailbox of the profile, then `EnablementRunner.run` with as many
    threads and the profile's max concurrent connections, passwords read from the encrypted-file
    keyring; the time includes writing every result, job row and alert.

The lab runs in a process of its own (its SMTP server and relays are Python too, and real servers
would not share the client's interpreter lock). Both runs go through the lab's connection
counters, one in front of IMAPS and one in front of SMTP, which report the most connections open at
once at the server side. The secret reads are timed on their own at the end.
"""

from __future__ import annotations

import argparse
import base64
import imaplib
import multiprocessing
import os
import smtplib
import ssl
import sys
import tempfile
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.lab lives beside the package, not in it

from mbxtui.core import db  # noqa: E402
from mbxtui.core.jobs import queue as jobs  # noqa: E402
from mbxtui.core.jobs.runner import EnablementRunner  # noqa: E402
from mbxtui.core.models import Alert, EnablementJob# noqa: E402
from mbxtui.core.secrets import SecretStore  # noqa: E402
from mbxtui.core.services import bulk, credentials, enablement, imports, operators, profiles, settings  # noqa: E402
from mbxtui.core.services.selection import Selection  # noqa: E402
from tests.lab import start_lab  # noqa: E402

TARGET_RATE = 100.0
TARGET_RATIO = 0.70
MASTER_PASSWORD = "bench master password"
PROFILE = "lab"
OPERATOR = "bench"
LAB_TIMEOUT = 120.0  # starting the lab and adding the users; every other answer is quick
SECRET_READS_PER_MAILBOX = 1  # the mailbox's password, used by both directions


# --- the lab, in its own process ---------------------------------------------------------------

def serve_lab(connection, workdir: Path, users: int) -> None:
    """The lab process: start the lab, add the users, then answer the bench's commands."""
    try:
        with start_lab(workdir) as lab:
            logins = lab.add_users(users, prefix="bench")
            connection.send({"host": lab.host, "ca_file": lab.ca_file, "ports": lab.ports,
                             "accounts": [(login, lab.users[login]) for login in logins]})
            counters = []
            while True:
                command = connection.recv()
                if command == "count":
                    counters = [lab.connection_counter("imaps"), lab.connection_counter("smtp")]
                    connection.send([counter.port for counter in counters])
                elif command == "counted":
                    connection.send([(counter.max_concurrent, counter.total) for counter in counters])
                    for counter in counters:
                        counter.close()
                elif command == "stop":
                    return
    except BaseException:
        connection.send({"error": traceback.format_exc()})


class LabProcess:
    def __init__(self, workdir: Path, users: int):
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=serve_lab, args=(child, workdir, users), name="mail-lab",
                                        daemon=True)
        self._process.start()
        info = self._answer(LAB_TIMEOUT)
        self.host: str = info["host"]
        self.ca_file: str = info["ca_file"]
        self.ports: dict[str, int] = info["ports"]
        self.accounts: list[tuple[str, str]] = info["accounts"]

    def count_connections(self) -> tuple[int, int]:
        """New counters in front of IMAPS and SMTP; their ports."""
        self._connection.send("count")
        imap_port, smtp_port = self._answer(10)
        return imap_port, smtp_port

    def counted(self) -> dict[str, tuple[int, int]]:
        """Most connections open at once and connections in all, per server; closes the counters."""
        self._connection.send("counted")
        imap, smtp = self._answer(10)
        return {"IMAP": tuple(imap), "SMTP": tuple(smtp)}

    def stop(self) -> None:
        if self._process.is_alive():
            self._connection.send("stop")
            self._process.join(15)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)

    def _answer(self, timeout: float):
        if not self._connection.poll(timeout):
            raise SystemExit(f"the lab process did not answer within {timeout:g} s")
        answer = self._connection.recv()
        if isinstance(answer, dict) and "error" in answer:
            raise SystemExit(f"the lab process failed:\n{answer['error']}")
        return answer

    def __enter__(self) -> LabProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclass
class Run:
    label: str
    mailboxes: int
    seconds: float
    cpu_seconds: float  # this process: the client side
    connections: dict[str, tuple[int, int]]

    @property
    def rate(self) -> float:
        return self.mailboxes / self.seconds


# --- the bare loop -----------------------------------------------------------------------------

def bare_mailbox(login: str, password: str, imap_port: int, smtp_port: int, context: ssl.SSLContext,
                 verify: bool) -> None:
    message_id = f"<bench-{uuid.uuid4().hex}@mbxtui>"
    message = (f"From: {login}\r\nTo: {login}\r\nSubject: Your mailbox is now connected\r\n"
               f"Message-ID: {message_id}\r\n\r\nbench\r\n").encode()
    plain = base64.b64encode(f"\0{login}\0{password}".encode()).decode()
    with smtplib.SMTP("127.0.0.1", smtp_port, local_hostname="[127.0.0.1]", timeout=30) as smtp:
        smtp.ehlo()
        smtp.starttls(context=context)
        smtp.ehlo()
        code, reply = smtp.docmd("AUTH", f"PLAIN {plain}")
        if code != 235:
            raise RuntimeError(f"SMTP AUTH of {login}: {code} {reply!r}")
        smtp.sendmail(login, [login], message)
    imap = imaplib.IMAP4_SSL("127.0.0.1", imap_port, ssl_context=context, timeout=30)
    try:
        imap.authenticate("PLAIN", lambda _: f"\0{login}\0{password}".encode())
        imap.select("INBOX", readonly=True)
        if verify:
            deadline = time.monotonic() + 5
            while True:
                imap.noop()
                _, found = imap.search(None, "HEADER", "Message-ID", message_id)
                if found[0].split():
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{message_id} never reached {login}")
                time.sleep(0.2)
    finally:
        imap.logout()


def run_bare_loop(lab: LabProcess, threads: int, verify: bool) -> Run:
    context = ssl.create_default_context(cafile=lab.ca_file)
    imap_port, smtp_port = lab.count_connections()
    with ThreadPoolExecutor(threads) as pool:
        started, cpu = time.perf_counter(), time.process_time()
        futures = [pool.submit(bare_mailbox, login, password, imap_port, smtp_port, context, verify)
                   for login, password in lab.accounts]
        for future in futures:
            future.result()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Run("bare loop", len(lab.accounts), seconds, cpu, lab.counted())


# --- mbxtui ------------------------------------------------------------------------------------

def run_mbxtui(lab: LabProcess, store: SecretStore, admin, threads: int, verify: bool) -> Run:
    count = len(lab.accounts)
    imap_port, smtp_port = lab.count_connections()
    profiles.update(admin, PROFILE, incoming_port=imap_port, outgoing_port=smtp_port, verify_delivery=verify)
    # R34: the counting relays are a new endpoint; the same lab servers stand behind them.
    credentials.confirm_mailbox_secrets(admin, Selection.of_profile(PROFILE))
    alerts_before = Alert.select().count()
    started, cpu = time.perf_counter(), time.process_time()
    request = enablement.schedule(admin, Selection.of_profile(PROFILE))
    summary = EnablementRunner(store, threads=threads).run(until_idle=True)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    connections = lab.counted()
    progress = jobs.batch_progress(request.batch_id)
    alerts = Alert.select().count() - alerts_before
    unfinished = EnablementJob.select().where(EnablementJob.state.in_(("queued", "running"))).count()
    if progress.passed != count or summary.passed != count or alerts != count or unfinished:
        codes = sorted({direction["failure"]["code"] for row in jobs.batch_results(request.batch_id)
                        if row.directions for direction in row.directions.values() if direction["failure"]})
        raise SystemExit(f"mbxtui run: {progress.as_dict()}, {alerts} alerts, {unfinished} jobs unfinished; "
                         f"failure codes: {codes}")
    return Run("mbxtui", count, seconds, cpu, connections)


def time_secret_reads(store: SecretStore, mailbox_ids: list[int], threads: int) -> tuple[float, float]:
    """Seconds to read every mailbox password once from one thread, and from ``threads`` threads."""
    lookup = credentials.secret_lookup(store)
    started = time.perf_counter()
    for mailbox_id in mailbox_ids:
        if not lookup("mailbox", mailbox_id, credentials.PASSWORD):
            raise SystemExit(f"mailbox {mailbox_id} has no password in the keyring")
    serial = time.perf_counter() - started
    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        list(pool.map(lambda mailbox_id: lookup("mailbox", mailbox_id, credentials.PASSWORD), mailbox_ids))
        parallel = time.perf_counter() - started
    return serial, parallel


# --- setting up and reporting ------------------------------------------------------------------

def set_up(lab: LabProcess, work: Path, connections: int):
    """The database (profile, users, approved mailboxes) and the unlocked keyring holding every
    mailbox's password."""
    db.open_database(work / "mbxtui.db")
    admin = operators.initialise(login=OPERATOR)
    profiles.create(admin, name=PROFILE, type="imap_smtp",
                    incoming_host=lab.host, incoming_port=lab.ports["imaps"], incoming_tls="implicit",
                    incoming_auth="mailbox", outgoing_host=lab.host, outgoing_port=lab.ports["smtp"],
                    outgoing_tls="starttls", outgoing_auth="mailbox", ca_file=lab.ca_file,
                    max_connections=connections, timeout_seconds=30)
    settings.update(admin, default_profile=PROFILE)
    users_csv = work / "users.csv"
    users_csv.write_text("name,email\n" + "".join(f"Bench {login.split('@')[0]},{login}\n"
                                                  for login, _ in lab.accounts), encoding="utf-8")
    imports.import_csv(admin, "users", users_csv)
    bulk.approve(admin, Selection.of_view("pending"))
    store = SecretStore.open(work / "secrets")
    store.unlock(MASTER_PASSWORD)
    for login, password in lab.accounts:
        credentials.set_mailbox_secret(admin, login, password, store)
    ids = [row[0] for row in db.raw_connection().execute("SELECT id FROM mailbox ORDER BY id")]
    return admin, store, ids


def print_runs(title: str, bare: Run, mine: Run, connections: int) -> None:
    ratio = mine.rate / bare.rate
    most = max(opened for opened, _ in mine.connections.values())

    def verdict(ok: bool, miss: str = "MISSED") -> str:
        return "ok" if ok else miss

    rows = [("", "seconds", "mailboxes/s", "target", "client CPU ms/mailbox",
             "most connections open (IMAP, SMTP)", "bound"),
            ("bare loop", f"{bare.seconds:.2f}", f"{bare.rate:.1f}", "", f"{bare.cpu_seconds / bare.mailboxes * 1000:.1f}",
             _connections(bare), ""),
            ("mbxtui", f"{mine.seconds:.2f}", f"{mine.rate:.1f}",
             f">= {TARGET_RATE:g} {verdict(mine.rate >= TARGET_RATE)}",
             f"{mine.cpu_seconds / mine.mailboxes * 1000:.1f}", _connections(mine),
             f"<= {connections} {verdict(most <= connections, 'EXCEEDED')}"),
            ("mbxtui / bare loop", "", f"{ratio:.0%}", f">= {TARGET_RATIO:.0%} {verdict(ratio >= TARGET_RATIO)}",
             "", "", "")]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"\n{title}")
    for number, row in enumerate(rows):
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if number == 0:
            print("  " + "  ".join("-" * width for width in widths))


def _connections(run: Run) -> str:
    return ", ".join(f"{most} of {total}" for most, total in run.connections.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=32,
                        help="the profile's max concurrent connections, and the threads of both runs")
    parser.add_argument("--verify", choices=("on", "off", "both"), default="both",
                        help="the profile's verify delivery setting(s) to measure")
    arguments = parser.parse_args()
    # No OS keyring: mbxtui keeps the passwords in its encrypted file, as over SSH.
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    os.environ.pop("MBXTUI_KEYRING", None)
    os.environ.pop("MBXTUI_MASTER_PASSWORD", None)
    print(f"mbxtui Test & Enable benchmark: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"{arguments.mailboxes} mailboxes, {arguments.connections} connections, "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="mbxtui-bench-te-") as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        with LabProcess(work / "lab", arguments.mailboxes) as lab:
            lab_seconds = time.perf_counter() - started
            started = time.perf_counter()
            admin, store, ids = set_up(lab, work, arguments.connections)
            print(f"lab process started with {len(lab.accounts)} users in {lab_seconds:.1f} s; database and "
                  f"{len(ids)} keyring passwords set up in {time.perf_counter() - started:.1f} s "
                  f"({store.backend_name})")
            # Unmeasured: Dovecot starts its mail processes, the lab's delivery path warms up.
            run_bare_loop(lab, arguments.connections, verify=False)
            for verify in {"on": [True], "off": [False], "both": [False, True]}[arguments.verify]:
                bare = run_bare_loop(lab, arguments.connections, verify)
                mine = run_mbxtui(lab, store, admin, arguments.connections, verify)
                print_runs(f"verify delivery {'on' if verify else 'off'}", bare, mine, arguments.connections)
            serial, parallel = time_secret_reads(store, ids, arguments.connections)
    per_read = serial / len(ids)
    print(f"\nsecret reads: {len(ids)} passwords in {serial * 1000:.0f} ms from one thread "
          f"({per_read * 1000:.2f} ms each), {parallel * 1000:.0f} ms from {arguments.connections} threads; "
          f"at {SECRET_READS_PER_MAILBOX} reads per mailbox they alone allow at most "
          f"{1 / (per_read * SECRET_READS_PER_MAILBOX):.0f} mailboxes/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
