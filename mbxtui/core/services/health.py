"""How processing is doing, in the few figures a monitoring system watches (``mbxtui check``):
the mailboxes that should be working, how many of them fail or went stale (R30, R31), the mail
waiting to be sent (R29) and the oldest last successful sync."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mbxtui.core.models import database, utcnow
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services.mailbox_views import stale_ids


@dataclass(frozen=True)
class Health:
    enabled: int  # active mailboxes enabled for incoming or outgoing
    watched: int  # active mailboxes enabled for a direction or in Test and Enable Failed
    failing: int  # of those: in Test and Enable Failed, or waiting to retry a failed cycle
    stale: int  # the Stale view (R31)
    queued: int  # outgoing email waiting to be sent (pending)
    oldest_sync_seconds: int | None  # since the oldest last successful incoming sync of an enabled mailbox

    @property
    def problem_percent(self) -> float:
        """The share of watched mailboxes that are failing or stale (both count once)."""
        return 0.0 if not self.watched else min(100.0, 100.0 * (self.failing + self.stale) / self.watched)

    def as_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "watched": self.watched, "failing": self.failing, "stale": self.stale,
                "queued": self.queued, "oldest_sync_seconds": self.oldest_sync_seconds,
                "problem_percent": round(self.problem_percent, 1)}


def health(actor: Actor, now: datetime | None = None) -> Health:
    require(actor, Permission.READ)
    now = now or utcnow()
    enabled, watched, failing = database.execute_sql(
        "SELECT count(CASE WHEN m.incoming_enabled = 1 OR m.outgoing_enabled = 1 THEN 1 END), "
        "count(CASE WHEN m.incoming_enabled = 1 OR m.outgoing_enabled = 1 OR m.overall_status = 'failure' THEN 1 END), "
        "count(CASE WHEN m.overall_status = 'failure' OR s.state = 'waiting' THEN 1 END) "
        "FROM mailbox m LEFT JOIN sync_status s ON s.mailbox_id = m.id WHERE m.active = 1").fetchone()
    stale_sql, stale_params = stale_ids(now)
    stale = database.execute_sql(
        f"SELECT count(*) FROM mailbox m WHERE +m.active = 1 AND m.id IN ({stale_sql})", stale_params).fetchone()[0]
    queued = database.execute_sql(
        "SELECT count(*) FROM email_activity WHERE direction = 'outgoing' AND state = 'pending'").fetchone()[0]
    oldest = database.execute_sql(
        "SELECT s.last_incoming_success FROM sync_status s JOIN mailbox m ON m.id = s.mailbox_id "
        "WHERE s.last_incoming_success IS NOT NULL AND m.active = 1 AND m.incoming_enabled = 1 "
        "ORDER BY s.last_incoming_success LIMIT 1").fetchone()
    oldest_seconds = None
    if oldest is not None:
        oldest_seconds = max(0, int((now - _moment(oldest[0])).total_seconds()))
    return Health(enabled or 0, watched or 0, failing or 0, stale, queued, oldest_seconds)


def _moment(value: object) -> datetime:
    """A timestamp read by raw SQL: text on both backends (a datetime where a driver gives one)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
