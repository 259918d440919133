"""The console's screens at 80x24, driven by the keyboard over a real SQLite database and a real
(encrypted file) keyring: lists with data, forms that refuse bad input beside the field and write
nothing, confirmations that state the count, and refusals that name the role needed."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Iterator

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Footer, Input, Select, Static, Checkbox

from mbxtui.core import db
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import AlertLevel
from mbxtui.core.models import EnablementJob, Mailbox
from mbxtui.core.permissions import Actor
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import alerts, credentials, mailboxes, operators, profiles, settings, users
from mbxtui.core.services.alerts import raise_alert
from mbxtui.tui.app import MbxApp
from mbxtui.tui.navigation import screens
from mbxtui.tui.screens.failed import FailedScreen
from mbxtui.tui.screens.forms import ForwardMailboxForm
from mbxtui.tui.screens.help import HelpScreen
from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen, MailboxEditScreen
from mbxtui.tui.screens.operators import OperatorsScreen
from mbxtui.tui.screens.people import PeopleScreen
from mbxtui.tui.screens.profiles import ProfileDetailScreen, ProfileFormScreen, ProfilesScreen
from mbxtui.tui.widgets.confirm import ConfirmScreen
from tests.backends import Databases
from tests.core.support import IMAP_PROFILE, set_test_results, snapshot

SCREENS = screens()

MASTER_PASSWORD = "correct horse battery staple"
AUTH_SENTENCE = "The server refused the user name or password: correct the mailbox's credentials."


@dataclass
class World:
    path: Path | str
    data_dir: Path
    store: SecretStore
    admin: Actor
    service: Actor
    system: Actor
    viewer: Actor


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> SecretStore:
    """One encrypted-file keyring for the session (no OS keyring): unlocking costs a key derivation."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
        env.delenv("MBXTUI_MASTER_PASSWORD", raising=False)
        store = SecretStore.open(tmp_path_factory.mktemp("secrets"))
    assert store.needs_master_password, store.backend_name
    store.unlock(MASTER_PASSWORD)
    return store


def closed_port() -> int:
    """A loopback port nothing listens on (connecting to it is refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def world(tmp_path: Path, store: SecretStore, monkeypatch: pytest.MonkeyPatch,
          databases: Databases) -> Iterator[World]:
    """A database with operators of every role, a default profile on loopback, two users, a queue,
    a forward mailbox, alerts of each level and one mailbox whose test failed."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("MBXTUI_DATA_DIR", str(tmp_path))
    location = databases.new(tmp_path)
    database = db.open_database(location)
    admin = operators.initialise(login="alice")
    operators.add(admin, "sam", "service_admin")
    operators.add(admin, "syd", "system_admin")
    operators.add(admin, "vic", "viewer")
    port = closed_port()
    profiles.create(admin, **{**IMAP_PROFILE, "incoming_host": "127.0.0.1", "incoming_port": port,
                              "outgoing_host": "127.0.0.1", "outgoing_port": port, "timeout_seconds": 5})
    settings.update(admin, default_profile="imap")
    users.add_user(admin, "Ann Archer", "ann@corp.test")
    users.add_user(admin, "Bob Baker", "bob@corp.test")
    profiles.update(admin, "imap", owner="ann@corp.test")
    users.add_queue(admin, "Support", "support@corp.test", owner="ann@corp.test")
    mailboxes.create_forward_mailbox(admin, name="Forwarder", email="fwd@corp.test", profile="imap")
    set_test_results("bob@corp.test", incoming_status="failure", overall_status="failure",
                     last_error_code="AUTH_FAILED", last_error_text=AUTH_SENTENCE,
                     postponed_until="2030-01-02 03:04:05")
    with write_transaction():
        bob = Mailbox.get(Mailbox.email == "bob@corp.test")
        ann = Mailbox.get(Mailbox.email == "ann@corp.test")
        raise_alert(AlertLevel.ERROR, "AUTH_FAILED", "incoming test of bob@corp.test failed", mailbox=bob)
        raise_alert(AlertLevel.ERROR, "TLS_CERTIFICATE", "incoming test of ann@corp.test failed", mailbox=ann)
        raise_alert(AlertLevel.WARNING, "TIMEOUT", "outgoing test of ann@corp.test failed for now", mailbox=ann)
        raise_alert(AlertLevel.INFORMATION, "CONNECTED", "ann@corp.test is connected [bold]x[/]", mailbox=ann)
    roles = {login: operators.current_actor(login=login) for login in ("alice", "sam", "syd", "vic")}
    yield World(location, tmp_path, store, roles["alice"], roles["sam"], roles["syd"], roles["vic"])
    database.close()
    databases.drop(location)


