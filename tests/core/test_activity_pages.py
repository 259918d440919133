"""The console's reads of email activities: pages by id (no OFFSET), the text filter over subject,
addresses and the mailbox, a bounded count, and the detail's parties by name, on the real database
of the suite's backend."""

from __future__ import annotations

import pytest

from mbxtui.core.errors import InvalidInput, NotFound
from mbxtui.core.services import activities
from mbxtui.core.sync import store
from mbxtui.core.sync.messages import ParsedMessage
from tests.core.test_activities import WHEN, record, received, support  # noqa: F401 (a fixture)


def subjects(rows: list[dict]) -> list[str]:
    return [row["subject"] for row in rows]


def test_pages_follow_each_other_by_id_newest_first(admin, support):  # noqa: F811
    record(support, 5, [received(uid, f"Message {uid}") for uid in range(1, 6)])
    first = activities.page_activities(admin, limit=2)
    assert subjects(first) == ["Message 5", "Message 4"]
    second = activities.page_activities(admin, before_id=first[-1]["id"], limit=2)
    assert subjects(second) == ["Message 3", "Message 2"]
    last = activities.page_activities(admin, before_id=second[-1]["id"], limit=2)
    assert subjects(last) == ["Message 1"]
    assert first[0]["mailbox"] == "support@corp.test" and first[0]["when"] == "2026-12-06 08:00:00"
    assert first[0]["to"] == ["support@corp.test"] and first[0]["direction"] == "incoming"
    assert activities.count_activities(admin) == (5, False)


def test_the_filter_finds_subject_address_and_mailbox_in_any_case(admin, support):  # noqa: F811
    record(support, 3, [received(1, "Invoice March"), received(2, "Hello", cc=["Zed@Else.test"]),
                        received(3, "Re: INVOICE")])
    assert subjects(activities.page_activities(admin, text="invoice")) == ["Re: INVOICE", "Invoice March"]
    assert subjects(activities.page_activities(admin, text="zed@else")) == ["Hello"]
    assert subjects(activities.page_activities(admin, text="ANN@outside")) == ["Re: INVOICE", "Hello", "Invoice March"]
    assert activities.count_activities(admin, text="invoice") == (2, False)
    assert activities.page_activities(admin, text="nothing like it") == []
    assert activities.count_activities(admin, state="received", text="hello") == (1, False)
    assert activities.count_activities(admin, direction="outgoing") == (0, False)


def test_the_filter_by_a_mailbox_address_finds_what_came_through_it(admin, support):  # noqa: F811
    elsewhere = ParsedMessage(message_id="<1@corp.test>", subject="Through support", sender="ann@outside.test",
                              to=["someone@else.test"])
    record(support, 1, [store.Fetched(1, WHEN, elsewhere)])
    assert subjects(activities.page_activities(admin, text=" Support@Corp.test ")) == ["Through support"]


