"""The bulk actions change the same mailboxes, with the same audit records, whichever way the
selection names them (explicit ids, addresses, a view after "mark all"); bulk edit and Apply
Default Email Settings write in one statement what the rules of R2/R3 say; a refusal writes
nothing. Runs on the backend the suite runs on (SQLite or PostgreSQL)."""

from __future__ import annotations

import contextlib
import itertools
import json
from typing import Any, Callable, Iterator

import pytest

from mbxtui.core.errors import InvalidInput, NotFound
from mbxtui.core.models import database
from mbxtui.core.permissions import Actor
from mbxtui.core.services import bulk, mailbox_views, mailboxes, profiles, settings, users
from mbxtui.core.services.profiles import ProfileRecord
from mbxtui.core.services.selection import Selection, id_runs_json
from tests.core.support import last_audit_id, profile_fields, snapshot

STATUSES = ("not_run", "success", "failure")
METHODS = {"incoming_method": ("none", "server_side_sync", "forward_mailbox"),
           "outgoing_method": ("none", "server_side_sync"), "act_method": ("none", "server_side_sync")}
COLUMNS = ("id", "email", "profile_id", "is_forward", "approval", "approved_by", "approved_on", "active",
           "incoming_method", "outgoing_method", "act_method", "incoming_status", "outgoing_status", "act_status", "overall_status",
           "incoming_enabled", "outgoing_enabled", "act_enabled", "last_error_code", "last_error_text",
           "transient_failures", "postponed_until", "row_version")


