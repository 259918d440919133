"""Email activities as the faces show them: a filtered listing, newest first, and one activity with
its preview (R25); the console's pages of them (``page_activities``: keyset paging on the id, never
an OFFSET) and its detail (``activity_detail``). Reading only; processing writes them (core/sync).

Pages, views and a mailbox's filter read indexes and stay fast at a million activities. Text in the
subject or the addresses has no index: its page walks the ids down in ranges (core/walks.py), which
stops at a page of matches, so a common text answers in milliseconds and a rare one reads the table.
``head_activities`` gives such a walk a time budget and says where it stopped; the console shows
what it found, then the whole page."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from mbxtui.core import validation
from mbxtui.core.enums import ActivityDirection, ActivityState
from mbxtui.core.errors import NotFound
from mbxtui.core.jobs.queue import row_by_name, rows_by_name
from mbxtui.core.models import database
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.sql_lists import placeholders
from mbxtui.core.walks import first_matches

_COLUMNS = ("a.id, a.message_id, a.direction, a.state, a.subject, a.sender, a.\"to\", a.cc, a.received_on, "
            "a.sent_on, a.size, a.attachments")


def _kind_filter(direction: str | None, state: str | None) -> tuple[list[str], list[Any]]:
    """The WHERE terms (and their parameters) for a direction and a state, either may be None."""
    where: list[str] = []
    params: list[Any] = []
    if direction is not None:
        where.append("a.direction = ?")
        params.append(validation.choice("direction", direction, ActivityDirection).value)
    if state is not None:
        if direction is not None:
            # A state belongs to one direction: its (state, id) index finds the rows, where SQLite
            # would walk every activity of the direction through (direction, id).
            where[-1] = "a.direction || '' = ?"
        where.append("a.state = ?")
        params.append(validation.choice("state", state, ActivityState).value)
    return where, params


def list_activities(actor: Actor, *, mailbox: str | None = None, regarding: str | None = None,
                    direction: str | None = None, state: str | None = None, text: str | None = None,
                    limit: int = 100) -> dict[str, Any]:
    """``{"total": N, "total_exact": bool, "rows": [...]}``: the activities matching every filter
    given, newest first; ``mailbox``: came through or sent from that mailbox; ``regarding``:
    concerns that user or queue; ``text``: in the subject, sender, recipients or Message-ID (any
    case). ``total`` counts at most ``COUNT_AT_MOST`` matches, as the console does (a text filter's
    count would otherwise read every match of a million); ``total_exact`` is False when there are
    more."""
    require(actor, Permission.READ)
    limit = validation.integer("limit", limit, 0, 100_000)
    where, params = _kind_filter(direction, state)
    if mailbox is not None:
        mailbox_id = _mailbox_id(mailbox)
        where.append("(a.mailbox_id = ? OR a.id IN (SELECT activity_id FROM activity_receipt WHERE mailbox_id = ?))")
        params.extend([mailbox_id, mailbox_id])
    if regarding is not None:
        where.append("a.id IN (SELECT p.activity_id FROM activity_party p LEFT JOIN \"user\" u ON u.id = p.user_id "
                     "LEFT JOIN queue q ON q.id = p.queue_id WHERE lower(u.email) = ? OR lower(q.email) = ?)")
        params.extend([regarding.strip().lower()] * 2)
    if text:
        needle = validation.text("filter", text, max_length=200).lower()
        where.append("(" + " OR ".join(f"instr(lower(a.{c}), ?) > 0"
                                       for c in ("subject", "sender", '"to"', "cc", "message_id")) + ")")
        params.extend([needle] * 5)
    condition = f"WHERE {' AND '.join(where)}" if where else ""
    total, more = _bounded_count(condition, params)
    rows = rows_by_name(database.execute_sql(
        f"SELECT {_COLUMNS} FROM email_activity a {condition} ORDER BY a.id DESC LIMIT {limit}", params))
    parties = _parties([row["id"] for row in rows])
    return {"total": total, "total_exact": not more, "rows": [_row(row, parties.get(row["id"], [])) for row in rows]}


def show_activity(actor: Actor, activity_id: int) -> dict[str, Any]:
    """One activity with its preview, the mailboxes it came through and, if unparseable, why."""
    require(actor, Permission.READ)
    activity_id = validation.integer("id", activity_id, 1, 2**63 - 1)
    row = row_by_name(database.execute_sql(
        f"SELECT {_COLUMNS}, a.preview, a.in_reply_to, a.problem FROM email_activity a WHERE a.id = ?", [activity_id]))
    if row is None:
        raise NotFound(f"no email activity has the id {activity_id}: see mbxtui activity list")
    shown = _row(row, _parties([activity_id]).get(activity_id, []))
    shown["mailboxes"] = [r["email"] for r in rows_by_name(database.execute_sql(
        "SELECT m.email FROM activity_receipt r JOIN mailbox m ON m.id = r.mailbox_id WHERE r.activity_id = ? "
        "ORDER BY r.id", [activity_id]))]
    shown.update(in_reply_to=row["in_reply_to"].split(), problem=row["problem"], preview=row["preview"])
    if row["direction"] == ActivityDirection.OUTGOING.value:
        shown.update(_outgoing_details(activity_id))
    return shown


def _outgoing_details(activity_id: int) -> dict[str, Any]:
    """What an outgoing email adds (R29): its thread, who queued it, its attempts and last error."""
    row = row_by_name(database.execute_sql(
        "SELECT reference_ids, reply_to_activity_id, created_by, created_on, attempts, next_attempt, last_error_code, "
        "last_error_text FROM email_activity WHERE id = ?", [activity_id]))
    assert row is not None
    return {"references": row["reference_ids"].split(), "reply_to_activity_id": row["reply_to_activity_id"],
            "created_by": row["created_by"], "created_on": row["created_on"], "attempts": row["attempts"],
            "next_attempt": row["next_attempt"], "last_error_code": row["last_error_code"],
            "last_error_text": row["last_error_text"]}


PAGE_COLUMNS = ("a.id, a.direction, a.state, a.subject, a.sender, a.\"to\", a.received_on, a.sent_on, "
                "a.created_on, m.email AS mailbox")
COUNT_AT_MOST = 10_000
"""Matches counted for the console, at most: a count over a million rows with a text filter would
read them all, and "10,000+" tells the operator as much as the exact figure."""


WALK_SECONDS = 0.05
"""How long ``head_activities`` walks for a text filter's matches before it shows what it found."""
FIRST_RANGE = 1_000  # ids in the walk's first range; each next range is twice as large, up to
LARGEST_RANGE = 32_000  # about 60 ms of SQLite's time per statement at a million activities


