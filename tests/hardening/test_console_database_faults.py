"""The console while its PostgreSQL server restarts, and through a slow link to it (issue 14).

Restart: while the server is down, reloading the grid, opening a mailbox and saving a setting each
end in one sentence naming the server (in place or as a notification), never a traceback or a
hang; keys, esc and the screens keep working; once the server is back the next action works without
a restart of the console, its Test & Enable runner, change watcher and processing go on by
themselves, and a save refused while it was down is not applied behind the operator's back.

Latency: every database reply 50 ms late (a userspace proxy, tests/lab/proxies.py): the console
starts, pages, filters and opens a mailbox, and answers keys while a load is in flight.

A cluster of this module's own (tests/lab/postgres.py) is restarted, so that no other test's
server goes away. PostgreSQL only: a SQLite file has no server to restart or reach.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Iterator

import psycopg2
import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from mbxtui.core.models import database
from mbxtui.core.services import bulk, enablement, imports, settings
from mbxtui.core.services.selection import Selection
from mbxtui.tui.app import RESTART, MbxApp
from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen
from mbxtui.tui.screens.mailboxes import MailboxesScreen
from mbxtui.tui.screens.settings import SettingsScreen
from tests.backends import ON_POSTGRES
from tests.lab.errors import LabError
from tests.lab.loop import LabLoop
from tests.lab.netns import Relay
from tests.hardening.test_postgres_faults import count
from tests.lab.postgres import PostgresServer, start_postgres
from tests.tui.conftest import (  # noqa: F401  (fixtures used by name)
    Console, console_env, notifications, pg_console, screen_text, unlocked_store,
)
from tests.tui.test_flows import emails_in, grid_of

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="a SQLite file has no server to restart or to reach")

GONE_WORDS = "cannot be reached or closed the connection"
BAD_WORDS = ("Traceback", "psycopg2", "OperationalError", "InterfaceError")
ACTION_BOUND = 15.0  # seconds an action may take to say something while the server is down
RUNNERS = ("test-runner", "processing")


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    try:
        started = start_postgres()
    except LabError as exc:
        pytest.skip(f"no PostgreSQL of this module's own: {exc}")
    try:
        yield started
    finally:
        started.stop()


def execute(url: str, sql: str) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(sql)
    conn.close()


def shown(url: str) -> str:
    return url.split("@", 1)[1]


async def within(app: MbxApp, pilot: Pilot, what: str, condition, bound: float = ACTION_BOUND) -> None:
    """Let the console run until ``condition()`` holds; fails (never hangs) past ``bound`` seconds."""
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {bound:.0f} s; notifications {notifications(app)}"
        await pilot.pause(0.1)


async def settle(app: MbxApp, pilot: Pilot, bound: float = ACTION_BOUND) -> None:
    """Let the loads and saves under way finish (the runners, which run as long as the console, are
    not waited for); fails past ``bound`` seconds instead of hanging."""
    deadline = time.monotonic() + bound
    while True:
        await pilot.pause()
        busy = [w for w in app.workers if w.group not in RUNNERS and not w.is_finished]
        if not busy:
            await pilot.pause()
            if not [w for w in app.workers if w.group not in RUNNERS and not w.is_finished]:
                return
        assert time.monotonic() < deadline, f"still busy after {bound:.0f} s: {busy}"
        await pilot.pause(0.05)


def said_gone(app: MbxApp, url: str) -> list[str]:
    return [text for text in notifications(app) if GONE_WORDS in text and shown(url) in text]


# --- the server restarted under an open console ---------------------------------------------------

def run_console(console: Console, scenario, **options) -> MbxApp:
    app = MbxApp(console.admin, db_path=console.db_path, data_dir=console.data_dir, store=console.store,
                 threads=4, **options)

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            await scenario(app, pilot)

    asyncio.run(main())
    return app


def test_console_says_the_server_is_down_in_one_sentence_stays_usable_and_goes_on_once_it_is_back(
        pg_console: Console, server: PostgresServer):
    url = str(pg_console.db_path)
    admin = pg_console.admin
    # Test & Enable reaches a closed port at once: a job done after the restart proves the runner goes on.
    execute(url, "UPDATE profile SET incoming_host = '127.0.0.1', incoming_port = 9, "
                 "outgoing_host = '127.0.0.1', outgoing_port = 9")
    stale_before = settings.show(admin).stale_hours

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await settle(app, pilot)
        told: list[str] = []  # every notification, cleared or not
        notify = app.notify
        app.notify = lambda message, **options: (told.append(message), notify(message, **options))[1]
        assert "ann@corp.test" in emails_in(grid_of(app))
        runners = {w.group: w for w in app.workers if w.group in ("test-runner", "processing")}
        assert set(runners) == {"test-runner", "processing"}, runners
        await pilot.press("f6")
        await settle(app, pilot)
        assert isinstance(app.screen, SettingsScreen)

        command = server.shut_down()  # fast shutdown; the server stays away while the operator works on
        try:
            # Save a setting.
            app._notifications.clear()
            app.screen.query_one("#stale_hours", Input).value = str(stale_before + 7)
            await pilot.press("ctrl+s")
            await within(app, pilot, "saving said the server is away",
                         lambda: GONE_WORDS in screen_text(app) or said_gone(app, url))
            await pilot.press("f2")
            if not isinstance(app.screen, MailboxesScreen):  # the form asks before dropping the edit
                await pilot.press("y")
            await within(app, pilot, "back on the grid", lambda: isinstance(app.screen, MailboxesScreen))

            # Reload the grid.
            app._notifications.clear()
            await pilot.press("ctrl+r")
            await within(app, pilot, "reloading the grid said the server is away", lambda: said_gone(app, url))
            await settle(app, pilot)
            assert isinstance(app.screen, MailboxesScreen)

            # Open a mailbox, then leave it with esc.
            app._notifications.clear()
            await pilot.press("enter")
            await within(app, pilot, "opening a mailbox said the server is away",
                         lambda: isinstance(app.screen, MailboxDetailScreen)
                         and (GONE_WORDS in screen_text(app) or said_gone(app, url)))
            await pilot.press("escape")
            await within(app, pilot, "esc leaves the mailbox", lambda: isinstance(app.screen, MailboxesScreen))

            for key, screen in (("f4", "AlertsScreen"), ("f3", "ProfilesScreen"), ("f2", "MailboxesScreen")):
                await pilot.press(key)  # the screens still switch, each saying what it cannot read
                await within(app, pilot, f"{key} opens {screen}", lambda: type(app.screen).__name__ == screen)
            await settle(app, pilot)
            everything = notifications(app) + [screen_text(app)]
            assert not any(word in text for text in everything for word in BAD_WORDS), everything
        finally:
            server.start_again(command)
        database.close()  # this test's own session ended with the server

        # Back: the next action works without restarting the console.
        app._notifications.clear()
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert "ann@corp.test" in emails_in(grid_of(app)), notifications(app)
        assert not said_gone(app, url), notifications(app)

        # The change watcher goes on by itself: a change made elsewhere reaches the grid unasked.
        await pilot.press("5")  # the pending view
        await settle(app, pilot)
        assert "farah@corp.test" in emails_in(grid_of(app))
        bulk.reject(admin, Selection.of_emails(["farah@corp.test"]))
        await within(app, pilot, "a change made elsewhere shown after the restart",
                     lambda: "farah@corp.test" not in emails_in(grid_of(app)), bound=20)

        # Test & Enable and processing go on by themselves.
        for group, worker in runners.items():
            assert not worker.is_finished, f"{group} ended: {notifications(app)}"
        batch = enablement.schedule(admin, Selection.of_emails(["carla@corp.test"])).batch_id
        app.wake_runner()
        await within(app, pilot, "a Test & Enable job run after the restart",
                     lambda: count(url, f"SELECT count(*) FROM test_job WHERE batch_id = {batch} "
                                        "AND state = 'done'") == 1, bound=30)
        await within(app, pilot, "processing said it goes on",
                     lambda: "processing goes on: the database answers again" in told, bound=20)
        assert "Test & Enable goes on: the database answers again" in told, told
        # Meanwhile neither ran, and the console said so and why (it said the worker's "waits"), not
        # that they gave up.
        for what in ("Test & Enable", "Processing"):
            assert any(text.startswith(f"{what} stopped until the database answers again: ") and shown(url) in text
                       for text in told), (what, told)
        assert not any(RESTART in text for text in told), told

        # Every line the console told was one sentence; whatever spoke of the server named it.
        for text in told:
            assert "\n" not in text.strip() and not any(word in text for word in BAD_WORDS), told
            assert shown(url) in text or not any(word in text.lower() for word in ("server", "connection")), told
        lost = [text for text in told if text.startswith("Changes made elsewhere are not shown")]
        assert lost and all(GONE_WORDS in text for text in lost), told
        assert "Changes made elsewhere are shown again: the database answers again" in told, told
        assert all(not worker.is_finished for worker in runners.values()), runners

        # A save refused while the server was down was not applied later; saving again applies it once.
        assert settings.show(admin).stale_hours == stale_before
        await pilot.press("f6")
        await settle(app, pilot)
        app.screen.query_one("#stale_hours", Input).value = str(stale_before + 7)
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert any("Email settings saved" in text for text in notifications(app)), notifications(app)

    app = run_console(pg_console, scenario, run_tests=True, process=True)
    assert app.return_code in (None, 0)
    assert count(url, "SELECT stale_hours FROM org_settings") == stale_before + 7
    assert count(url, "SELECT count(*) FROM audit_entry WHERE action = 'settings.update' AND at > now() - "
                      "interval '10 minutes'") == 1  # saved once, by the operator, after the restart


# --- every database reply 50 ms late ----------------------------------------------------------------

PEOPLE = 600  # six pages of the grid
KEY_BOUND = 1.0  # seconds a key may take to be answered while a load waits (a sanity bound, not a benchmark)
SLOW_START_BOUND = 30.0
LOCK_SECONDS = 8.0  # the longest a load is held on the server


@pytest.fixture
def slow_link(server: PostgresServer) -> Iterator[int]:
    """A relay on 127.0.0.1 to the server whose every reply waits 50 ms (tests/lab/netns.py's relay,
    on loopback); yields its port."""
    lab_loop = LabLoop()
    relay = lab_loop.call(Relay(lab_loop, "127.0.0.1", server.port, 0.05).start())
    try:
        yield relay.port
    finally:
        lab_loop.call(close_relay(relay))
        lab_loop.stop()


async def close_relay(relay: Relay) -> None:
    relay._server.close()


async def answered(pilot: Pilot, key: str, shown) -> float:
    """Press ``key``; how long until ``shown()`` holds (fails past ``KEY_BOUND``)."""
    started = time.monotonic()
    await pilot.press(key)
    while not shown():
        assert time.monotonic() - started < KEY_BOUND, f"{key} not answered within {KEY_BOUND} s"
        await pilot.pause(0.01)
    return time.monotonic() - started


def test_console_through_50_ms_per_reply_starts_pages_filters_opens_and_answers_keys_while_a_load_waits(
        pg_console: Console, server: PostgresServer, slow_link: int, tmp_path: Path):
    url = str(pg_console.db_path)
    people = tmp_path / "people.csv"
    people.write_text("name,email\n" + "".join(f"Person {i:03},p{i:03}@corp.test\n" for i in range(PEOPLE)))
    imports.import_csv(pg_console.admin, "users", people)
    database.close()
    slow_url = url.replace(f":{server.port}/", f":{slow_link}/")
    slow = Console(slow_url, pg_console.data_dir, pg_console.store, pg_console.actors)
    lock = psycopg2.connect(url)
    let_go = threading.Timer(LOCK_SECONDS, lock.rollback)
    timings: dict[str, float] = {}

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await settle(app, pilot, bound=SLOW_START_BOUND)
        timings["start"] = time.monotonic() - started
        grid = grid_of(app)
        assert grid.row_count >= PEOPLE and "ann@corp.test" in screen_text(app), screen_text(app)
        await pilot.press("2")  # all mailboxes, by name: the people follow the organisation's ten
        await settle(app, pilot)
        for _ in range(3):
            await pilot.press("pagedown")
        await settle(app, pilot)
        assert "Person " in screen_text(app) and "loading" not in screen_text(app), screen_text(app)

        await pilot.press("slash")
        await pilot.press(*"p421@")
        await pilot.press("enter")
        await settle(app, pilot)
        assert emails_in(grid) == ["p421@corp.test"], emails_in(grid)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, MailboxDetailScreen) and "p421@corp.test" in screen_text(app)
        await pilot.press("escape")
        await settle(app, pilot)
        app.screen.query_one("#filter", Input).value = ""  # the whole view again
        await settle(app, pilot)
        assert grid.row_count >= PEOPLE

        # A load held on the server (its table locked by another session): keys are answered meanwhile.
        # (the lock is let go even when an assertion fails: the app's closing waits for its load)
        try:
            with lock.cursor() as cursor:
                cursor.execute("LOCK TABLE alert IN ACCESS EXCLUSIVE MODE")
            let_go.start()  # a console whose UI thread waited for the load would otherwise wait for ever
            waited = time.monotonic()
            timings["f4"] = await answered(pilot, "f4", lambda: type(app.screen).__name__ == "AlertsScreen")
            alerts = app.screen
            assert "loading…" in screen_text(app)
            timings["help"] = await answered(pilot, "question_mark", lambda: type(app.screen).__name__ == "HelpScreen")
            timings["esc"] = await answered(pilot, "escape", lambda: app.screen is alerts)
            timings["f2"] = await answered(pilot, "f2", lambda: isinstance(app.screen, MailboxesScreen))
            row = grid_of(app).cursor_row
            timings["down"] = await answered(pilot, "down", lambda: grid_of(app).cursor_row == row + 1)
            timings["f4 again"] = await answered(pilot, "f4", lambda: type(app.screen).__name__ == "AlertsScreen")
            assert "loading…" in screen_text(app)  # still held
            lock.rollback()
            await settle(app, pilot)
            assert "AUTH_FAILED" in screen_text(app), screen_text(app)
            timings["held"] = time.monotonic() - waited
        finally:
            let_go.cancel()
            lock.rollback()

    started = time.monotonic()
    try:
        app = run_console(slow, scenario, run_tests=False)
    finally:
        lock.close()
    assert app.return_code in (None, 0)
    print("timings", {name: round(seconds, 3) for name, seconds in timings.items()})
