"""Asking for Test & Enable (R8): the request is queued at once and run in the background by the
job runner (``mbxtui.core.jobs.runner``), which this module does not import."""

from __future__ import annotations

from dataclasses import dataclass

from mbxtui.core.db import write_transaction
from mbxtui.core.jobs import queue as job_queue
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services.selection import Selection, materialise


@dataclass(frozen=True)
class Scheduled:
    batch_id: int
    selected: int  # mailboxes in the selection
    queued: int  # of them, those that had no Test & Enable queued or running already

    def as_dict(self) -> dict[str, int]:
        """As ``mbxtui test-enable --json`` prints it."""
        return {"batch": self.batch_id, "selected": self.selected, "queued": self.queued}


def schedule(actor: Actor, selection: Selection, description: str = "Test & Enable") -> Scheduled:
    """R8: request Test & Enable for the selection; "test scheduled" is set at once."""
    require(actor, Permission.TEST)
    with write_transaction():
        selected = materialise(actor, selection)
        enqueued = job_queue.enqueue_selected(actor.login, description)
    return Scheduled(enqueued.batch_id, selected, enqueued.queued)