Scenario = Callable[[MbxApp, Pilot], Awaitable[None]]


def run(world: World, actor: Actor, scenario: Scenario) -> None:
    app = MbxApp(actor, db_path=world.path, data_dir=world.data_dir, run_tests=False, store=world.store)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await scenario(app, pilot)

    asyncio.run(main())


async def settle(app: MbxApp, pilot: Pilot) -> None:
    """Let thread workers finish and their results reach the screen."""
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


def notifications(app: MbxApp) -> list[str]:
    return [notification.message for notification in app._notifications]


def table_rows(table: DataTable) -> list[list[str]]:
    return [[str(value) for value in table.get_row_at(index)] for index in range(table.row_count)]


def text_of(static: Static) -> str:
    return str(static.render())


def offered(screen, key: str) -> bool:
    """Whether the Footer and the palette offer the key as usable (a refused action is hidden or greyed)."""
    active = screen.active_bindings.get(key)
    return active is not None and active.enabled


def fits_80x24(screen) -> None:
    assert screen.query_one("#title").region.y == 0
    footer = screen.query_one(Footer)
    assert footer.region.y == 23 and footer.region.width == 80


def fill(screen, **values) -> None:
    for key, value in values.items():
        widget = screen.query_one(f"#{key}")
        widget.value = value


# --- every screen renders with data ------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("profiles", "imap"),
    ("alerts", "AUTH_FAILED"),
    ("failed", "bob@corp.test"),
    ("people", "ann@corp.test"),
    ("operators", "alice"),
])
def test_each_list_screen_shows_its_data_at_80x24(world: World, name: str, expected: str):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go(name)
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, SCREENS[name])
        fits_80x24(screen)
        assert "alice (global_admin)" in text_of(screen.query_one("#title", Static))
        rows = table_rows(screen.query_one("#table", DataTable))
        assert any(expected in cell for row in rows for cell in row), rows

        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen

    run(world, world.admin, scenario)