def test_the_count_stops_at_its_bound(admin, support, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    record(support, 4, [received(uid, f"Message {uid}") for uid in range(1, 5)])
    monkeypatch.setattr(activities, "COUNT_AT_MOST", 3)
    assert activities.count_activities(admin) == (3, True)


def test_bad_filters_and_ids_are_refused(admin, support):  # noqa: F811
    with pytest.raises(InvalidInput, match="state"):
        activities.page_activities(admin, state="lost")
    with pytest.raises(InvalidInput, match="filter"):
        activities.page_activities(admin, text="a\x1b[2Jb")
    with pytest.raises(NotFound, match="no email activity has the id 99"):
        activities.activity_detail(admin, 99)


def test_the_detail_names_the_parties_and_the_mailbox(admin, support):  # noqa: F811
    record(support, 1, [received(1, "Hello", attachments=[("plan.pdf", 2048)])])
    activity_id = activities.page_activities(admin)[0]["id"]
    detail = activities.activity_detail(admin, activity_id)
    assert detail["party_names"] == ["Support <support@corp.test> (queue)"]
    assert detail["mailbox"] == "support@corp.test" and detail["attempts"] == 0
    assert detail["attachments"] == [{"name": "plan.pdf", "size": 2048}]
    assert detail["last_error_code"] is None and detail["reply_to_activity_id"] is None


def test_a_views_state_and_direction_read_together(admin, support):  # noqa: F811
    record(support, 2, [received(1, "First"), received(2, "Second")])
    assert subjects(activities.page_activities(admin, direction="incoming", state="received")) == ["Second", "First"]
    assert activities.page_activities(admin, direction="outgoing", state="received") == []
    assert activities.count_activities(admin, direction="incoming", state="received") == (2, False)


def test_a_text_filter_walks_down_the_ids_and_its_head_says_where_it_stopped(admin, support,  # noqa: F811
                                                                            monkeypatch: pytest.MonkeyPatch):
    record(support, 12, [received(uid, "Invoice, the oldest" if uid == 1 else f"Message {uid}")
                         for uid in range(1, 13)])
    monkeypatch.setattr(activities, "FIRST_RANGE", 2)  # ranges of 2, 4, 8 ids
    head = activities.head_activities(admin, text="invoice", seconds=0)  # out of time after one range
    assert head.rows == [] and head.searched_below is not None
    rest = activities.page_activities(admin, text="invoice", before_id=head.searched_below)
    assert subjects(rest) == ["Invoice, the oldest"]
    whole = activities.head_activities(admin, text="invoice", seconds=60)
    assert subjects(whole.rows) == ["Invoice, the oldest"] and whole.searched_below is None
    common = activities.head_activities(admin, text="message", limit=5, seconds=0)
    assert subjects(common.rows) == ["Message 12", "Message 11"]  # the first range
    assert common.searched_below is not None
    assert subjects(activities.page_activities(admin, text="message", limit=3, before_id=common.searched_below)) == [
        "Message 10", "Message 9", "Message 8"]
    assert subjects(activities.page_activities(admin, text="message", limit=5)) == [
        f"Message {uid}" for uid in range(12, 7, -1)]  # a whole page, across three ranges
    assert subjects(activities.page_activities(admin, text="message", stop=lambda: True)) == [
        "Message 12", "Message 11"]  # told to stop after the first range


def test_a_text_filters_count_walks_too_and_stops_at_its_bound(admin, support,  # noqa: F811
                                                             monkeypatch: pytest.MonkeyPatch):
    record(support, 12, [received(uid, f"Message {uid}") for uid in range(1, 13)])
    monkeypatch.setattr(activities, "FIRST_RANGE", 2)
    assert activities.count_activities(admin, text="message") == (12, False)
    assert activities.count_activities(admin, text="message", stop=lambda: True) == (2, False)
    monkeypatch.setattr(activities, "COUNT_AT_MOST", 3)
    assert activities.count_activities(admin, text="message") == (3, True)


def test_the_listings_total_stops_at_the_bound_and_says_when_it_is_a_lower_bound(admin, support,  # noqa: F811
                                                                                 monkeypatch: pytest.MonkeyPatch):
    record(support, 5, [received(uid, f"Invoice {uid}" if uid < 5 else "Hello") for uid in range(1, 6)])
    monkeypatch.setattr(activities, "COUNT_AT_MOST", 3)
    found = activities.list_activities(admin, text="invoice", limit=2)
    assert (found["total"], found["total_exact"]) == (3, False), "four match: the count stops at the bound"
    assert subjects(found["rows"]) == ["Invoice 4", "Invoice 3"]
    assert activities.list_activities(admin)["total"] == 3 and not activities.list_activities(admin)["total_exact"]
    exact = activities.list_activities(admin, text="hello")
    assert (exact["total"], exact["total_exact"]) == (1, True)
    assert activities.list_activities(admin, text="invoice 1", limit=0) == {"total": 1, "total_exact": True,
                                                                            "rows": []}