@dataclass(frozen=True)
class ActivityPage:
    """A page, or the first of its rows: ``searched_below`` is None when the page is whole, else
    the walk ran out of time and the rest of the page lies below that id."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    searched_below: int | None = None


def _page_filter(*, text: str | None, direction: str | None,
                 state: str | None) -> tuple[list[str], list[Any], bool]:
    """The console's filters, and whether they need a walk (text that no index finds): ``text`` is
    a mailbox's whole address (what came through it or is sent from it), else text found in the
    subject, sender or recipients (any case)."""
    where, params = _kind_filter(direction, state)
    needle = validation.text("filter", text, max_length=200, required=False).lower()
    if not needle:
        return where, params, False
    mailbox = database.execute_sql("SELECT id FROM mailbox WHERE email = ?", [needle]).fetchone()
    if mailbox is not None:
        # Ids from the indexes of the mailbox (its receipts, what it sends), not a scan of the text.
        where.append("a.id IN (SELECT activity_id FROM activity_receipt WHERE mailbox_id = ? "
                     "UNION SELECT id FROM email_activity WHERE mailbox_id = ?)")
        params.extend([mailbox[0], mailbox[0]])
        return where, params, False
    where.append("(" + " OR ".join(f"instr(lower(a.{column}), ?) > 0"
                                   for column in ("subject", "sender", '"to"', "cc")) + ")")
    params.extend([needle] * 4)
    return where, params, True


def page_activities(actor: Actor, *, text: str | None = None, direction: str | None = None,
                    state: str | None = None, before_id: int | None = None, limit: int = 200,
                    stop: Callable[[], bool] | None = None) -> list[dict[str, Any]]:
    """The console's page: at most ``limit`` activities matching the filters with an id below
    ``before_id`` (the last of the page before; None: the newest), newest first, each with the
    address of its mailbox and ``when`` (received, else sent, else queued). ``stop``: asked between
    the ranges of a text filter's walk; when true, the rows found so far."""
    return _read_page(actor, text, direction, state, before_id, limit, seconds=None, stop=stop).rows


