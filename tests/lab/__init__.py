"""Real mail servers on 127.0.0.1 for the test suite and the benchmarks.

    lab = start_lab(workdir)   # or the session fixture `mail_lab`, or `python -m tests.lab`
    ...
    lab.stop()

Ports (`lab.ports[key]`, free ports picked at start):
    imap / pop3          Dovecot, STARTTLS / STLS offered (plaintext login also accepted)
    imaps / pop3s        Dovecot, implicit TLS
    smtp                 submission: STARTTLS offered and required before AUTH; AUTH before MAIL
    smtps                implicit TLS, AUTH before MAIL
    smtp_plain           no STARTTLS, AUTH offered in clear; see lab.smtp_auth_attempts(key)
    imap_nostarttls      Dovecot without STARTTLS (hidden and refused); see lab.login_attempts(key)
    pop3_nostls          the same for POP3 and STLS
    imaps_wrong_host     implicit TLS, certificate from the lab CA for other.example.test only
    smtps_wrong_host     the same for SMTP
    refused              nothing listens
    silent               accepts and never sends a byte

Certificates: lab.ca_file signed every server certificate (valid for 127.0.0.1 and localhost);
lab.wrong_ca_file is an unrelated CA.

Accounts (lab.users, login -> password): alice@, bob@, jose@ (non-ASCII password) and the
disabled user (right password, refused) at example.test, plus lab.add_users(n). The master user
(lab.master_login) acts for any enabled user: IMAP/SMTP AUTH PLAIN with the user as authzid, or
login "user*master". SMTP refuses RCPT for unknown addresses with 550 5.1.1 and for
busy@example.test with 451 4.3.0; accepted mail is delivered into the Dovecot Maildirs
(lab.messages(login), or read it over IMAP). A failed Dovecot login takes about 0.5 s.
"""

from .errors import LabError
from .mail_lab import MailLab, start_lab
from .proxies import ConnectionCounter

__all__ = ["ConnectionCounter", "LabError", "MailLab", "start_lab"]
