"""Which mailboxes a view of R20 holds, filtered and sorted, and reading them: the SQL conditions
(``view_condition``, ``filter_condition``, ``where_for``, ``order_by``) that the listing here, the
console's grid (``mailbox_pages``) and the bulk selections (``selection``) share, and the rows as
the command line and the console show them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Sequence, TypedDict

from mbxtui.core import clock, dialect, validation
from mbxtui.core.enums import EXCHANGE_TYPES, ProfileType, View
from mbxtui.core.errors import InvalidInput
from mbxtui.core.models import database, utcnow
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.sql_lists import in_list_chunks

SORT_COLUMNS = {
    "name": "m.name COLLATE NOCASE",
    "email": "m.email",
    "regarding": "m.regarding",
    "profile": "p.name",
    "incoming_method": "m.incoming_method",
    "outgoing_method": "m.outgoing_method",
    "act_method": "m.act_method",
    "approval": "m.approval",
    "incoming_status": "m.incoming_status",
    "outgoing_status": "m.outgoing_status",
    "act_status": "m.act_status",
    "status": "m.overall_status",
    "enabled": "(m.incoming_enabled + m.outgoing_enabled + m.act_enabled)",
    "last_tested": "m.test_completed_on",
    "created": "m.created_on",
}

NULLABLE_SORTS = {"profile", "last_tested"}  # sort columns that may hold NULL

JOINS_SQL = 'LEFT JOIN profile p ON p.id = m.profile_id LEFT JOIN "user" o ON o.id = m.owner_id'
FROM_SQL = f"FROM mailbox m {JOINS_SQL}"

# The index that yields a sort column's rows in display order (every index ends with the row id,
# the tie-breaker).
SORT_INDEXES = {
    "name": "mailbox_name", "email": "mailbox_email", "regarding": "mailbox_regarding",
    "incoming_method": "mailbox_incoming_method", "outgoing_method": "mailbox_outgoing_method",
    "act_method": "mailbox_act_method", "approval": "mailbox_approval",
    "incoming_status": "mailbox_incoming_status", "outgoing_status": "mailbox_outgoing_status",
    "act_status": "mailbox_act_status", "status": "mailbox_overall_status",
    "last_tested": "mailbox_test_completed_on", "created": "mailbox_created_on",
}


def view_condition(view: View | str, actor: Actor) -> tuple[str, list[Any]]:
    # "+m.active": nearly every mailbox is active, so SQLite must find the rows through the other
    # condition's index and check "active" on those few (0.4 s against 0.13 s for the 100,000
    # pending mailboxes among 1,000,000); without the "+" it picks the active index (see
    # dialect.unindexed for PostgreSQL).
    view = validation.choice("view", view, View)
    active = dialect.current().unindexed("m.active")
    if view == View.ALL:
        return "TRUE", []
    if view == View.ACTIVE:
        return "m.active = 1", []
    if view == View.MINE:
        return f"{active} = 1 AND m.owner_id = ?", [actor.user_id if actor.user_id is not None else -1]
    if view == View.FORWARD:
        return f"{active} = 1 AND m.is_forward = 1", []
    if view == View.PENDING:
        return dialect.current().pending_condition(), []
    if view == View.FAILED:
        return f"{active} = 1 AND m.overall_status = 'failure'", []
    if view == View.STALE:
        stale_sql, stale_params = stale_ids()
        return f"{active} = 1 AND m.id IN ({stale_sql})", stale_params
    return "m.incoming_enabled = 0 AND m.outgoing_enabled = 0 AND m.act_enabled = 0", []


def stale_hours() -> int:
    row = database.execute_sql("SELECT stale_hours FROM org_settings WHERE id = 1").fetchone()
    return 24 if row is None else int(row[0])


# The profile types whose incoming mail is processed; Exchange's is not yet (R31: its mailboxes are
# never stale, and their sync status says why).
INCOMING_PROCESSED_TYPES = (ProfileType.IMAP_SMTP.value, ProfileType.POP3_SMTP.value)
PROCESSED_PROFILES_SQL = ("(SELECT id FROM profile WHERE type IN "
                          f"({', '.join(repr(value) for value in INCOMING_PROCESSED_TYPES)}))")


def not_processed_reason(profile_type: str | None, incoming_method: str) -> str | None:
    """Why the incoming mail of a mailbox with this profile type and incoming method is never read,
    or None when it is (or the mailbox reads none)."""
    if profile_type in EXCHANGE_TYPES and incoming_method != "none":
        return (f"reading mail over Exchange (profile type {profile_type}) is not supported yet: no cycle reads "
                "this mailbox's mail, even once Test & Enable enables it, so it is never counted as stale")
    return None


def stale_ids(now: datetime | None = None, mailbox_id: int | None = None) -> tuple[str, list[Any]]:
    """R31: the ids of the mailboxes enabled for incoming processing (active or not) with no
    successful incoming sync for longer than the organisation's stale threshold, counted from
    when they were first enabled when they never had one (Test & Enable writes that moment in the
    sync status as it enables a mailbox; a cycle, when it claims one enabled before).

    Both parts read the index of the last success, and the mailboxes are looked up by id from
    there (the CROSS JOIN keeps SQLite from walking every enabled mailbox instead): the few stale
    mailboxes among a million are found without reading the rest. ``mailbox_id``: that mailbox only
    (its row by primary key, whatever the number of stale mailboxes). A mailbox on a profile
    whose incoming mail is not processed (Exchange) is never stale: nothing reads it."""
    cutoff = clock.current().ago(now or utcnow(), stale_hours() * 3600).isoformat(sep=" ")  # a jump taken off
    one, only = ("AND mailbox_id = ? ", [mailbox_id]) if mailbox_id is not None else ("", [])
    return ("SELECT u.mailbox_id FROM (SELECT mailbox_id FROM sync_status WHERE last_incoming_success < ? "
            f"{one}UNION ALL SELECT mailbox_id FROM sync_status WHERE last_incoming_success IS NULL "
            f"AND enabled_since < ? {one}) u "
            "CROSS JOIN mailbox mb WHERE mb.id = u.mailbox_id AND mb.incoming_enabled = 1 "
            f"AND mb.incoming_method = 'server_side_sync' AND mb.profile_id IN {PROCESSED_PROFILES_SQL}"), [
        cutoff, *only, cutoff, *only]


def filter_condition(text: str | None) -> tuple[str, list[Any]]:
    """Substring match on name and address: the trigram index for 3+ characters, LIKE below that."""
    text = validation.text("filter", text, max_length=200, required=False)
    if not text:
        return "TRUE", []
    return dialect.current().substring_filter(text)


def where_for(actor: Actor, view: View | str = View.ACTIVE, filter_text: str | None = None) -> tuple[str, list[Any]]:
    view_sql, view_params = view_condition(view, actor)
    filter_sql, filter_params = filter_condition(filter_text)
    return f"({view_sql}) AND ({filter_sql})", view_params + filter_params


def order_by(sort: str | None, descending: bool) -> str:
    sort = (validation.text("sort", sort, max_length=40, required=False) or "name").lower()
    if sort not in SORT_COLUMNS:
        raise InvalidInput("sort", f"{sort!r} is not a column; choose one of: {', '.join(SORT_COLUMNS)}")
    direction = "DESC" if descending else "ASC"
    # The order each sort column's index holds (schema step 10), so that PostgreSQL walks it: NULL
    # first only where the column may hold one (a NULLS FIRST elsewhere keeps PostgreSQL from
    # using the index), and no id after the address, which is unique.
    nulls = dialect.current().nulls_first(descending) if sort in NULLABLE_SORTS else ""
    tie_break = "" if sort == "email" else f", m.id {direction}"
    return f"{SORT_COLUMNS[sort]} {direction}{nulls}{tie_break}"


ROW_COLUMNS = (
    "m.id, m.name, m.email, m.regarding, m.is_forward, m.active, p.name AS profile, o.email AS owner, "
    "m.incoming_method, m.outgoing_method, m.act_method, m.approval, m.approved_by, m.approved_on, "
    "m.incoming_status, m.outgoing_status, m.act_status, m.overall_status, "
    "m.incoming_enabled, m.outgoing_enabled, m.act_enabled, m.test_scheduled, "
    "m.test_last_attempted_by, m.test_last_attempted_on, m.test_completed_on, m.last_error_code, "
    "m.last_error_text, m.transient_failures, m.postponed_until, m.use_own_credentials, m.username, "
    "m.password_set, m.token_set, m.delete_after_processing, m.process_email_after, "
    "COALESCE(m.tracking, 'default') AS tracking, m.row_version"
)
BOOLEAN_COLUMNS = {
    "is_forward", "active", "incoming_enabled", "outgoing_enabled", "act_enabled", "test_scheduled",
    "use_own_credentials", "password_set", "token_set", "delete_after_processing",
}


class MailboxRow(TypedDict):
    """One mailbox as the lists and the command line's JSON give it (``MailboxRecord.as_dict`` too;
    times as the database's text, "YYYY-MM-DD HH:MM:SS"; secrets only as "set" or "not set")."""

    id: int
    name: str
    email: str
    regarding: str
    is_forward: bool
    active: bool
    profile: str | None
    owner: str | None
    incoming_method: str
    outgoing_method: str
    act_method: str
    approval: str
    approved_by: str | None
    approved_on: str | None
    incoming_status: str
    outgoing_status: str
    act_status: str
    overall_status: str
    incoming_enabled: bool
    outgoing_enabled: bool
    act_enabled: bool
    test_scheduled: bool
    test_last_attempted_by: str | None
    test_last_attempted_on: str | None
    test_completed_on: str | None
    last_error_code: str | None
    last_error_text: str | None
    transient_failures: int
    postponed_until: str | None
    use_own_credentials: bool
    username: str
    delete_after_processing: bool
    process_email_after: str | None
    tracking: str  # R27: all, replies, none, or default (the organisation's for its kind)
    row_version: int
    password: str
    oauth2_token: str


