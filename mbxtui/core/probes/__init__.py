"""Protocol probes: really connect to an IMAP, POP3 or SMTP server the way a profile says, and
report each step with a classified failure (see ``base``). One module per protocol::

    from mbxtui.core.probes import imap, pop3, smtp
    result = imap.probe(Endpoint("mail.example.com", 993, "implicit"), Credentials("password", ...))
"""

from mbxtui.core.probes import imap, pop3, smtp
from mbxtui.core.probes.base import (
    Credentials,
    Endpoint,
    ErrorCode,
    Failure,
    ProbeResult,
    Step,
    StepResult,
    is_transient,
)

__all__ = [
    "Credentials",
    "Endpoint",
    "ErrorCode",
    "Failure",
    "ProbeResult",
    "Step",
    "StepResult",
    "imap",
    "is_transient",
    "pop3",
    "smtp",
]
