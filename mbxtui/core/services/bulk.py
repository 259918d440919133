"""Actions on many mailboxes at once: approve and reject (R5), bulk edit (R3), Apply Default Email
Settings (R2), deactivate and activate (R19).

Each runs as set-based SQL over its ``Selection`` materialised in the selection table, inside one
write transaction: all of it happens, with its audit records, or none of it. Each returns a
``BulkResult`` (``DefaultsApplied`` for Apply Default Email Settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mbxtui.core import dialect, validation
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import ActMethod, Approval, IncomingMethod, OutgoingMethod
from mbxtui.core.errors import InvalidInput
from mbxtui.core.jobs import queue as job_queue
from mbxtui.core.models import Profile, database, utcnow
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services import audit, authorization_identity
from mbxtui.core.services import settings as settings_service
from mbxtui.core.services.mailboxes import (
    FOLLOW_ORGANISATION, RESET_ALL_TESTS, overall_status_of, own_tracking, profile_by_name,
)
from mbxtui.core.services.selection import SELECTED, Selection, materialise, refuse_if_any, update_selected


@dataclass(frozen=True)
class BulkResult:
    """``selected`` mailboxes were named; ``changed`` of them changed (each has its audit record)."""

    selected: int
    changed: int

    def as_dict(self) -> dict[str, Any]:
        return {"selected": self.selected, "changed": self.changed}


@dataclass(frozen=True)
class DefaultsApplied(BulkResult):
    """Apply Default Email Settings: ``test_batch`` is the Test & Enable batch it queued, or None
    when it was asked not to test."""

    test_batch: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "test_batch": self.test_batch}


def _literal(value: int | str) -> str:
    """An id or an enum value as an SQL literal."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"not an id or an enum value: {value!r}")
    return str(value) if isinstance(value, int) else "'" + value.replace("'", "''") + "'"


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
        selected = materialise(actor, selection, only=dialect.current().approval_other_than(state.value))
        # The selection holds only the mailboxes this changes: counting it spares a pass over their
        # rows (81,817 at 1,000,000 mailboxes: 0.22-0.35 s on PostgreSQL, 0.07-0.10 s on SQLite).
        changing = database.execute_sql(f"SELECT count(*) FROM {dialect.SELECTION_TABLE}").fetchone()[0]
        action = "approve" if state == Approval.APPROVED else "reject"
        changed = audit.record_selection(
            actor, f"mailbox.{action}", f"{state.value} the email address of {{count}} mailbox(es)",
            ["approval", "approved_by", "approved_on"],
            {"approval": state.value, "approved_by": actor.login},
            SELECTED, [], count=changing,
        )
        disable = ", incoming_enabled = 0, outgoing_enabled = 0, act_enabled = 0" if state == Approval.REJECTED else ""
        database.execute_sql(
            f"{update_selected()} SET approval = ?, approved_by = ?, approved_on = ?{disable}, " + _touch(),
            [state.value, actor.login, now, now],
        )
    return BulkResult(selected, changed)


# --- bulk edit (R3) and Apply Default Email Settings (R2) --------------------------------------

