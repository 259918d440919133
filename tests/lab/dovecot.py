"""A private Dovecot instance (IMAP, POP3, LMTP) on 127.0.0.1, started and stopped by PID."""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import signal
import smtplib
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .accounts import BASE_USERS, Accounts, MailOwner
from .certs import LabCertificates
from .errors import LabError

LMTP = "/usr/lib/dovecot/lmtp"
INSTALL_HINT = ("install it with scripts/install-test-deps "
                "(Debian packages dovecot-imapd dovecot-pop3d dovecot-lmtpd)")
PORT_KEYS = ("imap", "imaps", "pop3", "pop3s")
# Used when running as root: Dovecot refuses uid 0 for mail.
ROOT_MAIL_OWNER = MailOwner(uid=10000, gid=10000)

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
DELIVERY_TIMEOUT = 10.0
START_ATTEMPTS = 3  # ports are picked free but may be taken before Dovecot binds them
# IMAP/POP3 sessions per instance: 256 drops connections when a profile opens its maximum of 300.
MAIL_PROCESS_LIMIT = 1024


def mail_owner() -> MailOwner:
    if os.geteuid() == 0:
        return ROOT_MAIL_OWNER
    return MailOwner(uid=os.getuid(), gid=os.getgid())


def find_dovecot() -> str:
    """The dovecot binary, or a LabError saying how to install it."""
    found = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/sbin")
    if not found or not os.access(LMTP, os.X_OK):
        raise LabError(f"Dovecot is not installed (dovecot or {LMTP} missing): {INSTALL_HINT}")
    return found


@dataclass
class DovecotPaths:
    config: Path
    log: Path
    output: Path  # the master's own stdout/stderr (configuration errors land here)
    base_dir: Path
    state_dir: Path


class Dovecot:
    def __init__(self, binary: str, workdir: Path, spool: Path, accounts: Accounts,
                 certificates: LabCertificates):
        self.binary = binary
        self.accounts = accounts
        self.certificates = certificates
        self.paths = DovecotPaths(
            config=workdir / "dovecot.conf",
            log=workdir / "dovecot.log",
            output=workdir / "dovecot.out",
            # Unix socket paths are limited to 108 bytes: keep base_dir in the short spool path.
            base_dir=spool / "run",
            state_dir=spool / "state",
        )
        self.ports: dict[str, int] = {}
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        for attempt in range(1, START_ATTEMPTS + 1):
            self.ports = dict(zip(PORT_KEYS, _free_ports(len(PORT_KEYS))))
            self._write_config()
            shutil.rmtree(self.paths.base_dir, ignore_errors=True)
            self.paths.state_dir.mkdir(parents=True, exist_ok=True)
            self.paths.log.write_text("")  # so log_tail() shows this attempt only
            with open(self.paths.output, "wb") as output:
                self._process = subprocess.Popen(
                    _ending_with_this_process() + [self.binary, "-F", "-c", str(self.paths.config)],
                    stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                self._wait_until_ready()
                return
            except LabError:
                self.stop()
                if attempt == START_ATTEMPTS or "Address already in use" not in self.log_tail():
                    raise

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        # The master takes its children down with it; this catches any that outlived it.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(STOP_TIMEOUT)

    def deliver(self, recipient: str, sender: str, message: bytes) -> str | None:
        """Deliver one message into a Maildir over Dovecot's LMTP socket; the error text, or None.
        (LMTP rather than a dovecot-lda process per message: a fork and exec cost about 20 ms, which
        made the lab, not the client, the limit of Test & Enable benchmarks.)"""
        try:
            with smtplib.LMTP(str(self.paths.base_dir / "lmtp"), timeout=DELIVERY_TIMEOUT) as lmtp:
                lmtp.sendmail(sender or "<>", [recipient], message)
        except smtplib.SMTPException as exc:
            return f"LMTP delivery refused: {exc}"
        except OSError as exc:
            return f"LMTP delivery failed: {exc}"
        return None

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.paths.output, self.paths.log):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts)

    def _wait_until_ready(self) -> None:
        """Ready means a real IMAP login works (listener, login process and auth all up)."""
        login, password = next(iter(BASE_USERS.items()))
        deadline = time.monotonic() + READY_TIMEOUT
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LabError(f"Dovecot exited with status {self._process.returncode} while "
                               f"starting.\n{self.log_tail()}")
            try:
                with imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=2) as client:
                    client.login(login, password)
                    client.logout()
                with socket.create_connection(("127.0.0.1", self.ports["pop3"]), timeout=2) as pop3:
                    if not pop3.recv(64).startswith(b"+OK"):
                        raise LabError("the POP3 listener did not greet with +OK")
                return
            except (OSError, imaplib.IMAP4.error, LabError) as error:
                last_error = error
                time.sleep(0.02)
        raise LabError(f"Dovecot did not accept a login within {READY_TIMEOUT} s "
                       f"(last error: {last_error!r}).\n{self.log_tail()}")

    def _write_config(self) -> None:
        self.paths.config.write_text(self._config_text(), encoding="utf-8")

    def _config_text(self) -> str:
        paths, ports, certificates = self.paths, self.ports, self.certificates
        owner = self.accounts.owner
        if os.geteuid() == 0:
            process_owners = ""
            unchrooted = ""
        else:
            user = pwd.getpwuid(os.getuid()).pw_name
            group = grp.getgrgid(os.getgid()).gr_name
            process_owners = (f"default_internal_user = {user}\n"
                              f"default_internal_group = {group}\n"
                              f"default_login_user = {user}\n")
            unchrooted = "  chroot =\n"  # only root may chroot
        return f"""\
# Private Dovecot for the mbxtui test lab. Generated; do not edit.
base_dir = {paths.base_dir}
state_dir = {paths.state_dir}
log_path = {paths.log}
info_log_path = {paths.log}
instance_name = mbxtui-lab-{os.getpid()}
{process_owners}
listen = 127.0.0.1
protocols = imap pop3 lmtp
ssl = yes
ssl_cert = <{certificates.server_cert_file}
ssl_key = <{certificates.server_key_file}
# Plaintext LOGIN is accepted (TLS mode "none" must work); refusing it is the client's job.
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
auth_master_user_separator = *
mail_location = maildir:~/Maildir
mail_max_userip_connections = 1000
first_valid_uid = {min(owner.uid, 500)}
postmaster_address = postmaster@example.test
hostname = mail.example.test

passdb {{
  driver = passwd-file
  master = yes
  args = scheme=PLAIN {self.accounts.masters_file}
  result_success = continue
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.accounts.users_file}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.accounts.users_file}
}}

service anvil {{
  # No login delay after failed logins: tests fail logins on purpose.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
{unchrooted}}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {ports["imap"]}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {ports["imaps"]}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 2
{unchrooted}}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {ports["pop3"]}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {ports["pop3s"]}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 2
{unchrooted}}}
service imap {{
  service_count = 0
  process_limit = {MAIL_PROCESS_LIMIT}
}}
service pop3 {{
  service_count = 0
  process_limit = {MAIL_PROCESS_LIMIT}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0600
  }}
  process_min_avail = 2
  process_limit = {MAIL_PROCESS_LIMIT}
}}
"""


def _ending_with_this_process() -> list[str]:
    """A command prefix that sends SIGTERM to the command when the thread that started it dies,
    so a test process killed before stop() leaves no Dovecot behind."""
    setpriv = shutil.which("setpriv") or shutil.which("setpriv", path="/usr/bin:/bin")
    return [setpriv, "--pdeathsig", "TERM"] if setpriv else []


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
