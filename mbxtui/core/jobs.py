"""Test & Enable jobs: requested in the database (one row per mailbox, grouped in a batch), run by
a pool of worker threads, resumable after a crash (R8, R21)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mbxtui.core.db import write_transaction
from mbxtui.core.models import TestBatch, TestJob, database, utcnow
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services.mailboxes import SELECTED, Selection, materialise


def schedule_selected(actor: Actor, description: str) -> int:
    """Queue a test for every mailbox in temp.selected_mailbox that has none queued or running, and
    mark them "test scheduled" (caller holds the transaction). Returns the batch id."""
    now = utcnow()
    batch = TestBatch.create(requested_by=actor.login, requested_on=now, description=description)
    cursor = database.execute_sql(
        "INSERT INTO test_job (batch_id, mailbox_id, requested_by, state, attempt) "
        f"SELECT ?, id, ?, 'queued', 1 FROM mailbox WHERE {SELECTED} AND id NOT IN "
        "(SELECT mailbox_id FROM test_job WHERE state IN ('queued', 'running'))",
        [batch.id, actor.login],
    )
    TestBatch.update(total=cursor.rowcount).where(TestBatch.id == batch.id).execute()
    database.execute_sql(
        f"UPDATE mailbox SET test_scheduled = 1, postponed_until = NULL WHERE {SELECTED}"
    )
    return batch.id


def schedule(actor: Actor, selection: Selection, description: str = "Test & Enable") -> dict[str, Any]:
    """R8: request Test & Enable for the selection; "test scheduled" is set at once."""
    require(actor, Permission.TEST)
    with write_transaction():
        selected = materialise(actor, selection)
        batch_id = schedule_selected(actor, description)
    total = TestBatch.get_by_id(batch_id).total
    return {"batch": batch_id, "selected": selected, "queued": total}


@dataclass(frozen=True)
class Progress:
    batch: int
    total: int
    done: int
    passed: int
    failed: int
    postponed: int
    cancelled: int

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.cancelled

    def as_dict(self) -> dict[str, int]:
        return {"batch": self.batch, "total": self.total, "done": self.done, "passed": self.passed,
                "failed": self.failed, "postponed": self.postponed, "cancelled": self.cancelled,
                "remaining": self.remaining}


def progress(batch_id: int) -> Progress:
    """Counts for a batch. A postponed job is done for this attempt; its retry is a new job."""
    counts = dict(
        database.execute_sql(
            "SELECT coalesce(outcome, state), count(*) FROM test_job WHERE batch_id = ? GROUP BY 1", [batch_id]
        ).fetchall()
    )
    total = TestBatch.get_by_id(batch_id).total
    passed, failed, postponed = counts.get("passed", 0), counts.get("failed", 0), counts.get("postponed", 0)
    return Progress(batch_id, total, passed + failed + postponed, passed, failed, postponed, counts.get("cancelled", 0))


def queued_count() -> int:
    return TestJob.select().where(TestJob.state == "queued").count()
