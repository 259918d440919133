"""The Activities screen, an activity's detail and the compose form, driven with Pilot over a real
database whose activities are written by processing's own transaction (``store.record_batch``)."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
from textual.pilot import Pilot

from mbxtui.core.models import database
from mbxtui.core.services import activities as activity_service
from mbxtui.core.services import mailboxes, outgoing
from mbxtui.core.sync import store
from mbxtui.core.sync.messages import ParsedMessage
from mbxtui.core.sync.routing import Party
from mbxtui.tui import workers
from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens import activities as activities_screen
from mbxtui.tui.navigation import screens
from mbxtui.tui.screens.activities import FILTER_PAUSE_SECONDS, ActivityDetailScreen
from mbxtui.tui.screens.compose import ComposeForm
from mbxtui.tui.screens.help import HelpScreen
from mbxtui.tui.widgets.confirm import ConfirmScreen
from tests.backends import ON_POSTGRES
from tests.tui.conftest import Console, notifications, offered, screen_text, settle
from tests.tui.test_slow_loads import ANSWER_SECONDS, answers

SCREENS = screens()
WHEN = datetime(2024, 5, 6, 10, 0, 0)
HOSTILE_PREVIEW = "Hi \x1b[2J\x1b]0;pwned\x07 there [bold]not bold[/bold] \u202eevil"


def received(uid: int, subject: str, **fields) -> store.Fetched:
    fields.setdefault("to", ["support@corp.test"])
    fields.setdefault("sender", "zoe@customer.test")
    return store.Fetched(uid, WHEN, ParsedMessage(message_id=f"<{uid}@customer.test>", subject=subject, **fields))


def record(*items: store.Fetched) -> None:
    """Processing's transaction, as a cycle of the support queue's mailbox writes it."""
    support = mailboxes.get("support@corp.test")
    database.execute_sql("INSERT INTO sync_status (mailbox_id, state, items_last_cycle, items_total, "
                         "unresolved_total) VALUES (?, 'idle', 0, 0, 0) ON CONFLICT DO NOTHING", [support.id])
    store.record_batch(support.id, "INBOX", 1, max(item.uid for item in items), list(items),
                       Party(None, support.queue_id, "all"), None, WHEN)


async def filtered(app: MbxApp, pilot: Pilot, *keys: str) -> None:
    """Type into the filter, then wait out the pause the screen waits for before it reads."""
    await pilot.press(*keys)
    await pilot.pause(FILTER_PAUSE_SECONDS * 2)
    await settle(app, pilot)


def activity_id(subject: str) -> int:
    return database.execute_sql("SELECT id FROM email_activity WHERE subject = ?", [subject]).fetchone()[0]


def record_mail() -> None:
    """Three messages to the support queue, the newest a reply whose preview holds escape sequences."""
    record(received(1, "Invoice March", attachments=[("invoice.pdf", 48_213)], size=52_000),
           received(2, "Where is my order?", sender="max@shop.test", cc=["bob@corp.test"]),
           received(3, "Re: Invoice March", in_reply_to=["<1@customer.test>"], preview=HOSTILE_PREVIEW))


@pytest.fixture
def mail(console: Console) -> Console:
    record_mail()
    return console


def test_the_screen_shows_loading_then_rows_newest_first_and_the_filter_narrows(mail: Console,
                                                                               monkeypatch: pytest.MonkeyPatch):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        monkeypatch.setattr(workers, "LOAD_DELAY_SECONDS", 4.0)
        await answers(pilot, "f9", lambda: isinstance(app.screen, SCREENS["activities"])
                      and "loading…" in screen_text(app))  # painted: one pause was too few at load 7
        assert "Invoice March" not in screen_text(app)
        await settle(app, pilot)
        monkeypatch.setattr(workers, "LOAD_DELAY_SECONDS", 0.0)
        shown = screen_text(app)
        assert "loading…" not in shown and "1–3 of 3" in shown, shown
        subjects = [line.strip().split("  ")[-1].strip() for line in shown.splitlines() if "  in   received" in line]
        assert subjects == ["Re: Invoice March", "Where is my order?", "Invoice March"], shown  # newest first
        assert [row["subject"] for row in app.screen.rows.values()] == [
            "Re: Invoice March", "Where is my order?", "Invoice March"]
        await filtered(app, pilot, "slash", *"invoice")
        assert [row["subject"] for row in app.screen.rows.values()] == ["Re: Invoice March", "Invoice March"]
        assert "of 2 matching 'invoice'" in screen_text(app)
        await filtered(app, pilot, "ctrl+u", *"max@shop")  # an address
        assert [row["subject"] for row in app.screen.rows.values()] == ["Where is my order?"]
        await filtered(app, pilot, "ctrl+u", "enter", "3")  # the Outgoing view: none yet
        assert not app.screen.rows and "nothing to show" in screen_text(app)

    mail.run(scenario)


def test_the_detail_shows_headers_parties_attachments_and_a_hostile_preview_as_text(mail: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("f9")
        await settle(app, pilot)
        await pilot.press("enter")  # the newest: the reply with the hostile preview
        await settle(app, pilot)
        assert isinstance(app.screen, ActivityDetailScreen)
        shown = screen_text(app)
        assert "<3@customer.test>" in shown and "<1@customer.test>" in shown  # Message-ID, In-Reply-To
        assert "Support <support@corp.test> (queue)" in shown
        assert r"Hi \x1b[2J\x1b]0;pwned\x07 there [bold]not bold[/bold] \u202eevil" in shown, shown
        assert not app.screen.check_action("resend", ())  # incoming: nothing to resend
        await pilot.press("escape")
        await settle(app, pilot)
        await pilot.press("down", "down", "enter")
        await settle(app, pilot)
        shown = screen_text(app)
        assert "invoice.pdf (48,213 bytes)" in shown and "52,000 bytes" in shown, shown

    mail.run(scenario)


KEYS_WHILE_LOADING = 9
LOAD_SECONDS = KEYS_WHILE_LOADING * ANSWER_SECONDS + 1.5  # each key may take ANSWER_SECONDS, as in test_slow_loads


def test_keys_answer_while_the_activities_load_slowly(mail: Console, monkeypatch: pytest.MonkeyPatch):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        # Longer than the nine keys below may take together (9.1 s at load 7, when the load took 8 s).
        monkeypatch.setattr(workers, "LOAD_DELAY_SECONDS", LOAD_SECONDS)
        started = time.monotonic()
        await answers(pilot, "f9", lambda: isinstance(app.screen, SCREENS["activities"]))
        activities_screen = app.screen
        assert "loading…" in screen_text(app)
        await answers(pilot, "2", lambda: "[reverse]2 Incoming" in activities_screen.views_line())
        await answers(pilot, "slash", lambda: activities_screen.query_one("#filter").has_focus)
        await answers(pilot, "z", lambda: activities_screen.query_one("#filter").value == "z")
        await answers(pilot, "escape", lambda: activities_screen.table.has_focus)
        await answers(pilot, "question_mark", lambda: isinstance(app.screen, HelpScreen))
        assert "Keys of Activities" in screen_text(app)
        await answers(pilot, "escape", lambda: app.screen is activities_screen)
        await answers(pilot, "f4", lambda: isinstance(app.screen, SCREENS["alerts"]))
        await answers(pilot, "f9", lambda: app.screen is activities_screen)
        assert time.monotonic() - started < LOAD_SECONDS, "the keys above waited for a load"
        assert "loading…" in screen_text(app)
        await settle(app, pilot)
        assert [row["subject"] for row in activities_screen.rows.values()] == ["Re: Invoice March", "Invoice March"]

    mail.run(scenario)


def failed_email(console: Console, state: str = "failed") -> int:
    """An email queued through the outgoing service, then left ``state`` by the sender with its error."""
    queued = outgoing.queue_email(console.admin, "support@corp.test", ["max@shop.test"], [], "Your order",
                                  "It left today.")
    database.execute_sql("UPDATE email_activity SET state = ?, attempts = 3, last_error_code = 'SMTP_REJECTED', "
                         "last_error_text = 'the server refused the recipient' WHERE id = ?", [state, queued])
    return queued


def test_resend_asks_then_puts_a_failed_email_back_to_pending(mail: Console):
    queued = failed_email(mail)

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("f9", "4")  # the Failed view
        await settle(app, pilot)
        assert [row["id"] for row in app.screen.rows.values()] == [queued]
        await pilot.press("enter")
        await settle(app, pilot)
        shown = screen_text(app)
        assert "SMTP_REJECTED the server refused the recipient" in shown and "failed" in shown, shown
        await pilot.press("R")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "max@shop.test again?" in screen_text(app)
        await pilot.press("n")  # not yet
        await settle(app, pilot)
        assert state_of(queued) == "failed"
        await pilot.press("R")
        await pilot.pause()
        await pilot.press("y")
        await settle(app, pilot)
        assert state_of(queued) == "pending"
        assert isinstance(app.screen, ActivityDetailScreen)
        assert "Attempts        0" in screen_text(app) and not app.screen.check_action("resend", ())
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, SCREENS["activities"]) and not app.screen.rows  # no longer failed

    mail.run(scenario)


def test_a_viewer_may_not_resend(mail: Console):
    failed_email(mail, "uncertain")

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("f9", "5", "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, ActivityDetailScreen) and not offered(app.screen, "R")
        await pilot.press("R")
        await settle(app, pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("needs the role" in text for text in notifications(app)), notifications(app)

    mail.run(scenario, role="viewer")


def test_the_compose_form_shows_errors_in_place_then_queues_a_pending_email(mail: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("f9")
        await settle(app, pilot)
        await pilot.press("c")
        await settle(app, pilot)
        assert isinstance(app.screen, ComposeForm)
        await pilot.press("ctrl+s")  # nothing typed
        await settle(app, pilot)
        error = app.screen.query_one("#error-sender")
        assert not error.has_class("hidden") and "is required" in str(error.render()), error.render()
        assert app.screen.query_one("#sender").has_focus
        await pilot.press(*"nobody@corp.test", "tab", *"max@shop.test", "ctrl+s")
        await settle(app, pilot)
        error = app.screen.query_one("#error-subject")
        assert not error.has_class("hidden") and "is required" in str(error.render())
        assert app.screen.query_one("#error-sender").has_class("hidden")  # the earlier error cleared
        app.screen.query_one("#subject").value = "Your order"
        app.screen.query_one("#body").text = "It left today."
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert isinstance(app.screen, ComposeForm)
        problem = str(app.screen.query_one("#save-problem").render())
        assert problem.startswith("Not saved: no mailbox has the address nobody@corp.test"), problem
        app.screen.query_one("#sender").value = "support@corp.test"
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert isinstance(app.screen, SCREENS["activities"])
        newest = next(iter(app.screen.rows.values()))
        assert (newest["subject"], newest["state"], newest["direction"]) == ("Your order", "pending", "outgoing")
        assert newest["to"] == ["max@shop.test"] and newest["mailbox"] == "support@corp.test"

    mail.run(scenario)


def test_a_reply_is_filled_from_the_incoming_activity_and_threads_it(mail: Console):
    answered = activity_id("Where is my order?")

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(ActivityDetailScreen(answered))
        await settle(app, pilot)
        await pilot.press("r")
        await settle(app, pilot)
        form = app.screen
        assert isinstance(form, ComposeForm)
        assert (form.query_one("#sender").value, form.query_one("#to").value, form.query_one("#subject").value) == (
            "support@corp.test", "max@shop.test", "Re: Where is my order?")
        assert form.query_one("#body").has_focus
        await pilot.press(*"On its way.")
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert isinstance(app.screen, ActivityDetailScreen)
        row = database.execute_sql("SELECT reply_to_activity_id, in_reply_to, state, body FROM email_activity "
                                   "WHERE direction = 'outgoing'").fetchone()
        assert tuple(row) == (answered, "<2@customer.test>", "pending", "On its way.")

    mail.run(scenario)


def state_of(activity: int) -> str:
    return database.execute_sql("SELECT state FROM email_activity WHERE id = ?", [activity]).fetchone()[0]


def test_new_activities_appear_at_the_top_while_the_screen_is_shown(mail: Console, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(activities_screen, "REFRESH_SECONDS", 0.5)

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("f9")
        await settle(app, pilot)
        assert len(app.screen.rows) == 3
        record(received(4, "Just arrived"))  # as a worker's cycle would, meanwhile
        for _ in range(50):
            await pilot.pause(0.1)
            if len(app.screen.rows) == 4:
                break
        assert next(iter(app.screen.rows.values()))["subject"] == "Just arrived"
        assert "1–4 of 4" in screen_text(app)

    mail.run(scenario)


def test_pages_turn_by_id_and_back(mail: Console, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(activities_screen.ActivitiesScreen, "PAGE_SIZE", 2)

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("f9")
        await settle(app, pilot)
        screen = app.screen
        assert [row["subject"] for row in screen.rows.values()] == ["Re: Invoice March", "Where is my order?"]
        assert "1–2 of 3" in screen_text(app)
        await pilot.press("n")
        await settle(app, pilot)
        assert [row["subject"] for row in screen.rows.values()] == ["Invoice March"]
        assert "3–3 of 3" in screen_text(app)
        await pilot.press("n")  # no page after the last
        await settle(app, pilot)
        assert [row["subject"] for row in screen.rows.values()] == ["Invoice March"]
        await pilot.press("p")
        await settle(app, pilot)
        assert [row["subject"] for row in screen.rows.values()] == ["Re: Invoice March", "Where is my order?"]

    mail.run(scenario)


def test_a_mailboxs_detail_opens_the_compose_form_from_that_mailbox(mail: Console):
    from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(MailboxDetailScreen(mailboxes.get("support@corp.test").id))
        await settle(app, pilot)
        await pilot.press("n")
        await settle(app, pilot)
        form = app.screen
        assert isinstance(form, ComposeForm)
        assert form.query_one("#sender").value == "support@corp.test"
        form.query_one("#to").value = "max@shop.test"
        form.query_one("#subject").value = "From the mailbox's screen"
        form.query_one("#body").text = "Hello."
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert isinstance(app.screen, MailboxDetailScreen)
        row = database.execute_sql("SELECT state, subject FROM email_activity e JOIN mailbox m ON m.id = e.mailbox_id "
                                   "WHERE e.direction = 'outgoing' AND m.email = 'support@corp.test'").fetchone()
        assert tuple(row) == ("pending", "From the mailbox's screen")

    mail.run(scenario)


def test_a_rare_text_shows_searching_then_its_rows(console: Console, monkeypatch: pytest.MonkeyPatch):
    """Text in one old activity: the walk's time runs out on the newest ids, the screen says it is
    searching (and keeps answering keys), then shows the match once the rest of the page is read."""
    record(*[received(uid, "Invoice, the oldest" if uid == 1 else f"Message {uid}") for uid in range(1, 13)])
    monkeypatch.setattr(activity_service, "FIRST_RANGE", 2)
    monkeypatch.setattr(activity_service, "WALK_SECONDS", 0.0)
    rest_may_be_read = threading.Event()
    read_page = activity_service.page_activities

    def held_back(*args, **kwargs):  # the rest of the page waits until the test has looked
        rest_may_be_read.wait(10)
        return read_page(*args, **kwargs)

    monkeypatch.setattr(activity_service, "page_activities", held_back)

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("f9")
        await settle(app, pilot)
        screen = app.screen
        assert len(screen.rows) == 12
        await pilot.press("slash", *"invoice")
        for _ in range(100):
            await pilot.pause(0.02)
            if screen.searching and "for 'invoice'" in screen_text(app):  # under load, 'i' alone may be searched first
                break
        shown = screen_text(app)
        assert "searching… for 'invoice'" in shown and "Searching older activities…" in shown, shown
        assert not screen.rows and "Message 12" not in shown
        await answers(pilot, "escape", lambda: screen.table.has_focus)
        await answers(pilot, "question_mark", lambda: isinstance(app.screen, HelpScreen))
        await answers(pilot, "escape", lambda: app.screen is screen)
        rest_may_be_read.set()
        await settle(app, pilot)
        assert [row["subject"] for row in screen.rows.values()] == ["Invoice, the oldest"]
        shown = screen_text(app)
        assert "searching…" not in shown and "1–1 of 1 matching 'invoice'" in shown, shown

    console.run(scenario)


def test_a_view_chosen_for_a_screen_already_closed_does_nothing(console):
    """The command palette runs its choice after it has closed: on a loaded machine the screen it
    was opened over may be gone by then (the console fuzz test crashed so on PostgreSQL)."""

    async def scenario(app, pilot: Pilot) -> None:
        await pilot.press("f9")
        await settle(app, pilot)
        screen = app.screen
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is not screen
        screen.action_view(1)
        await settle(app, pilot)
        assert app._exception is None, app._exception

    console.run(scenario)


@pytest.mark.skipif(ON_POSTGRES, reason="drawing only: the backend does not matter")
def test_a_key_down_the_table_repaints_the_detail_line_without_a_layout_of_the_screen(mail: Console):
    """A description of the same height as the one before repaints the detail line alone; one of
    another height lays the screen out again (bench/activities.py: a layout at every key down the
    table took most of the key's frame)."""
    record(received(4, "Refund please"))  # zoe's, as the one below it: descriptions of one height

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("f9")
        await settle(app, pilot)
        screen = app.screen
        layouts: list[bool] = []
        lay_out = screen._refresh_layout

        def spied_layout(*args, **kwargs):
            layouts.append(True)
            return lay_out(*args, **kwargs)

        screen._refresh_layout = spied_layout
        detail = screen.query_one("#detail")
        await pilot.press("down")
        await pilot.pause()
        assert screen.table.cursor_row == 1
        assert "Re: Invoice March" in detail.render().plain
        assert not layouts
        height = detail.content_size.height
        screen.describe = lambda row: "\n".join(["a description"] * (height + 1))  # one line more
        await pilot.press("down")
        await pilot.pause()
        assert layouts and detail.content_size.height == height + 1

    mail.run(scenario)


@pytest.mark.skipif(ON_POSTGRES, reason="drawing only: the backend does not matter")
def test_a_key_scrolling_the_table_draws_only_the_rows_whose_look_changed(console: Console):
    """Scrolling down a line draws the row that comes into view and the rows the cursor left and
    reached; the others are shown as drawn before (DataTable drew every row in view again at each key:
    10-20 ms a key at 120x40, bench/activities.py)."""
    record(*[received(uid, f"Note {uid:02}") for uid in range(1, 41)])

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("f9")
        await settle(app, pilot)
        table = app.screen.table
        for _ in range(table.scrollable_content_region.height):  # to the last row in view, then one more
            await pilot.press("down")
        await pilot.pause()
        assert table.scroll_y > 0
        drawn: list[int] = []
        draw_cell = table._render_cell

        def spied_cell(row_index, column_index, *args, **kwargs):
            drawn.append(row_index)
            return draw_cell(row_index, column_index, *args, **kwargs)

        table._render_cell = spied_cell
        row, scrolled = table.cursor_row, table.scroll_y
        await pilot.press("down")
        await pilot.pause()
        assert (table.cursor_row, table.scroll_y) == (row + 1, scrolled + 1)
        # The row the cursor left (unless drawn without it before), the one it reached, the one coming into view.
        assert set(drawn) <= {row, row + 1, row + 2} and row + 1 in drawn, drawn

    console.run(scenario)