def _row_dict(cursor: Any, row: Sequence[Any]) -> MailboxRow:
    data: dict[str, Any] = {}
    for (name, *_), value in zip(cursor.description, row):
        data[name] = bool(value) if name in BOOLEAN_COLUMNS else value
    data["password"] = "set" if data.pop("password_set") else "not set"
    data["oauth2_token"] = "set" if data.pop("token_set") else "not set"
    return data  # type: ignore[return-value]  # the keys of ROW_COLUMNS


@dataclass(frozen=True)
class MailboxRecord:
    """One mailbox as ``mailboxes.show``, ``edit`` and ``create_forward_mailbox`` return it (the
    fields of a ``MailboxRow``; its secrets only as set or not, R4)."""

    id: int
    name: str
    email: str
    regarding: str
    is_forward: bool
    active: bool
    profile: str | None
    owner: str | None
    incoming_method: str
    outgoing_method: str
    act_method: str
    approval: str
    approved_by: str | None
    approved_on: str | None
    incoming_status: str
    outgoing_status: str
    act_status: str
    overall_status: str
    incoming_enabled: bool
    outgoing_enabled: bool
    act_enabled: bool
    test_scheduled: bool
    test_last_attempted_by: str | None
    test_last_attempted_on: str | None
    test_completed_on: str | None
    last_error_code: str | None
    last_error_text: str | None
    transient_failures: int
    postponed_until: str | None
    use_own_credentials: bool
    username: str
    delete_after_processing: bool
    process_email_after: str | None
    tracking: str  # R27: all, replies, none, or default (the organisation's for its kind)
    row_version: int
    password_set: bool
    token_set: bool
    # What an edit could not finish after it committed (a grant not revoked, a refresh token left in
    # the keyring), each a sentence; not part of ``as_dict``.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def of(cls, row: MailboxRow) -> MailboxRecord:
        values: dict[str, Any] = dict(row)
        values["password_set"] = values.pop("password") == "set"
        values["token_set"] = values.pop("oauth2_token") == "set"
        return cls(**values)

    def as_dict(self) -> MailboxRow:
        """As ``mbxtui mailbox show --json`` prints it: the keys of a ``MailboxRow`` in its order."""
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "warnings"}
        data["password"] = "set" if data.pop("password_set") else "not set"
        data["oauth2_token"] = "set" if data.pop("token_set") else "not set"
        return data  # type: ignore[return-value]  # the keys of MailboxRow