def head_activities(actor: Actor, *, text: str | None = None, direction: str | None = None,
                    state: str | None = None, before_id: int | None = None, limit: int = 200,
                    seconds: float | None = None) -> ActivityPage:
    """``page_activities``, but a text filter's walk stops after ``seconds`` (default
    ``WALK_SECONDS``) with what it found and where it stopped:
    ``page_activities(before_id=searched_below, limit=limit - len(rows))`` reads the rest of the page."""
    seconds = WALK_SECONDS if seconds is None else seconds
    return _read_page(actor, text, direction, state, before_id, limit, seconds=seconds, stop=None)


def _read_page(actor: Actor, text: str | None, direction: str | None, state: str | None, before_id: int | None,
               limit: int, *, seconds: float | None, stop: Callable[[], bool] | None) -> ActivityPage:
    require(actor, Permission.READ)
    limit = validation.integer("limit", limit, 1, 1_000)
    where, params, walk = _page_filter(text=text, direction=direction, state=state)
    if before_id is not None:
        before_id = validation.integer("before", before_id, 1, 2**63 - 1)
    select = f"SELECT {PAGE_COLUMNS} FROM email_activity a LEFT JOIN mailbox m ON m.id = a.mailbox_id"
    if not walk:
        if before_id is not None:
            where.append("a.id < ?")
            params.append(before_id)
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        return ActivityPage(_page_rows(database.execute_sql(f"{select} {condition} ORDER BY a.id DESC LIMIT {limit}",
                                                            params)))

    def matching(below_from: tuple[int, int]) -> list[dict[str, Any]]:
        return rows_by_name(database.execute_sql(
            f"{select} WHERE {' AND '.join(where)} AND a.id < ? AND a.id >= ? ORDER BY a.id DESC LIMIT {limit}",
            [*params, *below_from]))

    walked = first_matches(_id_ranges(before_id), matching, limit, seconds=seconds, stop=stop)
    rows = _page_rows(walked.found)
    if walked.exhausted or len(rows) == limit or walked.last is None:
        return ActivityPage(rows)
    return ActivityPage(rows, searched_below=walked.last[1])


def _id_ranges(below: int | None) -> Iterator[tuple[int, int]]:
    """Ranges of activity ids (below, from), newest first, from ``below`` (None: the newest) down
    to the oldest activity, each twice as large as the one before up to ``LARGEST_RANGE``."""
    lowest, highest = database.execute_sql(
        "SELECT (SELECT MIN(id) FROM email_activity), (SELECT MAX(id) FROM email_activity)").fetchone()
    if lowest is None:
        return
    top = highest + 1 if below is None else min(below, highest + 1)
    size = FIRST_RANGE
    while top > lowest:
        bottom = max(lowest, top - size)
        yield top, bottom
        top = bottom
        size = min(size * 2, LARGEST_RANGE)


def _page_rows(rows: Any) -> list[dict[str, Any]]:
    shown = rows if isinstance(rows, list) else rows_by_name(rows)
    for row in shown:
        row["to"] = json.loads(row["to"])
        row["when"] = _moment(row["received_on"] or row["sent_on"] or row["created_on"])
    return shown


def count_activities(actor: Actor, *, text: str | None = None, direction: str | None = None,
                     state: str | None = None, stop: Callable[[], bool] | None = None) -> tuple[int, bool]:
    """How many activities match, up to ``COUNT_AT_MOST``; True when there are more than that.
    ``stop``: asked between the ranges of a text filter's walk (when true, the count so far)."""
    require(actor, Permission.READ)
    where, params, walk = _page_filter(text=text, direction=direction, state=state)
    if not walk:
        return _bounded_count(f"WHERE {' AND '.join(where)}" if where else "", params)

    def matching(below_from: tuple[int, int]) -> list[int]:
        return [row[0] for row in database.execute_sql(
            f"SELECT a.id FROM email_activity a WHERE {' AND '.join(where)} AND a.id < ? AND a.id >= ? "
            f"LIMIT {COUNT_AT_MOST + 1}", [*params, *below_from]).fetchall()]

    count = len(first_matches(_id_ranges(None), matching, COUNT_AT_MOST + 1, stop=stop).found)
    return min(count, COUNT_AT_MOST), count > COUNT_AT_MOST


