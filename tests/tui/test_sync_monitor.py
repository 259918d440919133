"""The Sync monitor (F10) and the sync section of a mailbox's detail, over the seeded organisation with
sync rows as processing leaves them: placeholders first, then the figures; read again on its timer,
when processing in the console reports progress and when others change the database; keys answer
while a slow read is on its way."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Sparkline

from mbxtui.core.models import utcnow
from mbxtui.core.services import mailboxes
from mbxtui.core.sql_lists import placeholders
from mbxtui.core.sync import store
from mbxtui.core.sync.runner import SyncSummary
from mbxtui.core.sync.messages import ParsedMessage
from mbxtui.core.sync.routing import Party
from mbxtui.tui import workers
from mbxtui.tui.app import MbxApp
from mbxtui.tui.navigation import screens
from mbxtui.tui.screens.help import HelpScreen
from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen
from mbxtui.tui.screens.sync_monitor import SyncMonitorScreen, duration
from tests.backends import execute
from tests.tui.conftest import Console, screen_text, settle

SCREENS = screens()
ENABLED_FOR_INCOMING = 6  # ann, carla, gus, hana, support and the forward mailbox (tests/tui/conftest.py)
DEADLINE_SECONDS = 10.0


async def until(pilot: Pilot, condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE_SECONDS} s: {what}"
        await pilot.pause(0.05)


def add_status(console: Console, email: str, **columns) -> int:
    """A sync status row written on a connection of its own, as a worker elsewhere would."""
    mailbox_id = mailboxes.get(email).id
    values = {"state": "idle", "items_last_cycle": 0, "items_total": 0, "unresolved_total": 0,
              "last_cycle_started": "2024-05-06 09:00:00", **columns}
    execute(console.db_path, f"INSERT INTO sync_status (mailbox_id, {', '.join(values)}) "
                             f"VALUES (?, {placeholders(values)})", [mailbox_id, *values.values()])
    return mailbox_id


def record_messages(mailbox_id: int, count: int) -> datetime:
    """``count`` messages recorded by a cycle that started a moment ago, through the cycle's own write;
    returns the moment they were recorded at."""
    now = utcnow()
    queue_id = mailboxes.get("support@corp.test").queue_id
    items = [store.Fetched(uid, now, ParsedMessage(message_id=f"<{uid}@monitor.test>", subject=f"Message {uid}",
                                                    sender="x@outside.test", to=["support@corp.test"]))
             for uid in range(1, count + 1)]
    store.record_batch(mailbox_id, "INBOX", 1, count, items, Party(None, queue_id, "all"), None, now)
    return now


def minutes_between(earlier: datetime, later: datetime) -> int:
    """How many minute boundaries of the clock lie between two moments."""
    def minute(moment: datetime) -> datetime:
        return moment.replace(second=0, microsecond=0)

    return int((minute(later) - minute(earlier)).total_seconds() // 60)


def test_durations_read_as_a_person_would():
    assert [duration(s) for s in (None, 0, 59, 60, 3599, 3600, 3660, 47 * 3600, 49 * 3600, 72 * 3600)] == [
        "never", "0 s", "59 s", "1 min", "59 min", "1 h", "1 h 1 min", "47 h", "2 d 1 h", "3 d"]


def test_the_monitor_paints_placeholders_then_the_figures(console: Console, monkeypatch: pytest.MonkeyPatch):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        monkeypatch.setattr(workers, "LOAD_DELAY_SECONDS", 3.0)
        await pilot.press("f10")
        assert isinstance(app.screen, SyncMonitorScreen)
        assert "loading…" in screen_text(app)
        await settle(app, pilot)
        shown = screen_text(app)
        assert "loading…" not in shown
        assert f"Never cycled {ENABLED_FOR_INCOMING}" in shown and "Idle 0" in shown, shown
        assert "0 in all" in shown and "by error code: none" in shown and "none processed yet" in shown

    console.run(scenario)


def test_the_monitor_reads_again_on_its_timer_on_progress_and_on_changes(console: Console,
                                                                        monkeypatch: pytest.MonkeyPatch):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        monkeypatch.setattr(SyncMonitorScreen, "REFRESH_SECONDS", 3600.0)  # only the events below read again
        app._changes.stop()  # the database's own change signal would read again too: each event is tried alone
        await pilot.press("f10")
        await settle(app, pilot)
        monitor = app.screen
        assert "Idle 0" in screen_text(app)

        support = add_status(console, "support@corp.test", last_incoming_success=str(utcnow() - timedelta(hours=30)))
        app.mailboxes_processed.publish(SyncSummary())  # processing in this console finished a cycle
        await until(pilot, lambda: "Idle 1" in screen_text(app), "the state counts after progress")
        assert f"Never cycled {ENABLED_FOR_INCOMING - 1}" in screen_text(app)
        assert "Stale 1" in screen_text(app)
        lag_row = [str(value) for value in monitor.query_one("#lags", DataTable).get_row_at(0)]
        assert lag_row[0] == "Head office" and lag_row[2].startswith("30 h"), lag_row

        add_status(console, "ann@corp.test", state="waiting", last_error_code="TIMEOUT")
        app.changed_elsewhere.publish(None)  # another console, a worker or a command changed the database
        await until(pilot, lambda: "Waiting 1" in screen_text(app), "the state counts after a change elsewhere")
        assert "TIMEOUT" in screen_text(app)

        await pilot.press("question_mark")  # covered by another screen: no read until it shows again
        add_status(console, "carla@corp.test", state="processing")
        app.mailboxes_processed.publish(SyncSummary())
        assert not monitor.reading
        await pilot.press("escape")
        await until(pilot, lambda: "Processing 1" in screen_text(app), "the state counts once shown again")

        recorded_on = record_messages(support, 7)
        monkeypatch.setattr(SyncMonitorScreen, "REFRESH_SECONDS", 0.2)
        monitor._schedule(0.2)  # the timer, as after any read
        await until(pilot, lambda: "7 in all" in screen_text(app), "the messages per minute on the timer")
        # In the bucket of the minute they were recorded in: the last one, unless the clock has
        # passed a minute's end since (the text then says so too).
        minutes_ago = minutes_between(recorded_on, datetime.fromisoformat(monitor.snapshot.taken_on))
        assert minutes_ago in (0, 1), (recorded_on, monitor.snapshot.taken_on)
        per_minute = monitor.query_one("#per-minute", Sparkline).data
        assert per_minute == monitor.snapshot.per_minute and per_minute[-1 - minutes_ago] == 7
        assert f"{7 if minutes_ago == 0 else 0} this minute" in screen_text(app)

    console.run(scenario)


def test_keys_answer_while_the_monitor_reads_slowly(console: Console, monkeypatch: pytest.MonkeyPatch):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        monkeypatch.setattr(workers, "LOAD_DELAY_SECONDS", 8.0)
        started = time.monotonic()
        await pilot.press("f10")
        monitor = app.screen
        assert isinstance(monitor, SyncMonitorScreen) and "loading…" in screen_text(app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen) and "Keys of Sync monitor" in screen_text(app)
        await pilot.press("escape")
        assert app.screen is monitor
        await pilot.press("f4")
        assert isinstance(app.screen, SCREENS["alerts"])
        await pilot.press("f10")
        assert app.screen is monitor and "loading…" in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, SyncMonitorScreen)
        assert time.monotonic() - started < 8.0, "the keys above waited for a read"
        monkeypatch.setattr(workers, "LOAD_DELAY_SECONDS", 0.0)
        await settle(app, pilot)

    console.run(scenario)


def test_the_mailbox_detail_shows_its_sync_status(console: Console):
    support = add_status(console, "support@corp.test", state="waiting", last_cycle_started="2024-05-06 10:00:00",
                         last_cycle_finished="2024-05-06 10:00:04", last_incoming_success="2024-05-06 09:30:00",
                         items_last_cycle=3, items_total=1200, next_due="2024-05-06 10:05:00",
                         last_error_code="TIMEOUT", last_error_text="The server did not answer within 10 seconds.")
    carla = mailboxes.get("carla@corp.test").id

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(MailboxDetailScreen(support))
        await settle(app, pilot)
        section = str(app.screen.query_one("#sync").render())
        for expected in ("Processing state", "waiting", "2024-05-06 10:00:00 → 2024-05-06 10:00:04",
                         "2024-05-06 09:30:00", "3 / 1,200", "2024-05-06 10:05:00",
                         "TIMEOUT: The server did not answer within 10 seconds.", "Stale", "yes (no successful sync for longer"):
            assert expected in section, (expected, section)
        await pilot.press("escape")
        await app.push_screen(MailboxDetailScreen(carla))
        await settle(app, pilot)
        section = str(app.screen.query_one("#sync").render())
        assert "never cycled" in section and "Stale" in section, section

    console.run(scenario)


def test_the_grid_shows_sync_columns_where_there_is_room_and_never_sorts_by_them():
    from mbxtui.core.services.mailbox_pages import GridRow
    from mbxtui.tui.widgets.grid_drawing import COLUMNS, layout, row_view

    base = (1, "Ann", "ann@corp.test", "user", "imap", "server_side_sync", "none", "none", "approved", "success",
            "not_run", "not_run", "success", 1, 0, 0, 0, "2024-05-06 09:00:00", 1)
    waiting = row_view(GridRow(*base, "waiting", "2024-05-06 10:11:12"))
    assert waiting.cells["sync_state"] == ("waiting", "warning") and waiting.cells["last_sync"][0] == "2024-05-06 10:11"
    never = row_view(GridRow(*base))
    assert never.cells["sync_state"][0] == "—" and never.cells["last_sync"][0] == "—"
    assert row_view(GridRow(*base, "idle")).cells["last_sync"] == ("never", "muted")
    exchanged = GridRow(*base, "idle", None, "exchange_online")  # no cycle reads it, whatever its status row
    assert row_view(exchanged).cells["sync_state"] == ("not read", "warning")
    assert row_view(exchanged._replace(incoming_method="none", sync_state=None)).cells["sync_state"][0] == "—"
    wide = [column.key for column, _ in layout(list(COLUMNS), 200, "name")]
    assert wide[-2:] == ["sync_state", "last_sync"]
    for width in (80, 120):  # what the console shows at its usual sizes stays as it was
        assert "sync_state" not in [column.key for column, _ in layout(list(COLUMNS), width, "name")]
    assert [column.key for column in COLUMNS if not column.sortable] == ["sync_state", "last_sync"]


def test_the_sort_key_passes_over_the_sync_columns(console: Console):
    from mbxtui.tui.widgets.grid import MailboxGrid

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await settle(app, pilot)
        grid = app.screen.query_one(MailboxGrid)
        grid.set_query(sort="last_tested")
        await settle(app, pilot)
        grid.action_next_sort()
        assert grid.grid_query.sort == "name"

    console.run(scenario)
