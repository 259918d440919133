"""One incoming cycle of one mailbox (R24–R28), over the protocol its profile speaks: IMAP
(``imap_cycle``) or POP3 (``pop3_cycle``). Both log in as Test & Enable does (the probe's session:
TLS, timeouts, credentials, classification), record each batch with its checkpoint in one
transaction (``store``), and only then delete what the mailbox deletes after processing.

The cycle ends within the profile's timeout: a mailbox with more new mail than fits is due again at
once and goes on from its checkpoint."""

from __future__ import annotations

from datetime import datetime

from mbxtui.core.enums import ProfileType
from mbxtui.core.mailbox_check import SecretLookup, Withheld, credentials_for, endpoint, withheld_failure
from mbxtui.core.probes.session import ProbeSession
from mbxtui.core.sync import imap_cycle, pop3_cycle, store
from mbxtui.core.sync.cycle import CycleCounts, CycleResult, SyncTarget
from mbxtui.core.sync.routing import Party

__all__ = ["CycleCounts", "CycleResult", "SyncTarget", "run_cycle"]


def run_cycle(target: SyncTarget, secret: SecretLookup, candidates: dict[str, Party] | None,
              clock_now: datetime) -> CycleResult:
    """``candidates``: for a forward mailbox, the users and queues it routes to (R26)."""
    credentials = credentials_for("incoming", target.mailbox, target.profile, secret)
    if isinstance(credentials, Withheld):  # R34: not confirmed for this endpoint, or in clear
        return CycleResult(withheld_failure(credentials))
    pop3 = target.profile.type == ProfileType.POP3_SMTP
    session = ProbeSession("pop3" if pop3 else "imap", endpoint(target.profile, "incoming"), credentials)
    counts = CycleCounts()
    converse = pop3_cycle.converse if pop3 else imap_cycle.converse
    handed_over = False

    def conversation() -> None:
        nonlocal handed_over
        try:
            converse(session, target, candidates, counts, clock_now)
        except store.ClaimLost:  # nothing of it written: the cycle ends, its connection closes
            handed_over = True

    probe = session.run(conversation)
    return CycleResult(probe, counts, handed_over)
