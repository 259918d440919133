"""Mailboxes: creation with the organisation defaults (R1, R2, R6), the views of R20, edits (R7,
R18), bulk edit (R3), Apply Default Email Settings (R2), approval (R5), deactivation (R19).

Bulk changes are set-based SQL over a selection materialised in a temporary table, inside one
immediate transaction: all of it happens, or none of it.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Sequence

from mbxtui.core import dialect, validation
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import (
    ActMethod, Approval, IncomingMethod, OutgoingMethod, ProfileType, Regarding, View,
)
from mbxtui.core.errors import Conflict, InvalidInput, NotFound
from mbxtui.core.jobs import queue as job_queue
from mbxtui.core.models import Mailbox, OrgSettings, Profile, database, utcnow
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services import audit
from mbxtui.core.services import settings as settings_service

SELECTED = f"id IN (SELECT id FROM {dialect.SELECTION_TABLE})"


def update_selected() -> str:
    """The start of a set-based UPDATE of mailboxes (see ``dialect.bulk_update``)."""
    return dialect.current().bulk_update("mailbox")

# Overall status: failure if any direction failed; success when every direction in use passed.
OVERALL_STATUS_SQL = """CASE
  WHEN incoming_status = 'failure' OR outgoing_status = 'failure' OR act_status = 'failure' THEN 'failure'
  WHEN (incoming_method != 'none' OR outgoing_method != 'none' OR act_method != 'none')
   AND (incoming_method = 'none' OR incoming_status = 'success')
   AND (outgoing_method = 'none' OR outgoing_status = 'success')
   AND (act_method = 'none' OR act_status = 'success') THEN 'success'
  ELSE 'not_run' END"""

RESET_ALL_TESTS_SQL = (
    "incoming_status = 'not_run', outgoing_status = 'not_run', act_status = 'not_run', "
    "overall_status = 'not_run', incoming_enabled = 0, outgoing_enabled = 0, act_enabled = 0, "
    "last_error_code = NULL, last_error_text = NULL, transient_failures = 0, postponed_until = NULL"
)

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


# --- rules shared by every way a mailbox comes to be -------------------------------------------

def approval_required(settings: OrgSettings, regarding: str) -> bool:
    """R9: users follow "approved users", queues and forward mailboxes "approved queues"."""
    if regarding == Regarding.USER:
        return settings.require_approval_users
    return settings.require_approval_queues


def fresh_approval(settings: OrgSettings, regarding: str, profile: Profile | None) -> dict[str, Any]:
    """Approval of a new or re-addressed mailbox: R6 approves Exchange Online ones at once."""
    if profile is not None and profile.type == ProfileType.EXCHANGE_ONLINE:
        return {"approval": Approval.APPROVED.value, "approved_by": "exchange_online", "approved_on": utcnow()}
    state = Approval.PENDING if approval_required(settings, regarding) else Approval.EMPTY
    return {"approval": state.value, "approved_by": None, "approved_on": None}


def new_mailbox_values(settings: OrgSettings, *, name: str, email: str, regarding: str,
                       owner_id: int | None, user_id: int | None = None,
                       queue_id: int | None = None) -> dict[str, Any]:
    """R1/R2: a new user or queue mailbox carries the organisation's default profile and methods."""
    profile = settings.default_profile if settings.default_profile_id else None
    return {
        "name": name, "email": email, "regarding": regarding, "user": user_id, "queue": queue_id,
        "owner": owner_id, "profile": profile.id if profile else None, "is_forward": False,
        "incoming_method": settings.default_incoming, "outgoing_method": settings.default_outgoing,
        "act_method": settings.default_act,
        **fresh_approval(settings, regarding, profile),
    }


def ensure_email_free(address: str, field_name: str = "email", *, except_id: int | None = None) -> None:
    clash = Mailbox.select(Mailbox.id, Mailbox.name).where(Mailbox.email == address)
    if except_id is not None:
        clash = clash.where(Mailbox.id != except_id)
    existing = clash.first()
    if existing is not None:
        raise Conflict(f"{field_name}: {address} is already the address of mailbox {existing.name!r}")


# --- reading -----------------------------------------------------------------------------------

