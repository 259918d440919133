"""Incoming processing, speed and memory (issue 12): a cycle over many enabled mailboxes with no new
mail, and the ingest of many messages, by `SyncRunner.run_once` on SQLite and PostgreSQL side by
side with a bare imaplib loop doing the same protocol steps; the peak RSS of the process syncing.

    .venv/bin/python bench/sync.py [--quick] [--mailboxes 10000] [--messages 20000] [--ingest-mailboxes 200]
                                   [--big-share 0.05] [--attachment-mb 5] [--connections 32]
                                   [--backends sqlite,postgresql] [--db postgresql://...] [--only cycle,ingest]
                                   [--repeat N]

``--quick``: 200 mailboxes, 500 messages in 20 mailboxes (to try the bench; the figures of the issue
are at the default sizes, on an idle machine: the full run appends about 7 GB of mail to the lab).

The lab (Dovecot, its users in a passwd-file with one password each) runs in a process of its own,
as in test_enable.py. Each backend gets one database (SQLite: a file; PostgreSQL: the empty database
``--db`` names, else one on a private server started like the test suite's) with one IMAPS profile
(each mailbox's own password from the encrypted-file keyring, max concurrent connections
``--connections``) and the mailboxes marked enabled for server-side sync as Test & Enable leaves
them (the test itself is test_enable.py's figure). Every measured `run_once` runs in a child process
of its own, so that its peak RSS is the sync's alone (VmHWM, started over once the database and the
keyring are open: unlocking the keyring's argon2id key takes 64 MiB for a moment, shown apart); the bare loops run in this
process on ``--connections`` threads. Every run goes through new connection counters in front of
IMAPS, which report the most connections open at once.

- cycle: ``--mailboxes`` empty inboxes; one unmeasured pass writes their checkpoints, then the bare
  loop (TLS connect, AUTHENTICATE PLAIN, EXAMINE INBOX, UID SEARCH only when UIDNEXT shows new
  mail, as the runner does, LOGOUT) and one `run_once(ignore_interval=True)` with as many threads as
  connections. The capacity is the mailboxes one such process cycles in a 5-minute polling interval.
- ingest: ``--messages`` appended over IMAP to ``--ingest-mailboxes`` other inboxes (a 2 KB text;
  ``--big-share`` of them also carry an attachment of ``--attachment-mb`` MB); the bare loop reads
  one mailbox per thread: one UID SEARCH, then per 12 messages one UID FETCH of RFC822.SIZE,
  INTERNALDATE, BODYSTRUCTURE and the header block (bounded as the runner bounds it) and one of the
  text part (bounded); mbxtui runs `run_once(ignore_interval=True)` until every message is recorded
  (a cycle stops at the profile's time bound and goes on in the next pass).
- ``--repeat N``: the bare loop and mbxtui run N times in turn (the ingest's activities, checkpoints
  and statuses forgotten before each mbxtui run after the first); the table shows the median rate
  of each, each run's rates are printed as they come. On a shared machine one run of each varies
  by half.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import imaplib
import multiprocessing
import os
import pstats
import ssl
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.lab lives beside the package, not in it

from bench.test_enable import LabProcess  # noqa: E402
from mbxtui.core import db  # noqa: E402
from mbxtui.core.db import write_transaction  # noqa: E402
from mbxtui.core.models import database, utcnow  # noqa: E402
from mbxtui.core.secrets import KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV, SecretStore  # noqa: E402
from mbxtui.core.services import bulk, credentials, imports, operators, profiles, settings  # noqa: E402
from mbxtui.core.services.selection import Selection  # noqa: E402
from mbxtui.core.sync.imap_cycle import BATCH  # noqa: E402
from mbxtui.core.sync.messages import MOST_HEADER_BYTES, MOST_TEXT_BYTES  # noqa: E402
from mbxtui.core.sync.runner import SyncRunner  # noqa: E402
from mbxtui.core.sync import store as sync_store  # noqa: E402
from tests.lab.accounts import MASTER_LOGIN, MASTER_PASSWORD as LAB_MASTER_PASSWORD  # noqa: E402

MASTER_PASSWORD = "bench master password"
PROFILE = "lab"
OPERATOR = "bench"
NO_OS_KEYRING = "keyring.backends.fail.Keyring"
TARGET_RATIO = 0.70
TARGET_RSS_MB = 150.0
POLLING_SECONDS = 300  # the 5-minute polling interval the capacity is counted in
CHILD_TIMEOUT = 3600.0
APPEND_THREADS = 8
QUICK = {"mailboxes": 200, "messages": 500, "ingest_mailboxes": 20}


@dataclass
class Run:
    label: str
    count: int  # mailboxes (cycle) or messages (ingest)
    seconds: float
    cpu_seconds: float
    most_open: int
    rss_start_mb: float | None = None
    rss_peak_mb: float | None = None
    opening_peak_mb: float | None = None  # unlocking the keyring (argon2id, 64 MiB), before the sync

    @property
    def rate(self) -> float:
        return self.count / self.seconds


# --- the mail in the lab -----------------------------------------------------------------------------

def make_message(login: str, number: int, attachment: str | None) -> bytes:
    text = (f"Message {number} for {login}.\r\n" + "The quick brown fox jumps over the lazy dog. " * 45 + "\r\n")
    head = (f"From: Sender {number} <sender{number}@outside.test>\r\nTo: {login}\r\nSubject: Bench message {number}\r\n"
            f"Message-ID: <bench-sync-{number}@outside.test>\r\nDate: Sun, 06 Dec 2026 08:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\n")
    if attachment is None:
        return (head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text).encode()
    return (head + 'Content-Type: multipart/mixed; boundary="b-bench"\r\n\r\n--b-bench\r\n'
            "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n--b-bench\r\n"
            'Content-Type: application/octet-stream; name="data.bin"\r\nContent-Transfer-Encoding: base64\r\n'
            'Content-Disposition: attachment; filename="data.bin"\r\n\r\n' + attachment + "\r\n--b-bench--\r\n").encode()


def append_messages(lab: LabProcess, accounts: list[tuple[str, str]], messages: int, big_share: float,
                    attachment_mb: float) -> int:
    """``messages`` spread over the inboxes of ``accounts``, every 1/big_share-th with the attachment.
    Returns how many carry it."""
    raw = os.urandom(int(attachment_mb * 1024 * 1024))
    encoded = base64.encodebytes(raw).decode().replace("\n", "\r\n")
    every = round(1 / big_share) if big_share > 0 else 0
    context = ssl.create_default_context(cafile=lab.ca_file)
    plan: dict[int, list[int]] = {}
    for number in range(messages):
        plan.setdefault(number % len(accounts), []).append(number)

    def fill(index: int) -> None:
        login, password = accounts[index]
        imap = imaplib.IMAP4_SSL(lab.host, lab.ports["imaps"], ssl_context=context, timeout=120)
        try:
            imap.login(login, password)
            for number in plan[index]:
                big = bool(every) and number % every == every - 1
                imap.append("INBOX", None, None, make_message(login, number, encoded if big else None))
        finally:
            imap.logout()

    with ThreadPoolExecutor(APPEND_THREADS) as pool:
        list(pool.map(fill, plan))
    return sum(1 for number in range(messages) if every and number % every == every - 1)


# --- the bare loops --------------------------------------------------------------------------------

def _open(lab: LabProcess, port: int, context: ssl.SSLContext, login: str, password: str | None) -> imaplib.IMAP4_SSL:
    """Logged in as the mailbox with its password, or with ``password`` None as the lab's master
    user acting for it (the profile's credentials)."""
    imap = imaplib.IMAP4_SSL(lab.host, port, ssl_context=context, timeout=60)
    plain = f"\0{login}\0{password}" if password is not None else f"{login}\0{MASTER_LOGIN}\0{LAB_MASTER_PASSWORD}"
    imap.authenticate("PLAIN", lambda _: plain.encode())
    imap.select("INBOX", readonly=True)
    return imap


def bare_cycle(lab: LabProcess, port: int, context: ssl.SSLContext, login: str, password: str | None) -> int:
    imap = _open(lab, port, context, login, password)
    try:
        _, [uid_next] = imap.response("UIDNEXT")
        if uid_next is None or int(uid_next) > 1:  # the inboxes are empty: no new mail past UID 0
            imap.uid("SEARCH", "UID 1:*")
    finally:
        imap.logout()
    return 1


def bare_ingest(lab: LabProcess, port: int, context: ssl.SSLContext, login: str, password: str | None) -> int:
    since = (utcnow() - timedelta(days=2)).strftime("%d-%b-%Y")
    imap = _open(lab, port, context, login, password)
    try:
        _, [found] = imap.uid("SEARCH", f"UID 1:* SINCE {since}")
        uids = sorted(int(uid) for uid in found.split())
        for start in range(0, len(uids), BATCH):
            batch = ",".join(str(uid) for uid in uids[start:start + BATCH])
            _, answers = imap.uid("FETCH", batch, f"(RFC822.SIZE INTERNALDATE BODYSTRUCTURE "
                                                   f"BODY.PEEK[HEADER]<0.{MOST_HEADER_BYTES}>)")
            _, texts = imap.uid("FETCH", batch, f"(BODY.PEEK[1]<0.{MOST_TEXT_BYTES}>)")
            if not answers or not texts:
                raise RuntimeError(f"{login}: no answer to UID FETCH {batch}")
    finally:
        imap.logout()
    return len(uids)


def run_bare(lab: LabProcess, label: str, step: Callable[..., int], accounts: list[tuple[str, str]], threads: int,
             auth: str) -> Run:
    context = ssl.create_default_context(cafile=lab.ca_file)
    imap_port, _ = lab.count_connections()
    with ThreadPoolExecutor(threads) as pool:
        started, cpu = time.perf_counter(), time.process_time()
        count = sum(pool.map(lambda account: step(lab, imap_port, context, account[0],
                                                   account[1] if auth == "mailbox" else None), accounts))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Run(label, count, seconds, cpu, lab.counted()["IMAP"][0])


# --- mbxtui, in a child process ------------------------------------------------------------------------

def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    """Start VmHWM over from the present RSS (Linux 4.0 and later), so that it shows the sync's peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as exc:
        raise SystemExit(f"the peak RSS cannot be started over ({exc}): Linux 4.0 or later is needed") from exc


def _profiled(cycle: Callable[..., Any], profilers: dict[int, cProfile.Profile], cpu: bool = False) -> Callable[..., Any]:
    """``cycle`` profiled in each pool thread by a profiler of that thread's own (``cpu``: counting
    the thread's CPU time instead of the wall time, so that waits for the server and for the
    interpreter lock drop out)."""
    clock = (time.thread_time,) if cpu else ()

    def profiled_cycle(*args: Any, **kwargs: Any) -> Any:
        profiler = profilers.setdefault(threading.get_ident(), cProfile.Profile(*clock))
        profiler.enable()
        try:
            return cycle(*args, **kwargs)
        finally:
            profiler.disable()

    return profiled_cycle


def sync_child(connection: Any, location: str, data_dir: str, threads: int, expected_messages: int | None,
               profile: str | None) -> None:
    """Open the database and the keyring, then run passes until ``expected_messages`` are recorded
    (one pass when None); send back the time, the counts and the memory, and with ``profile`` the
    busiest functions of the thread that claims, dispatches and writes the status."""
    try:
        db.open_database(location)
        store = SecretStore.open(Path(data_dir))
        store.unlock(MASTER_PASSWORD)
        runner = SyncRunner(store, threads=threads)
        rss_start = _status_mb("VmRSS")
        opening_peak = _status_mb("VmHWM")  # the keyring's key derivation takes memory for a moment
        _reset_peak()
        passes = cycled = messages = failed = 0
        codes: set[str] = set()
        profiler = cProfile.Profile() if profile else None
        pool_profilers: dict[int, cProfile.Profile] = {}
        database_profilers: dict[int, cProfile.Profile] = {}
        if profiler:
            profiler.enable()
            cpu_clock = profile == "cpu"
            runner._cycle = _profiled(runner._cycle, pool_profilers, cpu_clock)
            # What the pass's database thread runs for the cycles and the runner (batches, status).
            sync_store._dropping_on_error = _profiled(sync_store._dropping_on_error, database_profilers, cpu_clock)
            sync_store._record_waiting = _profiled(sync_store._record_waiting, database_profilers, cpu_clock)
        started, cpu = time.perf_counter(), time.process_time()
        while True:
            summary = runner.run_once(ignore_interval=True)
            passes += 1
            cycled = max(cycled, len(summary.mailboxes))
            new = sum(m.messages for m in summary.mailboxes)
            messages += new
            failed += summary.failed
            codes |= {m.error_code for m in summary.mailboxes if not m.ok}
            if expected_messages is None or messages >= expected_messages or not new or failed:
                break
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        profiled = ""
        if profiler:
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats("mbxtui", 25)
            out.write("\nthe pool threads' cycles, all together (cProfile, cumulative)\n")
            pool = pstats.Stats(*pool_profilers.values(), stream=out)
            pool.sort_stats("cumulative").print_stats(30)
            out.write("\nthe same by time spent in each function itself (cProfile, tottime)\n")
            pool.sort_stats("tottime").print_stats(30)
            if database_profilers:
                out.write("\nthe database thread (cProfile, cumulative, then tottime)\n")
                writes = pstats.Stats(*database_profilers.values(), stream=out)
                writes.sort_stats("cumulative").print_stats(25)
                writes.sort_stats("tottime").print_stats(20)
            profiled = out.getvalue()
        connection.send({"profile": profiled, "seconds": seconds, "cpu": cpu, "passes": passes, "cycled": cycled, "messages": messages,
                         "failed": failed, "codes": sorted(codes), "rss_start": rss_start,
                         "hwm": _status_mb("VmHWM"), "opening_peak": opening_peak})
    except BaseException:
        connection.send({"error": traceback.format_exc()})


def run_mbxtui(lab: LabProcess, admin: Any, location: str, data_dir: Path, label: str, threads: int,
               expected_mailboxes: int, expected_messages: int | None, profile: str | None = None) -> Run:
    imap_port, _ = lab.count_connections()
    profiles.update(admin, PROFILE, incoming_port=imap_port)
    # R34: the counting relay is a new endpoint; the same Dovecot stands behind it.
    if profiles.get(PROFILE).incoming_auth == "profile":
        credentials.confirm_profile_secret(admin, PROFILE)
    else:
        credentials.confirm_mailbox_secrets(admin, Selection.of_profile(PROFILE))
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=sync_child, args=(child, location, str(data_dir), threads, expected_messages, profile),
                              name="mbxtui-sync")
    process.start()
    try:
        if not parent.poll(CHILD_TIMEOUT):
            raise SystemExit(f"{label}: the sync process did not finish within {CHILD_TIMEOUT:g} s")
        answer = parent.recv()
    finally:
        process.join(30)
        if process.is_alive():
            process.kill()
    most_open = lab.counted()["IMAP"][0]
    if "error" in answer:
        raise SystemExit(f"{label}: the sync process failed:\n{answer['error']}")
    wanted = expected_messages if expected_messages is not None else 0
    if answer["failed"] or answer["cycled"] != expected_mailboxes or answer["messages"] != wanted:
        raise SystemExit(f"{label}: {answer['cycled']} of {expected_mailboxes} mailboxes cycled, {answer['failed']} "
                         f"failed {answer['codes']}, {answer['messages']} of {wanted} messages")
    if answer["profile"]:
        print(f"\n{label}: the runner's own thread (cProfile, cumulative)\n{answer['profile']}")
    count = expected_mailboxes if expected_messages is None else expected_messages
    run = Run(label, count, answer["seconds"], answer["cpu"], most_open, answer["rss_start"],
              answer["hwm"], answer["opening_peak"])
    if answer["passes"] > 1:
        run.label += f" ({answer['passes']} passes)"
    return run


# --- the database ----------------------------------------------------------------------------------------

def set_up(lab: LabProcess, location: str, data_dir: Path, connections: int, auth: str) -> tuple[Any, SecretStore]:
    db.open_database(location)
    admin = operators.initialise(login=OPERATOR)
    profiles.create(admin, name=PROFILE, type="imap_smtp",
                    incoming_host=lab.host, incoming_port=lab.ports["imaps"], incoming_tls="implicit",
                    incoming_auth=auth, outgoing_host=lab.host, outgoing_port=lab.ports["smtp"],
                    outgoing_tls="starttls", outgoing_auth=auth, ca_file=lab.ca_file,
                    username=MASTER_LOGIN if auth == "profile" else "",
                    max_connections=connections, timeout_seconds=30, verify_delivery=False)
    settings.update(admin, default_profile=PROFILE)
    store = SecretStore.open(data_dir)
    store.unlock(MASTER_PASSWORD)
    if auth == "profile":
        credentials.set_profile_secret(admin, PROFILE, LAB_MASTER_PASSWORD, store)
    return admin, store


def enable_only(admin: Any, store: SecretStore, data_dir: Path, accounts: list[tuple[str, str]]) -> None:
    """Add ``accounts``' users and mailboxes (approved, passwords in the keyring, enabled for
    server-side sync as Test & Enable leaves them) and leave every other mailbox disabled."""
    users_csv = data_dir / "users.csv"
    users_csv.write_text("name,email\n" + "".join(f"Bench {login.split('@')[0]},{login}\n"
                                                  for login, _ in accounts), encoding="utf-8")
    imports.import_csv(admin, "users", users_csv)
    emails = [login for login, _ in accounts]
    bulk.bulk_edit(admin, Selection.of_emails(emails), incoming="server_side_sync")
    bulk.approve(admin, Selection.of_view("pending"))
    if profiles.get(PROFILE).incoming_auth == "mailbox":
        for login, password in accounts:  # each rewrites the keyring's file: slow by the thousand
            credentials.set_mailbox_secret(admin, login, password, store)
    tested = utcnow() - timedelta(days=1)  # before every appended message: R24 reads what came after
    with write_transaction():
        database.execute_sql("UPDATE mailbox SET incoming_enabled = 0")
        for start in range(0, len(emails), 500):
            chunk = emails[start:start + 500]
            database.execute_sql(
                "UPDATE mailbox SET incoming_enabled = ?, incoming_status = 'success', overall_status = 'success', "
                f"test_completed_on = ? WHERE email IN ({','.join('?' * len(chunk))})", [1, tested, *chunk])


def forget_ingest(emails: list[str]) -> None:
    """The ingest's mailboxes as before their first pass: no activities, checkpoints or counts."""
    marks = ",".join("?" * len(emails))
    ids = f"SELECT id FROM mailbox WHERE email IN ({marks})"
    with write_transaction():
        for table in ("activity_party", "activity_receipt", "email_activity"):
            database.execute_sql(f"DELETE FROM {table}")
        database.execute_sql(f"DELETE FROM sync_checkpoint WHERE mailbox_id IN ({ids})", emails)
        database.execute_sql(f"UPDATE sync_status SET items_total = 0, items_last_cycle = 0, next_due = NULL "
                             f"WHERE mailbox_id IN ({ids})", emails)


