"""Messages that worker threads post to the console (``post_message`` is thread-safe): each load
and each service call run off the UI thread comes back as one of these (see ``tui/workers.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from textual.message import Message

if TYPE_CHECKING:  # annotations only: importing the runners here would cost the console's first frame
    from mbxtui.core.jobs.queue import JobResult, Progress
    from mbxtui.core.jobs.runner import MailboxTested
    from mbxtui.core.permissions import Actor
    from mbxtui.core.services.profile_mailboxes import ProfileMailboxes
    from mbxtui.core.services.profiles import ProfileRecord
    from mbxtui.core.services.mailbox_views import SyncRow
    from mbxtui.core.services.sync_monitor import SyncSnapshot
    from mbxtui.core.sync.runner import SyncSummary


@dataclass
class ConsoleOpened(Message):
    """The database is open and the operator known: the console's screens can load."""

    actor: Actor


@dataclass
class ConsoleReady(Message):
    """The secret store, the change watcher and the WAL checkpoints are started (or said why not)."""


@dataclass
class ConsoleNotOpened(Message):
    """Opening the database or the operator failed: the console closes and says why."""

    error: BaseException


@dataclass
class MailboxesTested(Message):
    """Results just written by the Test & Enable runner."""

    events: list[MailboxTested] = field(default_factory=list)


@dataclass
class RunnerStopped(Message):
    error: str | None = None


@dataclass
class MailboxesProcessed(Message):
    """A processing pass just ended (``console --process``, the demo): what it cycled."""

    summary: SyncSummary


@dataclass
class DataChanged(Message):
    """Something changed the mailboxes: screens showing them reload."""

    mailbox_ids: list[int] | None = None


@dataclass
class ChangesUnavailable(Message):
    """The database's change signal was lost: other consoles' changes show after it is back."""

    error: str = ""


# -- the one error of a worker's service call --

@dataclass
class ServiceFailed(Message):
    """A service call in a worker was refused (``MbxError``: its message is for the operator) or
    failed unexpectedly (logged with its traceback). Posted to the node that asked; the app's one
    handler shows it unless the node stopped it (a form shows bad input beside its field)."""

    group: str
    title: str
    problem: str
    error: Exception


# -- loads --

@dataclass
class BatchProgressLoaded(Message):
    """The progress of the Test & Enable batches the console watches."""

    progress: list[Progress]


@dataclass
class ListPageLoaded(Message):
    """One page of a list screen: where it starts, the total when known, and its rows."""

    page_start: int
    total: int | None
    rows: list[dict[str, Any]]


@dataclass
class MailboxDetailLoaded(Message):
    """A mailbox's fields (None: it no longer exists), its last test, alerts, history and sync status."""

    mailbox_id: int
    row: dict[str, Any] | None
    last_test: JobResult | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    sync: SyncRow | None = None


@dataclass
class SyncSnapshotLoaded(Message):
    """The Sync monitor's figures, and how long reading them took (the next read waits longer when
    reading is slow)."""

    snapshot: SyncSnapshot
    seconds: float


@dataclass
class ProfileDetailLoaded(Message):
    """A profile's settings, its alerts and the first page of its mailboxes."""

    profile: ProfileRecord
    alerts: list[dict[str, Any]]
    mailboxes: ProfileMailboxes


@dataclass
class ProfileMailboxesLoaded(Message):
    page: ProfileMailboxes


@dataclass
class FormDataLoaded(Message):
    """What a form needs before it can be shown (the profiles to choose from, the record)."""

    data: Any


@dataclass
class ProfileNamesLoaded(Message):
    names: list[str]


@dataclass
class Unlocked(Message):
    """The secrets store took the master password."""


# -- actions done --

@dataclass
class Done(Message):
    """A single change (approve, dismiss, deactivate, remove, save) went through: ``then`` runs on
    the UI thread with the service's answer."""

    result: Any
    then: Callable[[Any], None]