@dataclass
class Page:
    total: int
    rows: list[MailboxRow] = field(default_factory=list)


def list_mailboxes(actor: Actor, *, view: View | str = View.ACTIVE, filter_text: str | None = None,
                   sort: str | None = None, descending: bool = False, limit: int = 100,
                   offset: int = 0) -> Page:
    require(actor, Permission.READ)
    limit = validation.integer("limit", limit, 0, 100_000)
    offset = validation.integer("offset", offset, 0, 10**12)
    where, params = where_for(actor, view, filter_text)
    ordering = order_by(sort, descending)
    needs_join = "p." in ordering
    count_from = FROM_SQL if needs_join else "FROM mailbox m"
    total = _total(view, filter_text, count_from, where, params)
    source = _page_source(sort, total, offset + limit)
    page_where, page_params = where, params
    if (sort or "name").strip().lower() == "approval" and dialect.current().name == "postgresql":
        heads, heads_params = approval_heads(view, where, params, offset + limit, descending)
        page_where, page_params = f"m.id IN ({heads}) AND {where}", [*heads_params, *params]
    cursor = database.execute_sql(
        f"SELECT {ROW_COLUMNS} FROM {source} {JOINS_SQL} WHERE {page_where} ORDER BY {ordering} LIMIT ? OFFSET ?",
        [*page_params, limit, offset],
    )
    return Page(total=total, rows=[_row_dict(cursor, row) for row in cursor.fetchall()])