def median_run(runs: list[Run]) -> Run:
    """The run of the median rate (the lower one of an even count)."""
    return sorted(runs, key=lambda run: run.rate)[(len(runs) - 1) // 2]


def postgres_location(arguments: argparse.Namespace, servers: list) -> str | None:
    if arguments.db:
        return arguments.db
    from tests.lab.errors import LabError
    from tests.lab.postgres import start_postgres

    try:
        server = start_postgres()
    except LabError as exc:
        print(f"PostgreSQL skipped: {exc}")
        return None
    servers.append(server)
    return server.create_database("bench_sync")


# --- reporting -------------------------------------------------------------------------------------------

def print_table(title: str, unit: str, rows_in: list[tuple[str, Run, Run]], connections: int, cycle: bool) -> None:
    header = ["backend", "bare loop", "mbxtui", "mbxtui / bare", "seconds bare, mbxtui",
              "client CPU ms, bare / mbxtui", "RSS MB: start, sync peak (opening)", "most open"]
    if cycle:
        header.insert(4, f"mailboxes per {POLLING_SECONDS // 60} min")
    rows = [header]
    for backend, bare, mine in rows_in:
        ratio = mine.rate / bare.rate
        row = [backend, f"{bare.rate:.1f} {unit}", f"{mine.rate:.1f} {unit}",
               f"{ratio:.0%} {'ok' if ratio >= TARGET_RATIO else 'MISSED'}",
               f"{bare.seconds:.2f}, {mine.seconds:.2f}",
               f"{bare.cpu_seconds / bare.count * 1000:.2f} / {mine.cpu_seconds / mine.count * 1000:.2f}",
               f"{mine.rss_start_mb:.0f}, {mine.rss_peak_mb:.0f} {'ok' if mine.rss_peak_mb <= TARGET_RSS_MB else 'OVER'} "
               f"({mine.opening_peak_mb:.0f})",
               f"{bare.most_open}, {mine.most_open} {'ok' if mine.most_open <= max(connections, bare.most_open) else 'EXCEEDED'}"]
        if cycle:
            row.insert(4, f"{mine.rate * POLLING_SECONDS:,.0f}")
        rows.append(row)
        if mine.label != "mbxtui":
            print(f"  note: {backend} {mine.label}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print(f"\n{title}")
    for number, row in enumerate(rows):
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if number == 0:
            print("  " + "  ".join("-" * width for width in widths))
    print(f"  targets: mbxtui / bare >= {TARGET_RATIO:.0%}; peak RSS of the syncing process <= {TARGET_RSS_MB:g} MB; "
          f"most IMAP connections open at once (bare, mbxtui) <= {connections}\n"
          "  (counted at the server side: a connection the client closed counts until the relay sees it close, so "
          "the bare loop's 32 threads show a few more; mbxtui is held to the bound or the bare loop's figure)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: 200 mailboxes, 500 messages in 20")
    parser.add_argument("--mailboxes", type=int, default=10000, help="mailboxes of the cycle with no new mail")
    parser.add_argument("--messages", type=int, default=20000, help="messages of the ingest")
    parser.add_argument("--ingest-mailboxes", type=int, default=200)
    parser.add_argument("--big-share", type=float, default=0.05, help="share of messages with an attachment")
    parser.add_argument("--attachment-mb", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32,
                        help="the profile's max concurrent connections, and the threads of every run")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--db", metavar="postgresql://...", help="an empty PostgreSQL database to measure on")
    parser.add_argument("--only", default="cycle,ingest", help="cycle, ingest or both")
    parser.add_argument("--auth", choices=("profile", "mailbox"), default="profile",
                        help="the profile's credentials (the lab's master user acting for each mailbox: one "
                             "secret) or each mailbox's own password (one keyring entry each)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the bare loop and mbxtui, in turn")
    parser.add_argument("--profile", nargs="?", const="wall", choices=("wall", "cpu"),
                        help="print where the runner's own thread, the pool threads and the database thread spend "
                             "their time in each measured run (cpu: the pool and database threads' CPU time)")
    arguments = parser.parse_args()
    if arguments.quick:
        for name, value in QUICK.items():
            if getattr(arguments, name) == parser.get_default(name):
                setattr(arguments, name, value)
    backends = [b.strip() for b in arguments.backends.split(",") if b.strip()]
    scenarios = {s.strip() for s in arguments.only.split(",")}
    cycle_count = arguments.mailboxes if "cycle" in scenarios else 0
    ingest_count = arguments.ingest_mailboxes if "ingest" in scenarios else 0
    os.environ["PYTHON_KEYRING_BACKEND"] = NO_OS_KEYRING
    os.environ.pop(KEYRING_CHOICE_ENV, None)
    os.environ.pop(MASTER_PASSWORD_ENV, None)
    print(f"mbxtui sync benchmark: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, cycle of {cycle_count} "
          f"mailboxes, ingest of {arguments.messages if ingest_count else 0} messages in {ingest_count} mailboxes "
          f"({arguments.big_share:.0%} with {arguments.attachment_mb:g} MB), {arguments.connections} connections, {arguments.auth} credentials, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    cycles: list[tuple[str, Run, Run]] = []
    ingests: list[tuple[str, Run, Run]] = []
    servers: list = []
    with tempfile.TemporaryDirectory(prefix="mbxtui-bench-sync-") as scratch:
        work = Path(scratch)
        try:
            started = time.perf_counter()
            with LabProcess(work / "lab", cycle_count + ingest_count) as lab:
                cycle_accounts, ingest_accounts = lab.accounts[:cycle_count], lab.accounts[cycle_count:]
                print(f"lab started with {len(lab.accounts)} users in {time.perf_counter() - started:.1f} s", flush=True)
                if ingest_accounts:
                    started = time.perf_counter()
                    big = append_messages(lab, ingest_accounts, arguments.messages, arguments.big_share,
                                          arguments.attachment_mb)
                    print(f"{arguments.messages} messages ({big} with the attachment) appended in "
                          f"{time.perf_counter() - started:.1f} s", flush=True)
                    # Unmeasured: Dovecot builds its index caches on the first read.
                    run_bare(lab, "warm-up", bare_ingest, ingest_accounts, arguments.connections,
                             arguments.auth)
                if cycle_accounts:
                    run_bare(lab, "warm-up", bare_cycle, cycle_accounts, arguments.connections,
                             arguments.auth)
                for backend in backends:
                    location = (str(work / "mbxtui.db") if backend == "sqlite"
                                else postgres_location(arguments, servers))
                    if location is None:
                        continue
                    data_dir = work / f"data-{backend}"
                    data_dir.mkdir(mode=0o700)
                    admin, store = set_up(lab, location, data_dir, arguments.connections, arguments.auth)
                    if cycle_accounts:
                        started = time.perf_counter()
                        enable_only(admin, store, data_dir, cycle_accounts)
                        print(f"{backend}: {len(cycle_accounts)} mailboxes set up in "
                              f"{time.perf_counter() - started:.1f} s", flush=True)
                        # Unmeasured: the first pass writes every mailbox's status and checkpoint.
                        run_mbxtui(lab, admin, location, data_dir, "first pass", arguments.connections,
                                   len(cycle_accounts), None)
                        bares, mines = [], []
                        for _ in range(max(1, arguments.repeat)):
                            bares.append(run_bare(lab, "bare loop", bare_cycle, cycle_accounts,
                                                  arguments.connections, arguments.auth))
                            mines.append(run_mbxtui(lab, admin, location, data_dir, "mbxtui", arguments.connections,
                                                    len(cycle_accounts), None, arguments.profile))
                            print(f"  cycle: bare loop {bares[-1].rate:.1f}/s, mbxtui {mines[-1].rate:.1f}/s "
                                  f"({mines[-1].rate / bares[-1].rate:.0%}, load {os.getloadavg()[0]:.1f})", flush=True)
                        cycles.append((backend, median_run(bares), median_run(mines)))
                    if ingest_accounts:
                        enable_only(admin, store, data_dir, ingest_accounts)
                        bares, mines = [], []
                        for repeat in range(max(1, arguments.repeat)):
                            if repeat:
                                forget_ingest([login for login, _ in ingest_accounts])
                            bares.append(run_bare(lab, "bare loop", bare_ingest, ingest_accounts,
                                                  arguments.connections, arguments.auth))
                            mines.append(run_mbxtui(lab, admin, location, data_dir, "mbxtui", arguments.connections,
                                                    len(ingest_accounts), arguments.messages, arguments.profile))
                            print(f"  ingest: bare loop {bares[-1].rate:.1f}/s, mbxtui {mines[-1].rate:.1f}/s "
                                  f"({mines[-1].rate / bares[-1].rate:.0%}, load {os.getloadavg()[0]:.1f})", flush=True)
                        ingests.append((backend, median_run(bares), median_run(mines)))
                    database.close()
        finally:
            for server in servers:
                server.stop()
    medians = f" (medians of {arguments.repeat} runs)" if arguments.repeat > 1 else ""
    if cycles:
        print_table(f"cycle of {cycle_count} mailboxes with no new mail{medians}", "mailboxes/s", cycles,
                    arguments.connections, cycle=True)
    if ingests:
        print_table(f"ingest of {arguments.messages} messages in {ingest_count} mailboxes{medians}", "messages/s", ingests,
                    arguments.connections, cycle=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