def _apply_settings(actor: Actor, action: str, summary: str, profile: Profile | None,
                    incoming: str | None, outgoing: str | None, act: str | None,
                    *, forward_keeps_methods: bool, tracking: str | None = None) -> int:
    """Set profile and methods on the selection; a changed profile resets every test, a changed
    method resets that direction's test (the last result no longer says anything). ``tracking``
    (R27: a value of ``Tracking`` or ``FOLLOW_ORGANISATION``) changes no test."""
    if not forward_keeps_methods:
        if outgoing is not None and outgoing != OutgoingMethod.NONE:
            refuse_if_any("is_forward = 1", [], "outgoing",
                          "a forward mailbox only receives: its outgoing method must be none")
        if incoming == IncomingMethod.FORWARD_MAILBOX:
            refuse_if_any("is_forward = 1", [], "incoming",
                          "a forward mailbox cannot itself be served by a forward mailbox")
    if tracking is not None and tracking != FOLLOW_ORGANISATION:
        refuse_if_any("is_forward = 1", [], "tracking",
                      "a forward mailbox has no tracking of its own: leave it at default")
    if profile is not None:
        authorization_identity.refuse_moving_authorized(profile)  # R34: a refresh token is for one OAuth client
    after: dict[str, Any] = {}
    if profile is not None:
        after["profile"] = profile.name
    for key, value in (("incoming_method", incoming), ("outgoing_method", outgoing), ("act_method", act)):
        if value is not None:
            after[key] = value
    columns = ["profile_id", "incoming_method", "outgoing_method", "act_method"]
    if tracking is not None:
        after["tracking"] = None if tracking == FOLLOW_ORGANISATION else tracking
        columns.append("tracking")
    changed = audit.record_selection(actor, action, summary, columns, after, SELECTED, [])
    # One UPDATE: every expression reads the row as it was, so each reset is decided on the old
    # profile and methods, and the overall status is computed from the new values. Three to five
    # passes over the same rows took 40 s for a million mailboxes on SQLite. The values written are
    # an id and members of the method enums, so they go into the SQL as literals: the overall
    # status repeats the new values' expressions, which placeholders could not follow.
    assignments: dict[str, str] = {}
    resets = {direction: "FALSE" for direction in ("incoming", "outgoing", "act")}
    if profile is not None:
        assignments["profile_id"] = _literal(profile.id)
        profile_changed = f"(profile_id IS NULL OR profile_id != {_literal(profile.id)})"
        for column, value in RESET_ALL_TESTS.items():
            assignments[column] = f"CASE WHEN {profile_changed} THEN {value} ELSE {column} END"
        resets = {direction: profile_changed for direction in resets}
    methods_where = "is_forward = 0" if forward_keeps_methods else "TRUE"
    for direction, value in (("incoming", incoming), ("outgoing", outgoing), ("act", act)):
        if value is None:
            continue
        method_changed = f"({methods_where} AND {direction}_method != {_literal(value)})"
        for column, reset in ((f"{direction}_status", "'not_run'"), (f"{direction}_enabled", "0")):
            assignments[column] = f"CASE WHEN {resets[direction]} OR {method_changed} THEN {reset} ELSE {column} END"
        assignments[f"{direction}_method"] = (f"CASE WHEN {methods_where} THEN {_literal(value)} "
                                              f"ELSE {direction}_method END")
    assignments["overall_status"] = overall_status_of(assignments)
    if tracking is not None:
        assignments["tracking"] = "NULL" if tracking == FOLLOW_ORGANISATION else _literal(tracking)
    columns = ", ".join(f"{column} = {expression}" for column, expression in assignments.items())
    database.execute_sql(f"{update_selected()} SET {columns}, " + _touch(), [utcnow()])
    return changed


def bulk_edit(actor: Actor, selection: Selection, *, profile: str | None = None, incoming: str | None = None,
              outgoing: str | None = None, act: str | None = None, tracking: str | None = None) -> BulkResult:
    """R3 on the selection; ``tracking`` (R27) ``default`` gives them the organisation's again."""
    require(actor, Permission.CONFIGURE)
    target = profile_by_name(profile) if profile is not None else None
    incoming = validation.choice("incoming", incoming, IncomingMethod).value if incoming is not None else None
    outgoing = validation.choice("outgoing", outgoing, OutgoingMethod).value if outgoing is not None else None
    act = validation.choice("act", act, ActMethod).value if act is not None else None
    tracking = (own_tracking(tracking) or FOLLOW_ORGANISATION) if tracking is not None else None
    if target is None and incoming is None and outgoing is None and act is None and tracking is None:
        raise InvalidInput("bulk edit", "nothing to change: give a profile, a method or a tracking")
    with write_transaction():
        selected = materialise(actor, selection)
        changed = _apply_settings(actor, "mailbox.bulk_edit", f"bulk edit of {selected} mailbox(es)", target,
                                  incoming, outgoing, act, forward_keeps_methods=False, tracking=tracking)
    return BulkResult(selected, changed)


def apply_defaults(actor: Actor, selection: Selection, *, schedule_test: bool = True) -> DefaultsApplied:
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
    return DefaultsApplied(selected, changed, batch)


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
        refuse_if_any(
            "(user_id IN (SELECT id FROM \"user\" WHERE active = 0) OR queue_id IN (SELECT id FROM queue WHERE active = 0))",
            [], "activate", "the user or queue of a mailbox is inactive: activate it first")
        changed = audit.record_selection(actor, "mailbox.activate", f"activated {selected} mailbox(es)",
                                         ["active"], {"active": True}, f"{SELECTED} AND active = 0")
        database.execute_sql(f"{update_selected()} SET active = 1, " + _touch("active = 0"), [utcnow()])
    return BulkResult(selected, changed)
