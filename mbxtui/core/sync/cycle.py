"""What every incoming cycle shares, whatever the protocol: the mailbox it reads (frozen for a pool
thread), what it counts, and what it returns to the runner."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from mbxtui.core.mailbox_check import MailboxSnapshot, ProfileSnapshot
from mbxtui.core.probes.base import Failure, ProbeResult
from mbxtui.core.sync import store
from mbxtui.core.sync.routing import Party

FOLDER = "INBOX"


@dataclass(frozen=True)
class SyncTarget:
    """What a cycle needs to know of its mailbox, frozen for a pool thread."""

    mailbox: MailboxSnapshot
    profile: ProfileSnapshot
    min_polling_minutes: int  # R24
    own: Party | None  # the user or queue the mailbox belongs to; None for a forward mailbox
    delete_after_processing: bool  # R18: forward mailboxes always (R26), queues when asked
    reads_after: datetime  # R24: messages received before it are never processed
    processed_folder: str | None = None  # R28: IMAP moves what it deletes here instead
    # The worker whose claim the cycle runs under: every write checks the mailbox is still its own.
    claimed_by: str | None = None
    # Its checkpoints by folder as the runner read them once it held the claim (one query for the
    # pass, not one round trip per cycle to the pass's database thread); None: the cycle reads them.
    checkpoints: Mapping[str, store.Checkpoint] | None = None

    def checkpoint(self, folder: str) -> store.Checkpoint | None:
        if self.checkpoints is not None:
            return self.checkpoints.get(folder)
        return store.checkpoint(self.mailbox.id, folder)

    @property
    def is_forward(self) -> bool:
        return self.own is None


@dataclass
class CycleCounts:
    messages: int = 0
    recorded: int = 0
    unresolved: int = 0
    deleted: int = 0  # deleted, or moved to the processed folder
    more: bool = False  # stopped at the time bound with messages left


@dataclass
class CycleResult:
    probe: ProbeResult
    counts: CycleCounts = field(default_factory=CycleCounts)
    handed_over: bool = False  # stopped because another worker claimed the mailbox (its lease ran out)

    @property
    def failure(self) -> Failure | None:
        return self.probe.failure
