"""A private PostgreSQL cluster on 127.0.0.1 for the test suite, started and stopped by PID.

    server = start_postgres()               # or the session fixture in tests/conftest.py
    url = server.create_database("t1", template="mbxtui_template")
    ...
    server.stop()

``initdb`` into a fresh directory under the system temporary directory (short enough for the unix
socket's path), trust authentication for loopback only, a unix socket in
the same directory, fsync off (a crash loses nothing a test needs). PostgreSQL refuses to run as
root: as root the cluster runs as the ``postgres`` OS user, which owns the directory. The server is
started as that user directly (not through runuser, which would stand between this process and the
server's PID and keep the shutdown signal from it). The binaries
come from the Debian packages (``/usr/lib/postgresql/VERSION/bin``), never from PATH.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LabError

INSTALL_HINT = "install it with scripts/install-test-deps (Debian package postgresql)"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
COMMAND_TIMEOUT = 60.0
START_ATTEMPTS = 3  # the port is picked free but may be taken before the server binds it
SUPERUSER = "postgres"
# The tests connect as a superuser named after the OS account running them: on PostgreSQL the
# operator is the session's role (R35), so the login that initialises a test database is the same
# on both backends.
TEST_LOGIN = pwd.getpwuid(os.geteuid()).pw_name


def find_binaries() -> Path:
    """The newest installed PostgreSQL's bin directory, or a LabError saying how to install it."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda path: int(Path(path).parent.parent.name) if Path(path).parent.parent.name.isdigit() else 0)
    if not found:
        raise LabError(f"PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): {INSTALL_HINT}")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    bin_dir: Path
    data_dir: Path
    socket_dir: Path
    log: Path
    port: int
    process: subprocess.Popen
    run_as: dict
    version: int = 0  # the major version, from the bin directory's path
    _admin: Any = None

    def url(self, database: str, user: str = TEST_LOGIN) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the unix socket; raises LabError with psql's message."""
        completed = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
             "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql],
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        if completed.returncode != 0:
            raise LabError(f"psql failed ({sql[:80]}): {completed.stderr.strip()}")
        return completed.stdout.strip()

    def admin(self, sql: str) -> None:
        """Run one statement as the superuser on a connection kept for it (a database is made and
        dropped per test: this saves starting psql each time)."""
        import psycopg2

        if self._admin is None or self._admin.closed:
            self._admin = psycopg2.connect(host=str(self.socket_dir), port=self.port, user=SUPERUSER,
                                           dbname="postgres")
            self._admin.autocommit = True
        with self._admin.cursor() as cursor:
            cursor.execute(sql)

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database (a copy of ``template`` when given); returns its URL."""
        # Copying the template's files beats writing it through the WAL (PostgreSQL 15's default)
        # for the small databases of the tests.
        clause = f' TEMPLATE "{template}"{" STRATEGY = FILE_COPY" if self.version >= 15 else ""}' if template else ""
        self.admin(f'CREATE DATABASE "{name}"{clause}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def shut_down(self) -> list[str]:
        """Fast shutdown (SIGINT, as ``pg_ctl stop -m fast``: open sessions rolled back), the cluster
        kept; returns the command line that starts the same server again (``start_again``)."""
        command = Path(f"/proc/{self.process.pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)
        return [part.decode() for part in command]

    def start_again(self, command: list[str]) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                            cwd=self.data_dir.parent, **self.run_as)
        if not _wait_ready(self):
            raise LabError(f"PostgreSQL did not start again:\n{self.log_tail()}")

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
        if self.process.poll() is None:
            # SIGINT: "fast" shutdown, which rolls back open sessions instead of waiting for them.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)  # the whole cluster directory


def _as_cluster_owner(workdir: Path) -> dict:
    """Popen arguments that run the server binaries as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        raise LabError(f"running as root needs the postgres OS user to run PostgreSQL: {INSTALL_HINT}") from None
    for directory in (workdir, *workdir.rglob("*")):
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": [],
            "env": {**os.environ, "HOME": owner.pw_dir, "USER": "postgres", "LOGNAME": "postgres"}}


def start_postgres(settings: dict[str, str] | None = None) -> PostgresServer:
    """A new cluster; ``settings`` are more server settings (e.g. ``{"ssl": "on", ...}``)."""
    bin_dir = find_binaries()
    cluster = Path(tempfile.mkdtemp(prefix="mbxtui-pg-"))
    data_dir, socket_dir = cluster / "data", cluster / "run"
    socket_dir.mkdir(mode=0o700)
    log = cluster / "postgres.log"
    log.touch()
    run_as = _as_cluster_owner(cluster)
    initdb = subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, "--auth=trust",
         "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT, cwd=cluster, **run_as)
    if initdb.returncode != 0:
        raise LabError(f"initdb failed: {initdb.stderr.strip() or initdb.stdout.strip()}")
    # Loopback only: the server listens on 127.0.0.1 and trusts nobody else.
    (data_dir / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 trust\n")
    last_error = ""
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        command = [str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port),
                   "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={socket_dir}",
                   "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                   "-c", "max_connections=300", "-c", "shared_buffers=128MB",
                   "-c", "max_wal_size=4GB", "-c", "checkpoint_timeout=1h"]
        for name, value in (settings or {}).items():
            command += ["-c", f"{name}={value}"]
        with log.open("ab") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                       cwd=cluster, **run_as)
        server = PostgresServer(bin_dir, data_dir, socket_dir, log, port, process, run_as,
                                version=int(bin_dir.parent.name) if bin_dir.parent.name.isdigit() else 0)
        if _wait_ready(server):
            if TEST_LOGIN != SUPERUSER:
                server.admin(f'CREATE ROLE "{TEST_LOGIN}" SUPERUSER LOGIN')
            return server
        last_error = server.log_tail()
        server.process.kill()
        server.process.wait(timeout=STOP_TIMEOUT)
    shutil.rmtree(cluster, ignore_errors=True)
    raise LabError(f"PostgreSQL did not start within {START_TIMEOUT:.0f} s:\n{last_error}")


def _wait_ready(server: PostgresServer) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        ready = subprocess.run([str(server.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(server.port),
                                "-U", SUPERUSER], timeout=COMMAND_TIMEOUT)
        if ready.returncode == 0:
            return True
        time.sleep(0.05)
    return False