def test_settings_and_profile_detail_render_at_80x24(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("settings")
        await settle(app, pilot)
        fits_80x24(app.screen)
        assert app.screen.query_one("#default_profile", Select).value == "imap"
        assert app.screen.query_one("#retry_attempts", Input).value == "10"

        await app.push_screen(ProfileDetailScreen("imap"))
        await settle(app, pilot)
        screen = app.screen
        fits_80x24(screen)
        settings_text = text_of(screen.query_one("#settings-text", Static))
        assert "Profile password" in settings_text and "not set" in settings_text
        assert "ann@corp.test" in settings_text  # the owner
        summary = text_of(screen.query_one("#summary", Static))
        assert "4 mailboxes" in summary and "1 failed" in summary and "3 not tested" in summary
        await pilot.press("2")
        assert [row[0] for row in table_rows(screen.query_one("#mailboxes", DataTable))] == [
            "ann@corp.test", "bob@corp.test", "fwd@corp.test", "support@corp.test"]
        await pilot.press("3")
        assert "TLS_CERTIFICATE" in text_of(screen.query_one("#alerts-text", Static))

    run(world, world.admin, scenario)


def test_data_is_shown_as_text_never_as_markup(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("alerts")
        await settle(app, pilot)
        await pilot.press("4")  # information only
        await pilot.pause()
        assert "[bold]x[/]" in text_of(app.screen.query_one("#detail", Static))

    run(world, world.admin, scenario)


# --- profiles ----------------------------------------------------------------------------------

def test_profile_create_with_a_bad_port_shows_the_error_beside_the_field_and_writes_nothing(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("profiles")
        await settle(app, pilot)
        await pilot.press("a")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, ProfileFormScreen)
        fits_80x24(form)
        fill(form, name="corp pop", incoming_host="pop.corp.test", incoming_port="99999",
             outgoing_host="smtp.corp.test", password="s3cret")
        before = snapshot()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is form
        assert "99999 is out of range 1–65535" in text_of(form.query_one("#error-incoming_port", Static))
        assert text_of(form.query_one("#error-name", Static)) == ""
        assert form.focused is form.query_one("#incoming_port", Input)
        assert snapshot() == before

        fill(form, incoming_port="995")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ProfilesScreen)
        created = profiles.show(world.admin, "corp pop")
        assert created.incoming.port == 995 and created.as_dict()["password"] == "set"
        profile_id = profiles.get("corp pop").id
        assert credentials.profile_secret(world.store, profile_id).reveal() == "s3cret"
        assert "corp pop" in [row[0] for row in table_rows(app.screen.query_one("#table", DataTable))]

    run(world, world.admin, scenario)


def test_profile_edit_changes_only_what_was_changed_and_asks_before_losing_an_edit(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(ProfileDetailScreen("imap"))
        await settle(app, pilot)
        detail = app.screen
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, ProfileFormScreen)
        await pilot.press("escape")  # nothing changed: no question
        await pilot.pause()
        assert app.screen is detail
        await pilot.press("e")
        await pilot.pause()
        form = app.screen
        fill(form, max_connections="25")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is form
        before_version = profiles.show(world.admin, "imap").row_version
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert app.screen is detail
        after = profiles.show(world.admin, "imap")
        assert after.max_connections == 25 and after.row_version == before_version + 1
        assert after.owner == "ann@corp.test" and after.as_dict()["password"] == "not set"
        assert "Max concurrent connections  25" in text_of(detail.query_one("#settings-text", Static))

    run(world, world.admin, scenario)


def test_test_and_enable_mailboxes_of_a_profile_asks_with_the_count_then_queues_them(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(ProfileDetailScreen("imap"))
        await settle(app, pilot)
        await pilot.press("t")
        await pilot.pause()
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert "Test all 4 mailboxes of profile imap" in confirm.detail
        await pilot.press("y")
        await settle(app, pilot)
        assert EnablementJob.select().where(EnablementJob.state == "queued").count() == 4
        assert Mailbox.select().where(Mailbox.test_scheduled == True).count() == 4  # noqa: E712
        assert "4 queued" in notifications(app)
        assert app.watched_batches

    run(world, world.admin, scenario)


def test_test_connection_of_a_profile_reports_the_refused_connection(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(ProfileDetailScreen("imap"))
        await settle(app, pilot)
        await pilot.press("c")
        await settle(app, pilot)
        text = text_of(app.screen.query_one("#connection", Static))
        assert "Test connection: FAILED" in text
        assert "CONNECTION_REFUSED" in text

    run(world, world.admin, scenario)


# --- alerts ------------------------------------------------------------------------------------

def test_dismiss_one_alert(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("alerts")
        await settle(app, pilot)
        table = app.screen.query_one("#table", DataTable)
        assert table.row_count == 4
        newest = alerts.list_alerts(world.admin, limit=1)[0]
        await pilot.press("d")
        await pilot.pause()
        assert table.row_count == 3
        remaining = {a["id"] for a in alerts.list_alerts(world.admin)}
        assert newest["id"] not in remaining and len(remaining) == 3

    run(world, world.admin, scenario)


def test_dismiss_all_shown_asks_with_the_count_and_dismisses_only_what_is_shown(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("alerts")
        await settle(app, pilot)
        await pilot.press("2")  # errors only
        await pilot.pause()
        assert app.screen.query_one("#table", DataTable).row_count == 2
        await pilot.press("D")
        await pilot.pause()
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert "Dismiss 2 alerts (errors)" in confirm.detail
        await pilot.press("y")
        await settle(app, pilot)
        assert sorted(a["level"] for a in alerts.list_alerts(world.admin)) == ["information", "warning"]
        assert app.screen.query_one("#table", DataTable).row_count == 0

    run(world, world.admin, scenario)


def test_alerts_filter_by_mailbox_and_open_its_mailbox(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("alerts")
        await settle(app, pilot)
        await pilot.press("slash")
        fill(app.screen, filter="bob@corp.test")
        await pilot.press("enter")
        await pilot.pause()
        rows = table_rows(app.screen.query_one("#table", DataTable))
        assert [row[2] for row in rows] == ["AUTH_FAILED"]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, MailboxDetailScreen)
        assert app.screen.mailbox_id == mailboxes.get("bob@corp.test").id

    run(world, world.admin, scenario)


# --- Test and Enable Failed ---------------------------------------------------------------------

def test_failed_view_lists_the_failed_mailbox_with_direction_code_sentence_and_retry(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("failed")
        await settle(app, pilot)
        screen = app.screen
        rows = table_rows(screen.query_one("#table", DataTable))
        assert rows == [["bob@corp.test", "incoming", "AUTH_FAILED", "2030-01-02 03:04:05", "Bob Baker"]]
        assert AUTH_SENTENCE in text_of(screen.query_one("#detail", Static))

        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, MailboxEditScreen) and app.screen.row["email"] == "bob@corp.test"
        await app.pop_screen()

        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "bob@corp.test" in app.screen.detail
        await pilot.press("y")
        await settle(app, pilot)
        assert [job.mailbox.email for job in EnablementJob.select()] == ["bob@corp.test"]

    run(world, world.system, scenario)


# --- settings ----------------------------------------------------------------------------------

def test_settings_change_is_persisted(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("settings")
        await settle(app, pilot)
        screen = app.screen
        fill(screen, retry_attempts="3", default_outgoing="none")
        screen.query_one("#notify_owners_of_profile_alerts", Checkbox).value = True
        await pilot.press("ctrl+s")
        await pilot.pause()
        stored = settings.show(world.admin)
        assert (stored.retry_attempts, stored.default_outgoing, stored.notify_owners_of_profile_alerts) \
            == (3, "none", True)
        assert stored.row_version == 3  # the fixture's change, then this one

        fill(screen, retry_interval_minutes="0")
        before = snapshot()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "0 minutes is out of range 1–1440" in text_of(screen.query_one("#error-retry_interval_minutes", Static))
        assert snapshot() == before

    run(world, world.admin, scenario)


# --- roles -------------------------------------------------------------------------------------

def test_operators_screen_is_refused_to_a_system_admin_naming_the_role(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("f8")
        await pilot.pause()
        assert not isinstance(app.screen, OperatorsScreen)
        assert any("global_admin" in message for message in notifications(app))

    run(world, world.system, scenario)


def test_a_viewer_sees_approve_and_edit_disabled_and_the_key_explains_the_role(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(MailboxDetailScreen(mailboxes.get("bob@corp.test").id))
        await pilot.pause()
        assert not offered(app.screen, "A") and not offered(app.screen, "e")
        assert offered(app.screen, "ctrl+r")
        await pilot.press("A")
        await pilot.pause()
        assert "Approve: you are viewer; this needs the role global_admin or service_admin" in notifications(app)

        app.action_go("failed")
        await settle(app, pilot)
        failed = app.screen
        assert isinstance(failed, FailedScreen)
        assert not offered(failed, "e") and not offered(failed, "t") and offered(failed, "enter")
        await pilot.press("e")
        await pilot.pause()
        assert app.screen is failed
        assert any(m.startswith("Edit: you are viewer") for m in notifications(app)), notifications(app)

        app.action_go("settings")
        await settle(app, pilot)
        assert app.screen.query_one("#retry_attempts", Input).is_disabled
        assert not offered(app.screen, "ctrl+s")

    run(world, world.viewer, scenario)


def test_operators_add_change_role_and_remove(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("operators")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, OperatorsScreen)
        await pilot.press("a")
        await pilot.pause()
        fill(app.screen, login="olga", user="ann@corp.test")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is screen
        assert operators.get("olga").role == "viewer"

        screen.table.move_cursor(row=screen.table.get_row_index("olga"))
        await pilot.press("r")
        await pilot.pause()
        fill(app.screen, role="system_admin")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert operators.get("olga").role == "system_admin"

        await pilot.press("X")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "Remove 1 operator, olga" in app.screen.detail
        await pilot.press("y")
        await pilot.pause()
        assert "olga" not in [o.login for o in operators.list_operators(world.admin)]

    run(world, world.admin, scenario)


# --- users, queues and forward mailboxes --------------------------------------------------------

def test_add_user_creates_its_mailbox_with_the_defaults(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("people")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, PeopleScreen)
        await pilot.press("a")
        await pilot.pause()
        await pilot.press(*"Cy Clark", "tab", *"cy@corp.test")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is screen
        box = mailboxes.show(world.admin, "cy@corp.test")
        assert (box.regarding, box.profile, box.approval) == ("user", "imap", "pending")
        assert Mailbox.select().where(Mailbox.email == "cy@corp.test").count() == 1
        rows = table_rows(screen.table)
        assert ["Cy Clark", "cy@corp.test", "yes", "cy@corp.test"] in rows

        screen.table.move_cursor(row=screen.table.get_row_index("cy@corp.test"))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, MailboxDetailScreen) and app.screen.mailbox_id == box.id

    run(world, world.system, scenario)


def test_people_are_listed_a_page_at_a_time(world: World, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(PeopleScreen, "PAGE_SIZE", 1)

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("people")
        await settle(app, pilot)
        screen = app.screen
        seen = [table_rows(screen.table)[0][1]]
        await pilot.press("n")
        seen.append(table_rows(screen.table)[0][1])
        await pilot.press("n")  # there is no third user
        assert table_rows(screen.table)[0][1] == seen[-1]
        assert "This is the last page" in notifications(app)
        await pilot.press("p")
        assert table_rows(screen.table)[0][1] == seen[0]
        assert seen == ["ann@corp.test", "bob@corp.test"]

    run(world, world.admin, scenario)


def test_deactivate_user_asks_then_deactivates_its_mailbox(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("people")
        await settle(app, pilot)
        screen = app.screen
        screen.table.move_cursor(row=screen.table.get_row_index("bob@corp.test"))
        await pilot.press("X")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "Deactivate 1 user, bob@corp.test" in app.screen.detail
        await pilot.press("y")
        await pilot.pause()
        assert mailboxes.show(world.admin, "bob@corp.test").active is False
        await pilot.press("2")
        await pilot.pause()
        assert [row[1] for row in table_rows(screen.table)] == ["support@corp.test"]

    run(world, world.admin, scenario)


def test_forward_mailbox_form_creates_one(world: World):
    outcome: list[bool] = []

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid_screen = app.screen
        await pilot.press("N")  # from the mailbox grid
        await pilot.pause()
        assert isinstance(app.screen, ForwardMailboxForm)
        await pilot.press("escape")  # nothing typed: leaves without asking
        await pilot.pause()
        assert app.screen is grid_screen

        await app.push_screen(ForwardMailboxForm(), outcome.append)
        await pilot.pause()
        form = app.screen
        fits_80x24(form)
        fill(form, name="Sales inbox", email="sales-fwd@corp.test")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "is required" in text_of(form.query_one("#error-profile", Static))
        fill(form, profile="imap")
        form.query_one("#delete_after_processing", Checkbox).value = True
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is not form

    run(world, world.system, scenario)
    assert outcome == [True]
    box = mailboxes.show(world.admin, "sales-fwd@corp.test")
    assert (box.is_forward, box.outgoing_method, box.delete_after_processing, box.profile) == \
        (True, "none", True, "imap")


def test_every_screen_of_the_console_is_registered_under_its_name():
    assert set(SCREENS) == {"mailboxes", "profiles", "alerts", "failed", "settings", "people", "operators",
                            "activities"}
