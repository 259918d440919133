"""Test & Enable by several `mbxtui worker` processes at once (issue 7): 1, 2 and 4 workers over the
same mailboxes, the profile's connection bound shared by all of them, printed beside the bound.

    .venv/bin/python bench/workers.py [--mailboxes 1000] [--connections 32] [--workers 1,2,4]
                                      [--backends sqlite,postgresql] [--db postgresql://...]

On SQLite a database file; on PostgreSQL the database ``--db`` names (an empty one: the bench
creates its schema and rows), else a private server started like the test suite's
(tests/lab/postgres.py), skipped with a note when PostgreSQL is not installed.

The lab (Dovecot and the Python SMTP server) runs in a process of its own, as in test_enable.py. The
database gets the same profile as there (IMAPS, SMTP with STARTTLS, each mailbox's own password from
the encrypted-file keyring, verify delivery off, max concurrent connections ``--connections``) and
one approved mailbox per lab user. For each worker count: that many `mbxtui worker` processes
(``--threads`` as many as the bound, ``--poll 0.1``) are started and left to start up, then every
mailbox of the profile is scheduled at once and the clock runs until no job of the batch is queued
or running; the workers are then stopped with SIGTERM. The run is refused unless every mailbox
passed. Each run goes through new connection counters in front of IMAPS and SMTP, which report the
most connections open at once at each server.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.lab lives beside the package, not in it

from bench.test_enable import LabProcess  # noqa: E402
from mbxtui.core import db  # noqa: E402
from mbxtui.core.jobs import queue as jobs  # noqa: E402
from mbxtui.core.models import Alert, database  # noqa: E402
from mbxtui.core.secrets import KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV, SecretStore  # noqa: E402
from mbxtui.core.services import bulk, credentials, enablement, imports, operators, profiles, settings  # noqa: E402
from mbxtui.core.services.selection import Selection  # noqa: E402

MASTER_PASSWORD = "bench master password"
PROFILE = "lab"
NO_OS_KEYRING = "keyring.backends.fail.Keyring"
WORKER_START_SECONDS = 3.0  # Python and mbxtui's imports: about 0.5 s a process, four at once on 2 cores
RUN_TIMEOUT = 300.0
STOP_TIMEOUT = 30.0
TARGET_RATE = 100.0  # issue 3's target for one machine, for reference


@dataclass
class Run:
    backend: str
    workers: int
    mailboxes: int
    seconds: float
    load: float
    connections: dict[str, tuple[int, int]]

    @property
    def rate(self) -> float:
        return self.mailboxes / self.seconds


def set_up(lab: LabProcess, location: str, data_dir: Path, connections: int):
    """The database (its first operator is the OS login, as the workers see it), the profile, the
    approved mailboxes, and each mailbox's password in the encrypted file."""
    db.open_database(location)
    admin = operators.initialise()
    profiles.create(admin, name=PROFILE, type="imap_smtp",
                    incoming_host=lab.host, incoming_port=lab.ports["imaps"], incoming_tls="implicit",
                    incoming_auth="mailbox", outgoing_host=lab.host, outgoing_port=lab.ports["smtp"],
                    outgoing_tls="starttls", outgoing_auth="mailbox", ca_file=lab.ca_file,
                    max_connections=connections, timeout_seconds=30, verify_delivery=False)
    settings.update(admin, default_profile=PROFILE)
    users_csv = data_dir / "users.csv"
    users_csv.write_text("name,email\n" + "".join(f"Bench {login.split('@')[0]},{login}\n"
                                                  for login, _ in lab.accounts), encoding="utf-8")
    imports.import_csv(admin, "users", users_csv)
    bulk.approve(admin, Selection.of_view("pending"))
    store = SecretStore.open(data_dir)
    store.unlock(MASTER_PASSWORD)
    for login, password in lab.accounts:
        credentials.set_mailbox_secret(admin, login, password, store)
    return admin


def worker_env(data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in (KEYRING_CHOICE_ENV, "MBXTUI_DB")}
    env.update({"PYTHON_KEYRING_BACKEND": NO_OS_KEYRING, "MBXTUI_DATA_DIR": str(data_dir),
                MASTER_PASSWORD_ENV: MASTER_PASSWORD})
    return env