def view_condition(view: View | str, actor: Actor) -> tuple[str, list[Any]]:
    # "+m.active": nearly every mailbox is active, so SQLite must find the rows through the other
    # condition's index and check "active" on those few (0.4 s against 0.13 s for the 100,000
    # pending mailboxes among 1,000,000); without the "+" it picks the active index.
    view = validation.choice("view", view, View)
    if view == View.ALL:
        return "TRUE", []
    if view == View.ACTIVE:
        return "m.active = 1", []
    if view == View.MINE:
        return "+m.active = 1 AND m.owner_id = ?", [actor.user_id if actor.user_id is not None else -1]
    if view == View.FORWARD:
        return "+m.active = 1 AND m.is_forward = 1", []
    if view == View.PENDING:
        return "+m.active = 1 AND m.approval = 'pending'", []
    if view == View.FAILED:
        return "+m.active = 1 AND m.overall_status = 'failure'", []
    return "m.incoming_enabled = 0 AND m.outgoing_enabled = 0 AND m.act_enabled = 0", []


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
    return f"{SORT_COLUMNS[sort]} {direction}{dialect.current().nulls_first(descending)}, m.id {direction}"


ROW_COLUMNS = (
    "m.id, m.name, m.email, m.regarding, m.is_forward, m.active, p.name AS profile, o.email AS owner, "
    "m.incoming_method, m.outgoing_method, m.act_method, m.approval, m.approved_by, m.approved_on, "
    "m.incoming_status, m.outgoing_status, m.act_status, m.overall_status, "
    "m.incoming_enabled, m.outgoing_enabled, m.act_enabled, m.test_scheduled, "
    "m.test_last_attempted_by, m.test_last_attempted_on, m.test_completed_on, m.last_error_code, "
    "m.last_error_text, m.transient_failures, m.postponed_until, m.use_own_credentials, m.username, "
    "m.password_set, m.token_set, m.delete_after_processing, m.process_email_after, m.row_version"
)
BOOLEAN_COLUMNS = {
    "is_forward", "active", "incoming_enabled", "outgoing_enabled", "act_enabled", "test_scheduled",
    "use_own_credentials", "password_set", "token_set", "delete_after_processing",
}


def _row_dict(cursor, row) -> dict[str, Any]:
    data = {}
    for (name, *_), value in zip(cursor.description, row):
        data[name] = bool(value) if name in BOOLEAN_COLUMNS else value
    data["password"] = "set" if data.pop("password_set") else "not set"
    data["oauth2_token"] = "set" if data.pop("token_set") else "not set"
    return data