def approval_heads(view: View | str, where: str, params: list[Any], wanted: int,
                   descending: bool) -> tuple[str, list[Any]]:
    """PostgreSQL (schema step 19, where no index of the mailbox table holds the approval): a query
    of a few ids among which are the first ``wanted`` mailboxes of ``where`` in approval order, and
    its parameters. "approved" sorts before every other approval: the first approved mailboxes (not
    in the table of those not approved) come by the primary key, the first others by that table's
    (approval, mailbox_id) index. The Pending Approval view has no approved mailbox (finding none
    there took 120-210 ms at 1,000,000 mailboxes)."""
    direction = "DESC" if descending else "ASC"
    table = dialect.UNAPPROVED_TABLE
    others = (f"(SELECT m.id FROM {table} u JOIN mailbox m ON m.id = u.mailbox_id WHERE {where} "
              f"ORDER BY u.approval {direction}, u.mailbox_id {direction} LIMIT {int(wanted)})")
    if validation.choice("view", view, View) == View.PENDING:
        return others, list(params)
    approved = (f"(SELECT m.id FROM mailbox m WHERE {where} AND NOT EXISTS (SELECT 1 FROM {table} u "
                f"WHERE u.mailbox_id = m.id) ORDER BY m.id {direction} LIMIT {int(wanted)})")
    return f"{approved} UNION ALL {others}", [*params, *params]


def _total(view: View | str, filter_text: str | None, count_from: str, where: str, params: list[Any]) -> int:
    """How many mailboxes the view and filter hold. PostgreSQL counts the Pending Approval view from
    its narrow table alone (4-9 ms at 1,000,000 mailboxes), where joining those ids to the mailbox
    rows took 190-580 ms."""
    ids_sql, with_inactive = dialect.current().pending_ids()
    if validation.choice("view", view, View) == View.PENDING and not filter_text and not with_inactive:
        return database.execute_sql(f"SELECT count(*) FROM ({ids_sql}) pending").fetchone()[0]
    return database.execute_sql(f"SELECT count(*) {count_from} WHERE {where}", params).fetchone()[0]


