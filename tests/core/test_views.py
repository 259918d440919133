"""R20: the mailbox views, each filterable (LIKE below three characters, the trigram index from
three), sortable by every column in both directions, paged, and counted.

Expected results are computed here in Python from the stored rows, independently of the SQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from mbxtui.core.errors import InvalidInput
from mbxtui.core.models import database
from mbxtui.core.permissions import Actor
from mbxtui.core.services import bulk, mailbox_views, mailboxes, operators, profiles, settings, users
from mbxtui.core.services.mailboxes import OVERALL_STATUS_SQL
from mbxtui.core.services.selection import Selection
from tests.backends import ON_POSTGRES
from tests.core.conftest import open_copy
from tests.core.support import IMAP_PROFILE, LOGINS, profile_fields, set_test_results

PEOPLE = [("ann", "ann@corp.test"), ("Bob", "bob@corp.test"), ("carol", "carol@corp.test"),
          ("Dave", "dave@example.org"), ("eve x", "e_x@corp.test"), ("Zoë", "zoe@corp.test")]


def build_views_database(admin: Actor) -> None:
    users.add_user(admin, "Frank", "frank@corp.test")  # made before any default profile: no profile
    profiles.create(admin, **IMAP_PROFILE)
    profiles.create(admin, **profile_fields(name="pop", type="pop3_smtp"))
    settings.update(admin, default_profile="imap")
    for name, email in PEOPLE:
        users.add_user(admin, name, email)
    users.add_queue(admin, "Sales", "sales@corp.test", "ann@corp.test")
    users.add_queue(admin, "support desk", "support@example.org", "bob@corp.test")
    mailboxes.create_forward_mailbox(admin, name="Forwarder", email="fwd@corp.test", profile="pop")
    bulk.bulk_edit(admin, Selection.of_emails(["carol@corp.test", "dave@example.org"]), profile="pop",
                        act="server_side_sync")
    bulk.approve(admin, Selection.of_emails(["ann@corp.test", "bob@corp.test", "sales@corp.test"]))
    bulk.reject(admin, Selection.of_emails(["dave@example.org"]))
    set_test_results("ann@corp.test", incoming_status="success", outgoing_status="success",
                     incoming_enabled=1, outgoing_enabled=1, test_completed_on="2024-03-01 10:00:00")
    set_test_results("bob@corp.test", incoming_status="failure", outgoing_status="success",
                     outgoing_enabled=1, test_completed_on="2024-02-01 10:00:00")
    set_test_results("sales@corp.test", incoming_status="success", outgoing_status="failure",
                     incoming_enabled=1, test_completed_on="2024-04-01 10:00:00")
    set_test_results("carol@corp.test", act_status="failure", incoming_status="success", outgoing_status="success",
                     incoming_enabled=1, outgoing_enabled=1, test_completed_on="2024-01-01 10:00:00")
    set_test_results("fwd@corp.test", incoming_status="success", incoming_enabled=1,
                     test_completed_on="2024-03-01 10:00:00")
    set_test_results("zoe@corp.test", incoming_status="failure")
    database.execute_sql(f"UPDATE mailbox SET overall_status = {OVERALL_STATUS_SQL}")
    # creation times out of id order, with a tie
    for offset, email in enumerate(["zoe@corp.test", "sales@corp.test", "ann@corp.test", "frank@corp.test"]):
        set_test_results(email, created_on=f"2023-0{offset + 1}-01 00:00:00")
    set_test_results("bob@corp.test", created_on="2023-01-01 00:00:00")
    users.deactivate_user(admin, "e_x@corp.test")
    operators.add(admin, "olga", "viewer", "bob@corp.test")


@pytest.fixture(scope="module")
def views_db(databases, template_db: Path | str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    location, opened = open_copy(databases, template_db, tmp_path_factory.mktemp("views"))
    build_views_database(operators.current_actor(login=LOGINS["admin"]))
    yield opened
    opened.close()
    databases.drop(location)


@pytest.fixture
def viewer(views_db) -> Actor:
    database.initialize(views_db)
    return operators.current_actor(login=LOGINS["viewer"])


def stored_rows() -> list[dict[str, Any]]:
    cursor = database.execute_sql(
        "SELECT m.*, p.name AS profile_name FROM mailbox m LEFT JOIN profile p ON p.id = m.profile_id")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


VIEW_RULES: dict[str, Callable[[dict, int | None], bool]] = {
    "all": lambda m, me: True,
    "active": lambda m, me: m["active"] == 1,
    "mine": lambda m, me: m["active"] == 1 and m["owner_id"] == me,
    "forward": lambda m, me: m["active"] == 1 and m["is_forward"] == 1,
    "pending": lambda m, me: m["active"] == 1 and m["approval"] == "pending",
    "failed": lambda m, me: m["active"] == 1 and "failure" in (m["incoming_status"], m["outgoing_status"],
                                                                 m["act_status"]),
    "disabled": lambda m, me: not (m["incoming_enabled"] or m["outgoing_enabled"] or m["act_enabled"]),
}

SORT_KEYS: dict[str, Callable[[dict], Any]] = {
    "name": lambda m: m["name"].lower(),
    "email": lambda m: m["email"],
    "regarding": lambda m: m["regarding"],
    "profile": lambda m: m["profile_name"],
    "incoming_method": lambda m: m["incoming_method"],
    "outgoing_method": lambda m: m["outgoing_method"],
    "act_method": lambda m: m["act_method"],
    "approval": lambda m: m["approval"],
    "incoming_status": lambda m: m["incoming_status"],
    "outgoing_status": lambda m: m["outgoing_status"],
    "act_status": lambda m: m["act_status"],
    "status": lambda m: m["overall_status"],
    "enabled": lambda m: m["incoming_enabled"] + m["outgoing_enabled"] + m["act_enabled"],
    "last_tested": lambda m: m["test_completed_on"],
    "created": lambda m: str(m["created_on"]),
}


def expected_order(rows: list[dict], sort: str, descending: bool) -> list[str]:
    key = SORT_KEYS[sort]
    # SQLite puts NULL first in ascending order; ties are broken by id in the same direction.
    ordered = sorted(rows, key=lambda m: (key(m) is not None, key(m) if key(m) is not None else "", m["id"]))
    if descending:
        ordered.reverse()
    return [m["email"] for m in ordered]


def listed(actor: Actor, **kwargs) -> list[str]:
    return [row["email"] for row in mailbox_views.list_mailboxes(actor, limit=1000, **kwargs).rows]


def test_the_views_database_has_something_in_every_view(viewer: Actor):
    rows = stored_rows()
    me = operators.current_actor(login="olga").user_id
    for view, rule in VIEW_RULES.items():
        members = [m for m in rows if rule(m, me)]
        assert 0 < len(members) < len(rows) or view == "all", view


@pytest.mark.parametrize("view", list(VIEW_RULES))
def test_each_view_holds_exactly_its_mailboxes_and_counts_them(viewer: Actor, view: str):
    actor = operators.current_actor(login="olga")
    expected = sorted(m["email"] for m in stored_rows() if VIEW_RULES[view](m, actor.user_id))
    page = mailbox_views.list_mailboxes(actor, view=view, sort="email", limit=1000)
    assert [r["email"] for r in page.rows] == expected
    assert page.total == len(expected)


def test_my_mailboxes_is_empty_for_an_operator_who_is_no_user(viewer: Actor):
    assert mailbox_views.list_mailboxes(viewer, view="mine").total == 0


def paged(actor: Actor, page_size: int, **kwargs) -> list[str]:
    emails: list[str] = []
    for offset in range(0, 100, page_size):
        page = mailbox_views.list_mailboxes(actor, limit=page_size, offset=offset, **kwargs)
        if not page.rows:
            return emails
        emails.extend(row["email"] for row in page.rows)
    raise AssertionError("more pages than mailboxes")


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("sort", list(mailbox_views.SORT_COLUMNS))
def test_every_column_sorts_both_ways(viewer: Actor, sort: str, descending: bool):
    assert set(SORT_KEYS) == set(mailbox_views.SORT_COLUMNS)
    rows = stored_rows()
    expected = expected_order(rows, sort, descending)
    assert listed(viewer, view="all", sort=sort, descending=descending) == expected
    # small pages of a large view are read along the sort column's index: the same order
    assert paged(viewer, 2, view="all", sort=sort, descending=descending) == expected
    active = {m["email"] for m in rows if m["active"]}
    assert paged(viewer, 1, view="active", sort=sort, descending=descending) == [e for e in expected if e in active]
    assert mailbox_views.ids_in_view(viewer, view="all", sort=sort, descending=descending) == [
        r["id"] for r in mailbox_views.list_mailboxes(viewer, view="all", sort=sort, descending=descending,
                                                  limit=1000).rows]


def test_the_sort_column_name_is_case_insensitive_and_defaults_to_name(viewer: Actor):
    assert listed(viewer, view="all", sort="EMAIL") == listed(viewer, view="all", sort="email")
    assert listed(viewer, view="all") == expected_order(stored_rows(), "name", False)


@pytest.mark.parametrize("text", ["e", "O", "_", "%", "_x", "zo", "ann", "ANN", "corp.test", "@example", "sales@c",
                                  "esk", "zoë", "x\"y", "no such text", "  car  "])
def test_filters_match_a_substring_of_name_or_address_case_insensitively(viewer: Actor, text: str):
    needle = text.strip().lower()
    expected = sorted(m["email"] for m in stored_rows() if needle in m["name"].lower() or needle in m["email"])
    assert listed(viewer, view="all", filter_text=text, sort="email") == expected
    assert mailbox_views.list_mailboxes(viewer, view="all", filter_text=text).total == len(expected)


def test_a_filter_combines_with_the_view(viewer: Actor):
    assert listed(viewer, view="pending", filter_text="corp", sort="email") == [
        "carol@corp.test", "frank@corp.test", "fwd@corp.test", "zoe@corp.test"]
    assert listed(viewer, view="failed", filter_text="ar", sort="email") == ["carol@corp.test"]
    assert listed(viewer, view="failed", sort="email") == ["bob@corp.test", "carol@corp.test", "sales@corp.test",
                                                           "zoe@corp.test"]


@pytest.mark.sqlite_only("the FTS5 trigram table")
def test_three_characters_and_more_use_the_trigram_index(viewer: Actor):
    where, params = mailbox_views.filter_condition("sales")
    assert "mailbox_fts MATCH" in where
    plan = " ".join(str(r) for r in database.execute_sql(
        f"EXPLAIN QUERY PLAN SELECT m.id FROM mailbox m WHERE {where}", params).fetchall())
    assert "mailbox_fts VIRTUAL TABLE" in plan
    assert "LIKE" in mailbox_views.filter_condition("sa")[0]


@pytest.mark.skipif(not ON_POSTGRES, reason="the pg_trgm indexes of PostgreSQL")
def test_the_substring_filter_can_use_the_trigram_indexes(viewer: Actor):
    where, params = mailbox_views.filter_condition("sales")
    assert "ILIKE" in where
    assert listed(viewer, view="all", filter_text="SALES", sort="email") == listed(
        viewer, view="all", filter_text="sales", sort="email") != []
    with database.atomic():
        database.execute_sql("SET LOCAL enable_seqscan = off")  # a handful of rows: force the choice
        plan = " ".join(r[0] for r in database.execute_sql(
            f"EXPLAIN SELECT m.id FROM mailbox m WHERE {where}", params).fetchall())
    assert "mailbox_name_trigram" in plan and "mailbox_email_trigram" in plan, plan


def test_pages_cover_the_view_without_gaps_or_overlaps(viewer: Actor):
    everything = listed(viewer, view="all", sort="created", descending=True)
    pages = []
    for offset in range(0, len(everything) + 3, 3):
        page = mailbox_views.list_mailboxes(viewer, view="all", sort="created", descending=True, limit=3, offset=offset)
        assert page.total == len(everything)
        pages.extend(r["email"] for r in page.rows)
    assert pages == everything
    assert mailbox_views.list_mailboxes(viewer, view="all", limit=0).rows == []


@pytest.mark.parametrize("kwargs, message", [
    ({"view": "deleted"}, "view: 'deleted' is not one of: active, all, mine, forward, pending, failed, disabled"),
    ({"sort": "colour"}, "sort: 'colour' is not a column; choose one of: name, email"),
    ({"limit": -1}, "limit: -1 is out of range"),
    ({"offset": "x"}, "offset: 'x' is not a whole number"),
    ({"filter_text": "x" * 201}, "filter: is 201 characters long; the limit is 200"),
    ({"filter_text": "ann\x1b[2J"}, "filter: contains a control character (U+001B)"),
])
def test_bad_view_arguments_are_refused_naming_them(viewer: Actor, kwargs: dict, message: str):
    with pytest.raises(InvalidInput) as refused:
        mailbox_views.list_mailboxes(viewer, **kwargs)
    assert str(refused.value).startswith(message)


def test_rows_show_secrets_only_as_set_or_not_set(viewer: Actor):
    row = mailboxes.show(viewer, "ann@corp.test").as_dict()
    assert (row["password"], row["oauth2_token"]) == ("not set", "not set")
    assert "password_set" not in row and "token_set" not in row
    assert mailbox_views.rows_by_ids(viewer, [row["id"]]) == {row["id"]: row}


def test_a_changed_address_is_found_by_its_new_text_only(admin: Actor):
    users.add_user(admin, "Quentin", "quentin@corp.test")
    mailboxes.edit(admin, "quentin@corp.test", email="qbert@corp.test", name="Q. Bert")
    assert listed(admin, view="all", filter_text="quentin") == []
    assert listed(admin, view="all", filter_text="qbert") == ["qbert@corp.test"]
    assert listed(admin, view="all", filter_text=". Be") == ["qbert@corp.test"]