def _bounded_count(condition: str, params: list[Any]) -> tuple[int, bool]:
    """How many activities meet ``condition`` (a WHERE clause on ``a``, or ""), up to
    ``COUNT_AT_MOST``, and True when there are more: the count stops reading at the bound."""
    count = database.execute_sql(f"SELECT count(*) FROM (SELECT 1 FROM email_activity a {condition} "
                                 f"LIMIT {COUNT_AT_MOST + 1}) matching", params).fetchone()[0]
    return min(count, COUNT_AT_MOST), count > COUNT_AT_MOST


def activity_detail(actor: Actor, activity_id: int) -> dict[str, Any]:
    """``show_activity`` and what the console's detail adds: the parties by name and kind, the
    mailbox it came through or is sent from, and an outgoing one's attempts and last error."""
    shown = show_activity(actor, activity_id)
    extra = row_by_name(database.execute_sql(
        "SELECT a.created_on, a.created_by, a.attempts, a.next_attempt, a.last_error_code, a.last_error_text, "
        "a.reply_to_activity_id, m.email AS mailbox FROM email_activity a LEFT JOIN mailbox m ON m.id = a.mailbox_id "
        "WHERE a.id = ?", [shown["id"]]))
    if extra is None:
        raise NotFound(f"no email activity has the id {activity_id}: see mbxtui activity list")
    extra["created_on"] = _moment(extra["created_on"])
    extra["next_attempt"] = _moment(extra["next_attempt"])
    shown.update(extra)
    shown["party_names"] = [
        f"{row['name']} <{row['email']}> ({'user' if row['is_user'] else 'queue'})"
        for row in rows_by_name(database.execute_sql(
            "SELECT COALESCE(u.name, q.name) AS name, COALESCE(u.email, q.email) AS email, "
            "u.id IS NOT NULL AS is_user FROM activity_party p LEFT JOIN \"user\" u ON u.id = p.user_id "
            "LEFT JOIN queue q ON q.id = p.queue_id WHERE p.activity_id = ? ORDER BY p.id", [shown["id"]]))]
    return shown


def _moment(value: Any) -> str | None:
    """A timestamp as text to the second, whatever the backend's driver gave."""
    return None if value is None else str(value)[:19]


def _mailbox_id(email: str) -> int:
    row = database.execute_sql("SELECT id FROM mailbox WHERE email = ?", [email.strip().lower()]).fetchone()
    if row is None:
        raise NotFound(f"no mailbox has the address {email}: see mbxtui mailbox list")
    return row[0]


def _parties(activity_ids: list[int]) -> dict[int, list[str]]:
    if not activity_ids:
        return {}
    marks = placeholders(activity_ids)
    found: dict[int, list[str]] = {}
    for row in rows_by_name(database.execute_sql(
            f"SELECT p.activity_id, COALESCE(u.email, q.email) AS email FROM activity_party p "
            f"LEFT JOIN \"user\" u ON u.id = p.user_id LEFT JOIN queue q ON q.id = p.queue_id "
            f"WHERE p.activity_id IN ({marks}) ORDER BY p.id", activity_ids)):
        found.setdefault(row["activity_id"], []).append(row["email"])
    return found


def _row(row: dict[str, Any], parties: list[str]) -> dict[str, Any]:
    return {
        "id": row["id"], "message_id": row["message_id"], "direction": row["direction"], "state": row["state"],
        "subject": row["subject"], "sender": row["sender"], "to": json.loads(row["to"]), "cc": json.loads(row["cc"]),
        "parties": parties, "received_on": row["received_on"], "sent_on": row["sent_on"],
        "size": row["size"], "attachments": json.loads(row["attachments"]),
    }