def _page_source(sort: str | None, total: int, wanted: int) -> str:
    """The table a page of ``total`` matching rows is read from, up to its ``wanted``-th row.

    SQLite knows nothing of how common a value is, so it finds a view's rows through the view's
    index and sorts all of them: 0.3 s for the 100,000 pending mailboxes among 1,000,000. When the
    view holds a fair share of the table, walking the sort column's index and skipping the rows
    outside the view reaches the page after about wanted * mailboxes / total rows (1 ms)."""
    index = SORT_INDEXES.get((sort or "name").strip().lower())
    if index is not None and total:
        mailboxes = database.execute_sql("SELECT max(id) FROM mailbox").fetchone()[0] or 0
        if wanted * mailboxes < total * total:
            return f"mailbox m {dialect.current().indexed_by(index)}"
    return "mailbox m"


def ids_in_view(actor: Actor, *, view: View | str = View.ACTIVE, filter_text: str | None = None,
                sort: str | None = None, descending: bool = False) -> list[int]:
    """Every mailbox id of a view in display order (the console's grid pages through these)."""
    require(actor, Permission.READ)
    where, params = where_for(actor, view, filter_text)
    ordering = order_by(sort, descending)
    source = FROM_SQL if "p." in ordering else "FROM mailbox m"
    return [r[0] for r in database.execute_sql(f"SELECT m.id {source} WHERE {where} ORDER BY {ordering}", params)]


def rows_by_ids(actor: Actor, ids: Sequence[int]) -> dict[int, MailboxRow]:
    require(actor, Permission.READ)
    result: dict[int, MailboxRow] = {}
    for marks, chunk in in_list_chunks(ids):
        cursor = database.execute_sql(f"SELECT {ROW_COLUMNS} {FROM_SQL} WHERE m.id IN ({marks})", chunk)
        for row in cursor.fetchall():
            data = _row_dict(cursor, row)
            result[data["id"]] = data
    return result


SYNC_FIELDS = ("state", "last_cycle_started", "last_cycle_finished", "last_incoming_success",
               "last_outgoing_success", "items_last_cycle", "items_total", "next_due")


class SyncRow(TypedDict):
    """A mailbox's processing as ``mailbox show`` gives it (R31): every value None for a mailbox no
    cycle ever claimed, but ``stale``; times as the database's text."""

    state: str | None  # idle, processing, waiting (for a retry) or disabled
    last_cycle_started: str | None
    last_cycle_finished: str | None
    last_incoming_success: str | None
    last_outgoing_success: str | None
    items_last_cycle: int | None
    items_total: int | None
    next_due: str | None
    last_error: dict[str, str] | None  # {"code", "text"}
    stale: bool
    not_processed: str | None  # why its incoming mail is never read (an Exchange profile), else None


def sync_of(actor: Actor, mailbox_id: int, now: datetime | None = None) -> SyncRow:
    require(actor, Permission.READ)
    row = database.execute_sql(
        f"SELECT {', '.join(SYNC_FIELDS)}, last_error_code, last_error_text FROM sync_status WHERE mailbox_id = ?",
        [mailbox_id]).fetchone()
    values: dict[str, Any] = dict.fromkeys(SYNC_FIELDS)
    values["last_error"] = None
    found = dict(zip(SYNC_FIELDS, row)) if row is not None else {}
    # Test & Enable makes the row as it enables the mailbox: until a cycle touches it, never cycled.
    cycled = row is not None and (found["state"] != "idle" or found["last_cycle_started"] is not None
                                  or found["last_outgoing_success"] is not None or row[-2] is not None)
    if cycled:
        for name, value in found.items():
            values[name] = value if value is None or isinstance(value, (int, str)) else str(value)
        if row[-2] is not None:
            values["last_error"] = {"code": row[-2], "text": row[-1] or ""}
    stale_sql, stale_params = stale_ids(now, mailbox_id)
    values["stale"] = database.execute_sql(
        f"SELECT count(*) FROM mailbox m WHERE m.id = ? AND +m.active = 1 AND m.id IN ({stale_sql})",
        [mailbox_id, *stale_params]).fetchone()[0] > 0
    kind = database.execute_sql(
        "SELECT p.type, m.incoming_method FROM mailbox m LEFT JOIN profile p ON p.id = m.profile_id WHERE m.id = ?",
        [mailbox_id]).fetchone()
    values["not_processed"] = not_processed_reason(*kind) if kind is not None else None
    return values  # type: ignore[return-value]  # the keys of SyncRow