@dataclass
class Page:
    total: int
    rows: list[dict[str, Any]] = field(default_factory=list)


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
    total = database.execute_sql(f"SELECT count(*) {count_from} WHERE {where}", params).fetchone()[0]
    source = _page_source(sort, total, offset + limit)
    cursor = database.execute_sql(
        f"SELECT {ROW_COLUMNS} FROM {source} {JOINS_SQL} WHERE {where} ORDER BY {ordering} LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    return Page(total=total, rows=[_row_dict(cursor, row) for row in cursor.fetchall()])


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


def rows_by_ids(actor: Actor, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    require(actor, Permission.READ)
    result: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        marks = ",".join("?" * len(chunk))
        cursor = database.execute_sql(f"SELECT {ROW_COLUMNS} {FROM_SQL} WHERE m.id IN ({marks})", chunk)
        for row in cursor.fetchall():
            data = _row_dict(cursor, row)
            result[data["id"]] = data
    return result


def get(email: str) -> Mailbox:
    address = validation.email("email", email)
    mailbox = Mailbox.get_or_none(Mailbox.email == address)
    if mailbox is None:
        raise NotFound(f"no mailbox with email {address}")
    return mailbox


def show(actor: Actor, email: str) -> dict[str, Any]:
    require(actor, Permission.READ)
    return rows_by_ids(actor, [get(email).id]).popitem()[1]


# --- selections --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Selection:
    """Which mailboxes a bulk action applies to: explicit ids or addresses, or a whole view + filter."""

    ids: Sequence[int] | None = None
    emails: tuple[str, ...] | None = None
    view: str | None = None
    filter_text: str | None = None
    profile: str | None = None
    up_to_id: int | None = None  # with a view: leave out mailboxes created after it was read

    @classmethod
    def of_emails(cls, emails: Iterable[str]) -> "Selection":
        return cls(emails=tuple(emails))

    @classmethod
    def of_ids(cls, ids: Iterable[int]) -> "Selection":
        # An array: a million marked mailboxes take 8 MB instead of 36 MB as a tuple of ints.
        return cls(ids=array("q", ids))

    @classmethod
    def of_profile(cls, name: str) -> "Selection":
        return cls(profile=name)

    @classmethod
    def of_view(cls, view: str | None, filter_text: str | None = None, up_to_id: int | None = None) -> "Selection":
        return cls(view=view or View.ACTIVE.value, filter_text=filter_text, up_to_id=up_to_id)


def materialise(actor: Actor, selection: Selection, only: tuple[str, Sequence[Any]] | None = None) -> int:
    """Fill the selection table with the selection (inside the caller's transaction) and return
    how many mailboxes it holds. ``only`` (a condition on mailbox and its parameters) keeps just
    the mailboxes an action changes, so that a view of a million mailboxes of which a few
    thousand change is not copied whole; the number returned still counts the whole selection."""
    sql = dialect.current()
    table = dialect.SELECTION_TABLE
    database.execute_sql(sql.create_selection_table())
    database.execute_sql(f"DELETE FROM {table}")
    if selection.emails is not None:
        addresses = [validation.email("email", e) for e in selection.emails]
        database.cursor().executemany(sql.insert_ignore(f"{table} (id)", "SELECT id FROM mailbox WHERE email = ?"),
                                      [(a,) for a in addresses])
        found = {r[0] for r in database.execute_sql(
            f"SELECT m.email FROM mailbox m JOIN {table} s ON s.id = m.id")}
        missing = [a for a in addresses if a not in found]
        if missing:
            raise NotFound("no mailbox with email " + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    elif selection.ids is not None:
        database.cursor().executemany(sql.insert_ignore(f"{table} (id)", "SELECT id FROM mailbox WHERE id = ?"),
                                      zip(selection.ids))
    else:
        if selection.profile is not None:
            name = validation.text("profile", selection.profile)
            profile = Profile.get_or_none(Profile.name == name)
            if profile is None:
                raise NotFound(f"no profile named {name!r}")
            where, params = "m.profile_id = ?", [profile.id]
        else:
            where, params = where_for(actor, selection.view or View.ACTIVE, selection.filter_text)
            if selection.up_to_id is not None:
                where, params = f"{where} AND m.id <= ?", [*params, selection.up_to_id]
        if only is not None:
            count = database.execute_sql(f"SELECT count(*) FROM mailbox m WHERE {where}", params).fetchone()[0]
            if count == 0:
                raise NotFound("no mailboxes selected")
            database.execute_sql(f"INSERT INTO {table} (id) SELECT m.id FROM mailbox m WHERE ({where}) "
                                 f"AND {only[0]}", [*params, *only[1]])
            return count
        database.execute_sql(f"INSERT INTO {table} (id) SELECT m.id FROM mailbox m WHERE {where}", params)
    count = database.execute_sql(f"SELECT count(*) FROM {table}").fetchone()[0]
    if count == 0:
        raise NotFound("no mailboxes selected")
    return count


def _examples(where: str, params: Sequence[Any] = ()) -> tuple[int, str]:
    rows = database.execute_sql(f"SELECT email FROM mailbox WHERE {SELECTED} AND {where} LIMIT 3", params).fetchall()
    count = database.execute_sql(f"SELECT count(*) FROM mailbox WHERE {SELECTED} AND {where}", params).fetchone()[0]
    shown = ", ".join(r[0] for r in rows) + (" ..." if count > len(rows) else "")
    return count, shown


def _refuse_if_any(where: str, params: Sequence[Any], field_name: str, problem: str) -> None:
    count, shown = _examples(where, params)
    if count:
        raise InvalidInput(field_name, f"{problem} ({count} selected mailbox(es): {shown}); nothing was changed")


@dataclass(frozen=True)
class BulkResult:
    selected: int
    changed: int

    def as_dict(self) -> dict[str, int]:
        return {"selected": self.selected, "changed": self.changed}


def _touch(extra_where: str = "TRUE") -> str:
    return f"modified_on = ?, row_version = row_version + 1 WHERE {SELECTED} AND {extra_where}"


# --- approval (R5) -----------------------------------------------------------------------------

def approve(actor: Actor, selection: Selection) -> BulkResult:
    require(actor, Permission.APPROVE)
    return _set_approval(actor, selection, Approval.APPROVED)


def reject(actor: Actor, selection: Selection) -> BulkResult:
    require(actor, Permission.APPROVE)
    return _set_approval(actor, selection, Approval.REJECTED)


def _set_approval(actor: Actor, selection: Selection, state: Approval) -> BulkResult:
    now = utcnow()
    with write_transaction():
        pending = "approval != ?"
        selected = materialise(actor, selection, only=(pending, [state.value]))
        action = "approve" if state == Approval.APPROVED else "reject"
        changed = audit.record_selection(
            actor, f"mailbox.{action}", f"{state.value} the email address of {{count}} mailbox(es)",
            ["approval", "approved_by", "approved_on"],
            {"approval": state.value, "approved_by": actor.login},
            f"{SELECTED} AND {pending}", [state.value],
        )
        disable = ", incoming_enabled = 0, outgoing_enabled = 0, act_enabled = 0" if state == Approval.REJECTED else ""
        database.execute_sql(
            f"{update_selected()} SET approval = ?, approved_by = ?, approved_on = ?{disable}, " + _touch(pending),
            [state.value, actor.login, now, now, state.value],
        )
    return BulkResult(selected, changed)


# --- bulk edit (R3) and Apply Default Email Settings (R2) --------------------------------------

def _profile_by_name(name: str) -> Profile:
    name = validation.text("profile", name)
    profile = Profile.get_or_none(Profile.name == name)
    if profile is None:
        raise InvalidInput("profile", f"no profile named {name!r}")
    if not profile.active:
        raise InvalidInput("profile", f"profile {name!r} is inactive")
    return profile


def _apply_settings(actor: Actor, action: str, summary: str, profile: Profile | None,
                    incoming: str | None, outgoing: str | None, act: str | None,
                    *, forward_keeps_methods: bool) -> int:
    """Set profile and methods on the selection; a changed profile resets every test, a changed
    method resets that direction's test (the last result no longer says anything)."""
    if not forward_keeps_methods:
        if outgoing is not None and outgoing != OutgoingMethod.NONE:
            _refuse_if_any("is_forward = 1", [], "outgoing",
                           "a forward mailbox only receives: its outgoing method must be none")
        if incoming == IncomingMethod.FORWARD_MAILBOX:
            _refuse_if_any("is_forward = 1", [], "incoming",
                           "a forward mailbox cannot itself be served by a forward mailbox")
    after: dict[str, Any] = {}
    if profile is not None:
        after["profile"] = profile.name
    for key, value in (("incoming_method", incoming), ("outgoing_method", outgoing), ("act_method", act)):
        if value is not None:
            after[key] = value
    changed = audit.record_selection(
        actor, action, summary, ["profile_id", "incoming_method", "outgoing_method", "act_method"], after,
        SELECTED, [],
    )
    now = utcnow()
    methods_where = "is_forward = 0" if forward_keeps_methods else "TRUE"
    if profile is not None:
        database.execute_sql(f"{update_selected()} SET {RESET_ALL_TESTS_SQL} WHERE {SELECTED} "
                             f"AND (profile_id IS NULL OR profile_id != ?)",
                             [profile.id])
        database.execute_sql(f"{update_selected()} SET profile_id = ?, " + _touch(), [profile.id, now])
    for direction, value in (("incoming", incoming), ("outgoing", outgoing), ("act", act)):
        if value is None:
            continue
        database.execute_sql(
            f"{update_selected()} SET {direction}_status = 'not_run', {direction}_enabled = 0 "
            f"WHERE {SELECTED} AND {methods_where} AND {direction}_method != ?", [value])
        database.execute_sql(f"{update_selected()} SET {direction}_method = ?, " + _touch(methods_where), [value, now])
    database.execute_sql(f"{update_selected()} SET overall_status = {OVERALL_STATUS_SQL} WHERE {SELECTED}")
    return changed


def bulk_edit(actor: Actor, selection: Selection, *, profile: str | None = None, incoming: str | None = None,
              outgoing: str | None = None, act: str | None = None) -> BulkResult:
    require(actor, Permission.CONFIGURE)
    target = _profile_by_name(profile) if profile is not None else None
    incoming = validation.choice("incoming", incoming, IncomingMethod).value if incoming is not None else None
    outgoing = validation.choice("outgoing", outgoing, OutgoingMethod).value if outgoing is not None else None
    act = validation.choice("act", act, ActMethod).value if act is not None else None
    if target is None and incoming is None and outgoing is None and act is None:
        raise InvalidInput("bulk edit", "nothing to change: give a profile or a method")
    with write_transaction():
        selected = materialise(actor, selection)
        changed = _apply_settings(actor, "mailbox.bulk_edit", f"bulk edit of {selected} mailbox(es)", target,
                                  incoming, outgoing, act, forward_keeps_methods=False)
    return BulkResult(selected, changed)


def apply_defaults(actor: Actor, selection: Selection, *, schedule_test: bool = True) -> dict[str, Any]:
    """R2: give the selected mailboxes the organisation's default profile and methods, then
    schedule Test & Enable for them (unless ``schedule_test`` is off). Forward mailboxes keep
    their own methods."""
    require(actor, Permission.CONFIGURE)
    if schedule_test:
        require(actor, Permission.TEST)
    settings = settings_service.load()
    if settings.default_profile_id is None:
        raise InvalidInput("default_profile", "is not set: choose one with `mbxtui settings set --default-profile NAME`")
    profile = settings.default_profile
    if not profile.active:
        raise InvalidInput("default_profile", f"profile {profile.name!r} is inactive")
    with write_transaction():
        selected = materialise(actor, selection)
        changed = _apply_settings(
            actor, "mailbox.apply_defaults", f"applied default email settings to {selected} mailbox(es)",
            profile, settings.default_incoming, settings.default_outgoing, settings.default_act,
            forward_keeps_methods=True,
        )
        batch = job_queue.enqueue_selected(actor.login, "Apply Default Email Settings").batch_id if schedule_test else None
    return {"selected": selected, "changed": changed, "test_batch": batch}


# --- deactivation (R19) ------------------------------------------------------------------------

def deactivate_selected(actor: Actor, summary: str) -> int:
    """Deactivate the materialised selection: inactive mailboxes are enabled for nothing and their
    queued tests are cancelled. Caller holds the transaction."""
    changed = audit.record_selection(actor, "mailbox.deactivate", summary, ["active"], {"active": False},
                                     f"{SELECTED} AND active = 1")
    database.execute_sql(
        f"{update_selected()} SET active = 0, incoming_enabled = 0, outgoing_enabled = 0, act_enabled = 0, "
        "test_scheduled = 0, postponed_until = NULL, " + _touch("active = 1"), [utcnow()])
    job_queue.cancel_selected(utcnow())
    return changed


def deactivate(actor: Actor, selection: Selection) -> BulkResult:
    require(actor, Permission.CONFIGURE)
    with write_transaction():
        selected = materialise(actor, selection)
        changed = deactivate_selected(actor, f"deactivated {selected} mailbox(es)")
    return BulkResult(selected, changed)


def activate(actor: Actor, selection: Selection) -> BulkResult:
    """Make mailboxes active again (still disabled until tested); refused while their user or queue is inactive."""
    require(actor, Permission.CONFIGURE)
    with write_transaction():
        selected = materialise(actor, selection)
        _refuse_if_any(
            "(user_id IN (SELECT id FROM \"user\" WHERE active = 0) OR queue_id IN (SELECT id FROM queue WHERE active = 0))",
            [], "activate", "the user or queue of a mailbox is inactive: activate it first")
        changed = audit.record_selection(actor, "mailbox.activate", f"activated {selected} mailbox(es)",
                                         ["active"], {"active": True}, f"{SELECTED} AND active = 0")
        database.execute_sql(f"{update_selected()} SET active = 1, " + _touch("active = 0"), [utcnow()])
    return BulkResult(selected, changed)


# --- one mailbox -------------------------------------------------------------------------------

EDITABLE = ("name", "email", "profile", "incoming_method", "outgoing_method", "act_method", "username",
            "use_own_credentials", "delete_after_processing", "process_email_after")


def _clean_edit(key: str, value: Any) -> Any:
    if key == "name":
        return validation.text("name", value)
    if key == "email":
        return validation.email("email", value)
    if key == "profile":
        return _profile_by_name(value).id
    if key == "incoming_method":
        return validation.choice("incoming", value, IncomingMethod).value
    if key == "outgoing_method":
        return validation.choice("outgoing", value, OutgoingMethod).value
    if key == "act_method":
        return validation.choice("act", value, ActMethod).value
    if key == "username":
        return validation.text("username", value, max_length=254, required=False)
    if key in ("use_own_credentials", "delete_after_processing"):
        return validation.on_off(key.replace("_", "-"), value)
    if key == "process_email_after":
        if value in (None, ""):
            return None
        try:
            moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip())
            return validation.stored_moment(moment)
        except ValueError:
            raise InvalidInput("process-email-after", f"{validation.shown(value)} is not a date (YYYY-MM-DD)") from None
    raise InvalidInput(key, "is not a mailbox field")


def _snapshot(mailbox: Mailbox) -> dict[str, Any]:
    return {key: getattr(mailbox, "profile_id" if key == "profile" else key) for key in EDITABLE}


def edit(actor: Actor, email: str, /, *, expected_version: int | None = None, **fields: Any) -> dict[str, Any]:
    """Change one mailbox (``email`` in ``fields`` is its new address). A new address resets approval
    and tests and disables it (R7)."""
    require(actor, Permission.CONFIGURE)
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not a mailbox field")
    changes = {key: _clean_edit(key, value) for key, value in fields.items() if value is not None}
    if not changes:
        raise InvalidInput("mailbox", "nothing to change")
    with write_transaction():
        mailbox = get(email)
        if expected_version is not None and mailbox.row_version != expected_version:
            raise Conflict(f"mailbox {mailbox.email} was changed by someone else since you opened it; reload and try again")
        before = _snapshot(mailbox)
        changed = {k: v for k, v in changes.items() if before[k] != v}
        if not changed:
            return show(actor, mailbox.email)
        after = {**before, **changed}
        if after["delete_after_processing"] and mailbox.regarding == Regarding.USER:
            raise InvalidInput("delete-after-processing", "is allowed only on queue and forward mailboxes (R18)")
        if mailbox.is_forward and after["outgoing_method"] != OutgoingMethod.NONE:
            raise InvalidInput("outgoing", "a forward mailbox only receives: its outgoing method must be none")
        if mailbox.is_forward and after["incoming_method"] == IncomingMethod.FORWARD_MAILBOX:
            raise InvalidInput("incoming", "a forward mailbox cannot itself be served by a forward mailbox")
        if "email" in changed:
            ensure_email_free(changed["email"], except_id=mailbox.id)
        for key, value in changed.items():
            setattr(mailbox, "profile_id" if key == "profile" else key, value)
        if "email" in changed or "profile" in changed:
            for direction in ("incoming", "outgoing", "act"):
                setattr(mailbox, f"{direction}_status", "not_run")
                setattr(mailbox, f"{direction}_enabled", False)
            mailbox.last_error_code = mailbox.last_error_text = mailbox.postponed_until = None
            mailbox.transient_failures = 0
        if "email" in changed:
            profile = Profile.get_or_none(Profile.id == mailbox.profile_id) if mailbox.profile_id else None
            for key, value in fresh_approval(settings_service.load(), mailbox.regarding, profile).items():
                setattr(mailbox, key, value)
        for direction in ("incoming", "outgoing", "act"):
            if f"{direction}_method" in changed:
                setattr(mailbox, f"{direction}_status", "not_run")
                setattr(mailbox, f"{direction}_enabled", False)
        mailbox.modified_on = utcnow()
        mailbox.row_version += 1
        mailbox.save()
        database.execute_sql(f"UPDATE mailbox SET overall_status = {OVERALL_STATUS_SQL} WHERE id = ?", [mailbox.id])
        audit.record(actor, "mailbox.edit", "mailbox", f"changed mailbox {mailbox.email}: " + ", ".join(sorted(changed)),
                     [(mailbox.id, {k: before[k] for k in changed}, {k: _snapshot(mailbox)[k] for k in changed})])
    return show(actor, mailbox.email)


def create_forward_mailbox(actor: Actor, *, name: str, email: str, profile: str,
                           delete_after_processing: bool = False, owner: str | None = None) -> dict[str, Any]:
    """R17: a mailbox with no user or queue that receives for others; outgoing is none."""
    require(actor, Permission.CONFIGURE)
    from mbxtui.core.models import User

    name = validation.text("name", name)
    address = validation.email("email", email)
    target = _profile_by_name(profile)
    delete_after = validation.on_off("delete-after-processing", delete_after_processing)
    owner_id = None
    if owner:
        owner_address = validation.email("owner", owner)
        user = User.get_or_none(User.email == owner_address)
        if user is None:
            raise InvalidInput("owner", f"no user with email {owner_address}")
        owner_id = user.id
    settings = settings_service.load()
    with write_transaction():
        ensure_email_free(address)
        mailbox = Mailbox.create(
            name=name, email=address, regarding=Regarding.FORWARD.value, owner=owner_id, profile=target.id,
            is_forward=True, incoming_method=IncomingMethod.SERVER_SIDE_SYNC.value,
            outgoing_method=OutgoingMethod.NONE.value, act_method=ActMethod.NONE.value,
            delete_after_processing=delete_after,
            **fresh_approval(settings, Regarding.FORWARD, target),
        )
        audit.record(actor, "mailbox.create_forward", "mailbox", f"created forward mailbox {address}",
                     [(mailbox.id, None, _snapshot(mailbox))])
    return show(actor, address)
