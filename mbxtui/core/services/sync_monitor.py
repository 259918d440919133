"""Processing at a glance (R31): mailboxes by processing state, messages recorded per minute over the
last hour, failures by error code, each profile's lag and the stale count, read in one call for the
console's Sync monitor.

Built to stay cheap at a million mailboxes and activities: the figures come from ``sync_status``
(only the mailboxes enabled for processing or processed) joined to ``mailbox`` by primary key, a
count of the index of the enabled flags (``_never_cycled``), and from the last hour's activities
only, found through the (direction, created_on) index of ``email_activity``.
Reading only; processing writes (core/sync)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mbxtui.core import clock, dialect
from mbxtui.core.enums import ActivityDirection
from mbxtui.core.jobs.queue import rows_by_name
from mbxtui.core.models import database, utcnow
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services.mailbox_views import PROCESSED_PROFILES_SQL
from mbxtui.core.sql_lists import placeholders

STATES = ("idle", "processing", "waiting", "disabled")
NEVER_CYCLED = "never cycled"  # enabled for incoming processing, no cycle yet
MINUTES = 60

# Processed for incoming, as the Stale view counts them (mailbox_views.stale_ids).
_ENABLED = ("m.active = 1 AND m.incoming_enabled = 1 AND m.incoming_method = 'server_side_sync' "
            f"AND m.profile_id IN {PROCESSED_PROFILES_SQL}")
# A status row Test & Enable made as it enabled the mailbox, which no cycle has touched since
# (mailbox_views.sync_of shows it as never cycled too).
_UNTOUCHED = ("s.state = 'idle' AND s.last_cycle_started IS NULL AND s.last_outgoing_success IS NULL "
              "AND s.last_error_code IS NULL")
_INCOMING = ActivityDirection.INCOMING.value
# Enabled for incoming, as the index of the enabled flags answers it alone: SQLite's holds the three
# flags; PostgreSQL's is on their sum, with the flags included (schema step 10).
_INCOMING_FLAG = {"sqlite": "incoming_enabled = 1",
                  "postgresql": "incoming_enabled + outgoing_enabled + act_enabled > 0 AND incoming_enabled = 1"}


@dataclass(frozen=True)
class ProfileLag:
    """A profile's processed mailboxes that are enabled for incoming: the oldest last successful
    sync among them (None: none has succeeded yet), how many never succeeded and how many are stale."""

    profile: str
    mailboxes: int
    oldest_success: str | None
    lag_seconds: int | None
    never_succeeded: int
    stale: int


@dataclass(frozen=True)
class SyncSnapshot:
    taken_on: str
    states: dict[str, int]  # STATES and NEVER_CYCLED -> mailboxes (active ones)
    per_minute: list[int]  # MINUTES values, oldest first; the last is the minute now running
    failures: list[tuple[str, int]]  # error code -> mailboxes, most first
    lags: list[ProfileLag]  # by lag, largest first
    stale: int
    stale_hours: int

    @property
    def messages_last_hour(self) -> int:
        return sum(self.per_minute)


def snapshot(actor: Actor, now: datetime | None = None) -> SyncSnapshot:
    """Every figure of the Sync monitor, as of ``now`` (default: the clock)."""
    require(actor, Permission.READ)
    now = (now or utcnow()).replace(microsecond=0)
    stale_hours = _stale_hours()
    stale_before = clock.current().ago(now, stale_hours * 3600)  # a forward jump taken off
    states, failures, by_profile, incoming_rows = _status_figures(stale_before)
    states[NEVER_CYCLED] += _never_cycled(incoming_rows)
    names = _profile_names([key for key in by_profile if key is not None])
    lags = [ProfileLag(names.get(profile_id, "(no profile)"), figures["enabled"], figures["oldest_success"],
                       _age(now, figures["oldest_success"]), figures["never_succeeded"], figures["stale"])
            for profile_id, figures in by_profile.items()]
    lags.sort(key=lambda lag: (lag.lag_seconds is not None, -(lag.lag_seconds or 0), lag.profile.lower()))
    return SyncSnapshot(
        taken_on=str(now), states=states, per_minute=_per_minute(now),
        failures=sorted(failures.items(), key=lambda item: (-item[1], item[0])),
        lags=lags, stale=sum(lag.stale for lag in lags), stale_hours=stale_hours)


def _status_figures(stale_before: datetime) -> tuple[dict[str, int], dict[str, int], dict[int | None, dict[str, Any]],
                                                     int]:
    """One pass over the status rows of active mailboxes: how many in each state (those no cycle
    has touched: never cycled, when they are enabled), with each error code, per profile the
    figures of those enabled for incoming processing, and how many of the rows are of mailboxes
    enabled for incoming (whatever their method and profile)."""
    states = dict.fromkeys((*STATES, NEVER_CYCLED), 0)
    failures: dict[str, int] = {}
    by_profile: dict[int | None, dict[str, Any]] = {}
    incoming_rows = 0
    # From the status rows to their mailboxes (SQLite keeps a CROSS JOIN's order): the planner would
    # otherwise walk every active mailbox, processed or not.
    for row in rows_by_name(database.execute_sql(
            f"SELECT m.profile_id, s.state, s.last_error_code, CASE WHEN {_UNTOUCHED} THEN 1 ELSE 0 END AS untouched, "
            f"COUNT(*) AS mailboxes, SUM(m.incoming_enabled) AS incoming_rows, "
            f"SUM(CASE WHEN {_ENABLED} THEN 1 ELSE 0 END) AS enabled, "
            f"MIN(CASE WHEN {_ENABLED} THEN s.last_incoming_success END) AS oldest_success, "
            f"SUM(CASE WHEN {_ENABLED} AND s.last_incoming_success IS NULL THEN 1 ELSE 0 END) AS never_succeeded, "
            f"SUM(CASE WHEN {_ENABLED} AND COALESCE(s.last_incoming_success, s.enabled_since) < ? THEN 1 ELSE 0 END) "
            f"AS stale "
            f"FROM sync_status s CROSS JOIN mailbox m WHERE m.id = s.mailbox_id AND m.active = 1 "
            f"GROUP BY m.profile_id, s.state, s.last_error_code, untouched", [stale_before])):
        incoming_rows += row["incoming_rows"]
        if row["untouched"]:
            states[NEVER_CYCLED] += row["enabled"]
        else:
            states[row["state"]] = states.get(row["state"], 0) + row["mailboxes"]
        if row["last_error_code"]:
            failures[row["last_error_code"]] = failures.get(row["last_error_code"], 0) + row["mailboxes"]
        if row["enabled"]:
            _fold(by_profile.setdefault(row["profile_id"], {}), row)
    return states, failures, by_profile, incoming_rows


def _never_cycled(incoming_rows: int) -> int:
    """Mailboxes enabled for incoming processing without a status row at all (enabled before Test &
    Enable made one, and not yet claimed by a cycle). ``incoming_rows``: the status rows of active
    mailboxes enabled for incoming, as ``_status_figures`` counted them.

    Test & Enable makes the row as it enables a mailbox and a cycle as it claims one, so such
    mailboxes are few and gone after a pass: when every mailbox enabled for incoming has its row
    (the count of them, read from the index of the enabled flags alone, equals ``incoming_rows``)
    there are none, and no mailbox is read. Only otherwise are the enabled mailboxes' ids matched
    against the status rows, still from that index, and the mailboxes left over read by id."""
    enabled_for_incoming = _INCOMING_FLAG[dialect.current().name]
    enabled = database.execute_sql(f"SELECT COUNT(*) FROM mailbox WHERE {enabled_for_incoming}").fetchone()[0]
    if enabled == incoming_rows:
        return 0
    return database.execute_sql(
        f"SELECT COUNT(*) FROM (SELECT id FROM mailbox WHERE {enabled_for_incoming} "
        "AND id NOT IN (SELECT mailbox_id FROM sync_status)) rowless "
        f"CROSS JOIN mailbox m WHERE m.id = rowless.id AND {_ENABLED}").fetchone()[0]


def _fold(figures: dict[str, Any], row: dict[str, Any]) -> None:
    figures["enabled"] = figures.get("enabled", 0) + row["enabled"]
    figures["never_succeeded"] = figures.get("never_succeeded", 0) + row["never_succeeded"]
    figures["stale"] = figures.get("stale", 0) + row["stale"]
    oldest = [str(value) for value in (figures.get("oldest_success"), row["oldest_success"]) if value is not None]
    figures["oldest_success"] = min(oldest) if oldest else None


def _stale_hours() -> int:
    row = database.execute_sql("SELECT stale_hours FROM org_settings ORDER BY id LIMIT 1").fetchone()
    return row[0] if row else 24


def _profile_names(profile_ids: list[int]) -> dict[int, str]:
    if not profile_ids:
        return {}
    return {row[0]: row[1] for row in database.execute_sql(
        f"SELECT id, name FROM profile WHERE id IN ({placeholders(profile_ids)})", profile_ids).fetchall()}


def _age(now: datetime, moment: str | None) -> int | None:
    if moment is None:
        return None
    return max(0, int((now - datetime.fromisoformat(str(moment))).total_seconds()))


def _per_minute(now: datetime) -> list[int]:
    """Incoming activities recorded in each of the last MINUTES minutes (the moment a cycle recorded
    them: ``created_on``; ``received_on`` is when the mail server received the message), read from
    the hour's entries of the (direction, created_on) index alone."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
    counts = [0] * MINUTES
    for minute, count in database.execute_sql(
            "SELECT substr(CAST(created_on AS TEXT), 1, 16) AS minute, COUNT(*) FROM email_activity "
            "WHERE direction = ? AND created_on >= ? GROUP BY minute", [_INCOMING, start]).fetchall():
        index = int((datetime.fromisoformat(f"{minute}:00") - start).total_seconds() // 60)
        if 0 <= index < MINUTES:
            counts[index] += count
    return counts