@pytest.fixture
def varied(admin: Actor, default_profile: ProfileRecord) -> dict[str, Any]:
    """Thirty user mailboxes and two forward mailboxes over two profiles, in every mix of approval,
    activity, methods and test results (set directly, as Test & Enable would leave them)."""
    pop = profiles.create(admin, **profile_fields(name="pop", type="pop3_smtp", incoming_port=995))
    for n in range(30):
        users.add_user(admin, f"User {n}", f"user{n}@corp.test")
    for n in range(2):
        mailboxes.create_forward_mailbox(admin, name=f"Forward {n}", email=f"fwd{n}@corp.test", profile="imap")
    ids = [row[0] for row in database.execute_sql("SELECT id FROM mailbox ORDER BY id")]
    combinations = itertools.cycle(itertools.product(STATUSES, STATUSES, ("pending", "approved", "rejected", "empty")))
    for index, mailbox_id in enumerate(ids):
        incoming, outgoing, approval = next(combinations)
        forward = index >= 30
        database.execute_sql(
            "UPDATE mailbox SET profile_id = ?, approval = ?, active = ?, incoming_method = ?, outgoing_method = ?, "
            "act_method = ?, incoming_status = ?, outgoing_status = ?, act_status = ?, incoming_enabled = ?, "
            "outgoing_enabled = ?, last_error_code = ?, transient_failures = ?, postponed_until = ? WHERE id = ?",
            [pop.id if index % 3 == 0 else default_profile.id, approval, 0 if index % 7 == 6 else 1,
             "server_side_sync" if forward else METHODS["incoming_method"][index % 3],
             "none" if forward else METHODS["outgoing_method"][index % 2],
             METHODS["act_method"][(index // 2) % 2], incoming, outgoing, STATUSES[index % 3],
             int(incoming == "success"), int(outgoing == "success"), "timeout" if "failure" in (incoming, outgoing)
             else None, index % 4, "2030-01-01 00:00:00" if index % 5 == 0 else None, mailbox_id])
    database.execute_sql(f"UPDATE mailbox SET overall_status = {mailboxes.OVERALL_STATUS_SQL}")
    return {"ids": ids, "pop": pop.id, "imap": default_profile.id}


def rows() -> dict[int, dict[str, Any]]:
    cursor = database.execute_sql(f"SELECT {', '.join(COLUMNS)} FROM mailbox ORDER BY id")
    return {row[0]: dict(zip(COLUMNS, row)) for row in cursor.fetchall()}


def audit_records(since: int) -> dict[int, tuple[dict, dict]]:
    """The audit records written since entry ``since``: mailbox id -> (before, after)."""
    found = {}
    for record_id, before, after in database.execute_sql(
            "SELECT r.record_id, r.before, r.after FROM audit_record r JOIN audit_entry e ON e.id = r.entry_id "
            "WHERE e.id > ? AND r.record_kind = 'mailbox'", [since]).fetchall():
        assert record_id not in found, f"two audit records for mailbox {record_id}"
        found[record_id] = (json.loads(before), json.loads(after))
    return found


def changed_columns(before: dict[int, dict], after: dict[int, dict]) -> dict[int, dict[str, Any]]:
    """What changed in each changed row (a new approval time shown as "now": it differs per run)."""
    return {mailbox_id: {k: "now" if k == "approved_on" else v for k, v in row.items()
                         if before[mailbox_id][k] != v and k != "row_version"}
            for mailbox_id, row in after.items() if row != before[mailbox_id]}


def overall(row: dict[str, Any]) -> str:
    directions = [(row[f"{d}_method"], row[f"{d}_status"]) for d in ("incoming", "outgoing", "act")]
    if any(status == "failure" for _, status in directions):
        return "failure"
    if any(method != "none" for method, _ in directions) and all(
            method == "none" or status == "success" for method, status in directions):
        return "success"
    return "not_run"


def expected_settings(row: dict[str, Any], profile_id: int | None, methods: dict[str, str],
                      forward_keeps_methods: bool) -> dict[str, Any]:
    """R2/R3 for one mailbox, written out: a new profile resets every test; a new method resets
    that direction's test; forward mailboxes keep their methods under Apply Default Email Settings."""
    new = dict(row)
    if profile_id is not None and row["profile_id"] != profile_id:
        new.update(profile_id=profile_id, last_error_code=None, last_error_text=None, transient_failures=0,
                   postponed_until=None)
        for direction in ("incoming", "outgoing", "act"):
            new[f"{direction}_status"], new[f"{direction}_enabled"] = "not_run", 0
    for direction in ("incoming", "outgoing", "act"):
        value = methods.get(direction)
        if value is None or (forward_keeps_methods and row["is_forward"]):
            continue
        if row[f"{direction}_method"] != value:
            new[f"{direction}_status"], new[f"{direction}_enabled"] = "not_run", 0
        new[f"{direction}_method"] = value
    new["overall_status"] = overall(new)
    return new


def test_id_runs_are_ascending_first_last_pairs_each_id_once():
    assert json.loads(id_runs_json([5, 1, 2, 3, 9, 3, 10, 7])) == [[1, 3], [5, 5], [7, 7], [9, 10]]
    assert json.loads(id_runs_json(Selection.of_ids(range(1, 100_001)).ids)) == [[1, 100_000]]
    assert id_runs_json([]) == "[]"


SELECTIONS: dict[str, Callable[[list[int]], Selection]] = {
    "ids": lambda ids: Selection.of_ids(ids),
    "ids unsorted, repeated": lambda ids: Selection.of_ids(list(reversed(ids)) + ids[:3]),
    "emails": lambda ids: Selection.of_emails(
        [r[0] for r in database.execute_sql("SELECT email FROM mailbox ORDER BY id")]),
    "view after mark all": lambda ids: Selection.of_view("all", up_to_id=max(ids)),
}
ACTIONS: dict[str, Callable[[Actor, Selection], bulk.BulkResult]] = {
    "approve": bulk.approve,
    "reject": bulk.reject,
    "deactivate": bulk.deactivate,
    "activate": bulk.activate,
    "bulk edit": lambda actor, selection: bulk.bulk_edit(actor, selection, profile="pop", incoming="none"),
}


@pytest.mark.parametrize("action", list(ACTIONS))
def test_every_way_of_naming_the_mailboxes_changes_the_same_rows_with_complete_audit_records(
        admin: Actor, varied: dict, action: str):
    outcomes = {}
    for way, make in SELECTIONS.items():
        with rolled_back():
            before, since = rows(), last_audit_id()
            result = ACTIONS[action](admin, make(varied["ids"]))
            after = rows()
            changes = changed_columns(before, after)
            records = audit_records(since)
        assert result.selected == len(varied["ids"]), way
        if action == "bulk edit":  # every selected mailbox is recorded: its profile and methods are set
            assert set(records) == set(varied["ids"]) and result.changed == len(varied["ids"]), way
        else:
            assert set(records) == set(changes) and result.changed == len(changes) > 0, way
        for mailbox_id, (before_values, _) in records.items():
            for column, value in before_values.items():
                assert value == before[mailbox_id][column], (way, mailbox_id, column)
        assert all(after[i]["row_version"] == before[i]["row_version"] + 1 for i in changes), way
        outcomes[way] = (changes, {i: after_values for i, (_, after_values) in records.items()})
    first = next(iter(outcomes.values()))
    assert all(outcome == first for outcome in outcomes.values()), "the ways of selecting disagree"


@contextlib.contextmanager
def rolled_back() -> Iterator[None]:
    """Run the block in a transaction that is rolled back afterwards (the services' own
    transactions become savepoints inside it)."""
    with database.atomic() as transaction:
        yield
        transaction.rollback()


@pytest.mark.parametrize("changes", [
    {"profile": "pop"},
    {"incoming": "none"},
    {"profile": "imap", "outgoing": "none", "act": "server_side_sync"},
    {"profile": "pop", "incoming": "server_side_sync", "outgoing": "none", "act": "none"},
])
def test_bulk_edit_writes_what_r3_says_for_every_mix_of_profile_methods_and_results(admin: Actor, varied: dict,
                                                                                    changes: dict):
    before = rows()
    outgoing_allowed = changes.get("outgoing", "none") == "none"
    selected = [i for i in varied["ids"] if outgoing_allowed or not before[i]["is_forward"]]
    bulk.bulk_edit(admin, Selection.of_ids(selected), **changes)
    after = rows()
    profile_id = varied[changes["profile"]] if "profile" in changes else None
    methods = {d: changes[d] for d in ("incoming", "outgoing", "act") if d in changes}
    for mailbox_id, row in before.items():
        expected = expected_settings(row, profile_id, methods, False) if mailbox_id in selected else row
        assert {k: v for k, v in after[mailbox_id].items() if k != "row_version"} == \
               {k: v for k, v in expected.items() if k != "row_version"}, mailbox_id


def test_apply_defaults_writes_what_r2_says_and_forward_mailboxes_keep_their_methods(admin: Actor, varied: dict):
    settings.update(admin, default_profile="pop", default_incoming="none", default_outgoing="server_side_sync",
                    default_act="server_side_sync")
    before = rows()
    result = bulk.apply_defaults(admin, Selection.of_view("all"), schedule_test=False)
    after = rows()
    assert (result.selected, result.changed, result.test_batch) == (len(before), len(before), None)
    methods = {"incoming": "none", "outgoing": "server_side_sync", "act": "server_side_sync"}
    for mailbox_id, row in before.items():
        expected = expected_settings(row, varied["pop"], methods, True)
        assert {k: v for k, v in after[mailbox_id].items() if k != "row_version"} == \
               {k: v for k, v in expected.items() if k != "row_version"}, mailbox_id
    assert result.as_dict() == {"selected": len(before), "changed": len(before), "test_batch": None}


def test_a_refused_bulk_edit_by_ids_writes_nothing(admin: Actor, varied: dict):
    before = snapshot()
    with pytest.raises(InvalidInput, match="forward mailbox only receives"):
        bulk.bulk_edit(admin, Selection.of_ids(varied["ids"]), profile="pop", outgoing="server_side_sync")
    assert snapshot() == before


def test_ids_of_mailboxes_that_do_not_exist_are_not_counted(admin: Actor, varied: dict):
    missing = max(varied["ids"]) + 1000
    pending = [i for i, row in rows().items() if row["approval"] == "pending"]
    result = bulk.approve(admin, Selection.of_ids([*pending, missing, missing + 1]))
    assert (result.selected, result.changed) == (len(pending), len(pending))
    before = snapshot()
    with pytest.raises(NotFound):
        bulk.deactivate(admin, Selection.of_ids([missing]))
    with pytest.raises(NotFound):
        bulk.approve(admin, Selection.of_ids([missing]))
    assert snapshot() == before


def test_approving_by_ids_counts_the_selection_and_changes_only_the_unapproved(admin: Actor, varied: dict):
    before = rows()
    unapproved = {i for i, row in before.items() if row["approval"] != "approved"}
    result = bulk.approve(admin, Selection.of_ids(varied["ids"]))
    assert (result.selected, result.changed) == (len(before), len(unapproved))
    assert set(changed_columns(before, rows())) == unapproved
    page = mailbox_views.list_mailboxes(admin, view="pending")
    assert page.total == 0
