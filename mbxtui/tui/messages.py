"""Messages that worker threads post to the console (``post_message`` is thread-safe)."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message

from mbxtui.core.jobs.runner import MailboxTested


@dataclass
class MailboxesTested(Message):
    """Results just written by the Test & Enable runner."""

    events: list[MailboxTested] = field(default_factory=list)


@dataclass
class RunnerStopped(Message):
    error: str | None = None


@dataclass
class DataChanged(Message):
    """Something changed the mailboxes: screens showing them reload."""

    mailbox_ids: list[int] | None = None


@dataclass
class ChangesUnavailable(Message):
    """The database's change signal was lost: other consoles' changes show after it is back."""

    error: str = ""