def run_workers(lab: LabProcess, admin, backend: str, location: str, data_dir: Path, count: int,
                connections: int) -> Run:
    imap_port, smtp_port = lab.count_connections()
    profiles.update(admin, PROFILE, incoming_port=imap_port, outgoing_port=smtp_port)
    # R34: the counting relays are a new endpoint; the same lab servers stand behind them.
    credentials.confirm_mailbox_secrets(admin, Selection.of_profile(PROFILE))
    command = [sys.executable, "-m", "mbxtui", "--db", location, "worker", "--threads", str(connections),
               "--poll", "0.1"]
    workers = [subprocess.Popen(command, env=worker_env(data_dir), cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for _ in range(count)]
    try:
        time.sleep(WORKER_START_SECONDS)
        for worker in workers:
            if worker.poll() is not None:
                raise SystemExit(f"a worker ended at start: {worker.communicate()[1]}")
        load = os.getloadavg()[0]
        alerts_before = Alert.select().count()
        started = time.perf_counter()
        batch = enablement.schedule(admin, Selection.of_profile(PROFILE)).batch_id
        deadline = time.monotonic() + RUN_TIMEOUT
        while database.execute_sql(
                "SELECT count(*) FROM test_job WHERE batch_id = ? AND state IN ('queued', 'running')",
                [batch]).fetchone()[0]:
            if time.monotonic() > deadline:
                raise SystemExit(f"{count} workers: not done in {RUN_TIMEOUT:g} s: {jobs.batch_progress(batch)}")
            time.sleep(0.02)
        seconds = time.perf_counter() - started
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        errors = []
        for worker in workers:
            try:
                _, stderr = worker.communicate(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                worker.kill()
                _, stderr = worker.communicate(timeout=5)
            if worker.returncode != 0:
                errors.append(f"exit {worker.returncode}: {stderr.strip()[-500:]}")
    if errors:
        raise SystemExit(f"{count} workers: " + "; ".join(errors))
    progress = jobs.batch_progress(batch)
    alerts = Alert.select().count() - alerts_before
    if progress.passed != len(lab.accounts) or alerts != len(lab.accounts):
        raise SystemExit(f"{count} workers: {progress.as_dict()}, {alerts} alerts")
    return Run(backend, count, len(lab.accounts), seconds, load, lab.counted())


def print_runs(runs: list[Run], connections: int) -> None:
    rows = [("backend", "workers", "seconds", "mailboxes/s", "load", "most connections open (IMAP, SMTP)", "bound")]
    for run in runs:
        most = max(opened for opened, _ in run.connections.values())
        rows.append((run.backend, str(run.workers), f"{run.seconds:.2f}", f"{run.rate:.1f}", f"{run.load:.1f}",
                     ", ".join(f"{opened} of {total}" for opened, total in run.connections.values()),
                     f"<= {connections} {'ok' if most <= connections else 'EXCEEDED'}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for number, row in enumerate(rows):
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if number == 0:
            print("  " + "  ".join("-" * width for width in widths))
    print(f"\n(for reference: issue 3's target for one machine is {TARGET_RATE:g} mailboxes/s)")


def postgres_location(arguments, stack: list):
    """The PostgreSQL URL to measure on, or None (with a note) when there is none."""
    if arguments.db:
        return arguments.db
    from tests.lab.errors import LabError
    from tests.lab.postgres import start_postgres

    try:
        server = start_postgres()
    except LabError as exc:
        print(f"PostgreSQL skipped: {exc}")
        return None
    stack.append(server)
    return server.create_database("bench_workers")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=32,
                        help="the profile's max concurrent connections, across all workers")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure, comma separated")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--db", metavar="postgresql://...", help="an empty PostgreSQL database to measure on")
    arguments = parser.parse_args()
    counts = [int(n) for n in arguments.workers.split(",")]
    backends = [b.strip() for b in arguments.backends.split(",") if b.strip()]
    os.environ["PYTHON_KEYRING_BACKEND"] = NO_OS_KEYRING
    os.environ.pop(KEYRING_CHOICE_ENV, None)
    os.environ.pop(MASTER_PASSWORD_ENV, None)
    print(f"mbxtui workers benchmark: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"{arguments.mailboxes} mailboxes, {arguments.connections} connections across all workers, "
          f"load average {os.getloadavg()[0]:.1f}")
    runs: list[Run] = []
    servers: list = []
    with tempfile.TemporaryDirectory(prefix="mbxtui-bench-workers-") as scratch:
        work = Path(scratch)
        try:
            with LabProcess(work / "lab", arguments.mailboxes) as lab:
                for backend in backends:
                    location = str(work / "mbxtui.db") if backend == "sqlite" else postgres_location(arguments, servers)
                    if location is None:
                        continue
                    data_dir = work / f"data-{backend}"
                    data_dir.mkdir(mode=0o700)
                    started = time.perf_counter()
                    admin = set_up(lab, location, data_dir, arguments.connections)
                    print(f"{backend}: database and {len(lab.accounts)} keyring passwords set up in "
                          f"{time.perf_counter() - started:.1f} s")
                    # Unmeasured: Dovecot starts its mail processes, the lab's delivery path warms up.
                    run_workers(lab, admin, backend, location, data_dir, 1, arguments.connections)
                    for count in counts:
                        run = run_workers(lab, admin, backend, location, data_dir, count, arguments.connections)
                        print(f"  {count} workers: {run.rate:.1f} mailboxes/s", flush=True)
                        runs.append(run)
                    database.close()
        finally:
            for server in servers:
                server.stop()
    print_runs(runs, arguments.connections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
