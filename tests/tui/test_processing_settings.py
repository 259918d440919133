"""The settings of processing in the console: the Settings screen's tracking defaults, stale hours
and notification mailbox (R27, R31, R32), the profile form's re-test interval and processed folder
(R33, R28), the mailbox form's tracking (R27): saved through the services, refusals beside their
field with nothing written, read-only for a viewer."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

from mbxtui.core.models import Mailbox
from mbxtui.core.services import mailboxes, profiles, settings
from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen, MailboxEditScreen
from mbxtui.tui.screens.mailboxes import BulkEditScreen
from mbxtui.tui.screens.profiles import ProfileDetailScreen, ProfileFormScreen
from mbxtui.tui.widgets.confirm import ConfirmScreen
from mbxtui.tui.widgets.grid import MailboxGrid
from tests.core.support import set_test_results, snapshot
from tests.tui.conftest import Console
from tests.tui.test_flows import put_cursor_on
from tests.tui.test_screens import World, fill, run, settle, store, text_of, world  # noqa: F401 (fixtures)


async def save(app: MbxApp, pilot: Pilot) -> None:
    await pilot.press("ctrl+s")
    await settle(app, pilot)


def test_settings_screen_saves_tracking_stale_hours_and_the_notification_mailbox(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("settings")
        await settle(app, pilot)
        screen = app.screen
        assert screen.query_one("#tracking_users", Select).value == "replies"
        assert screen.query_one("#tracking_queues", Select).value == "all"
        assert screen.query_one("#stale_hours", Input).value == "24"
        assert screen.query_one("#notification_mailbox", Input).value == ""
        warning = screen.query_one("#notification-warning", Static)
        assert not warning.display

        fill(screen, tracking_users="all", tracking_queues="none", stale_hours="48",
             notification_mailbox="support@corp.test")
        await save(app, pilot)
        stored = settings.show(world.admin)
        assert (stored.tracking_users, stored.tracking_queues, stored.stale_hours, stored.notification_mailbox) == (
            "all", "none", 48, "support@corp.test")
        assert warning.display and "support@corp.test is not enabled for outgoing yet" in text_of(warning)

        for field, value, problem in (
            ("stale_hours", "0", "0 hours is out of range 1–8760"),
            ("notification_mailbox", "ghost@corp.test", "no mailbox with email ghost@corp.test"),
            ("notification_mailbox", "fwd@corp.test", "is a forward mailbox, which only receives"),
        ):
            fill(screen, **{field: value})
            before = snapshot()
            await save(app, pilot)
            assert problem in text_of(screen.query_one(f"#error-{field}", Static))
            assert screen.focused is screen.query_one(f"#{field}")
            assert snapshot() == before
            fill(screen, **{field: {"stale_hours": "48", "notification_mailbox": "support@corp.test"}[field]})

        set_test_results("support@corp.test", outgoing_enabled=True)
        fill(screen, notification_mailbox="")  # emptied: no notification mailbox
        await save(app, pilot)
        assert settings.show(world.admin).notification_mailbox is None
        assert not warning.display

    run(world, world.admin, scenario)


def test_a_viewer_sees_the_processing_settings_read_only(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("settings")
        await settle(app, pilot)
        for field in ("tracking_users", "tracking_queues", "stale_hours", "notification_mailbox"):
            assert app.screen.query_one(f"#{field}").is_disabled

    run(world, world.viewer, scenario)


def test_profile_form_sets_and_clears_the_retest_interval_and_processed_folder(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(ProfileDetailScreen("imap"))
        await settle(app, pilot)
        detail = app.screen
        assert "Re-test enabled mailboxes   never" in text_of(detail.query_one("#settings-text", Static))
        await pilot.press("e")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, ProfileFormScreen)
        for field, value, problem in (
            ("retest_hours", "0", "0 hours is out of range 1–8760"),
            ("processed_folder", "INBOX", "INBOX is where processed mail is read from"),
        ):
            fill(form, **{field: value})
            before = snapshot()
            await save(app, pilot)
            assert app.screen is form
            assert problem in text_of(form.query_one(f"#error-{field}", Static))
            assert snapshot() == before
            fill(form, **{field: ""})
        fill(form, retest_hours="24", processed_folder="Processed")
        await save(app, pilot)
        assert app.screen is detail
        shown = profiles.show(world.admin, "imap")
        assert (shown.retest_hours, shown.processed_folder) == (24, "Processed")
        text = text_of(detail.query_one("#settings-text", Static))
        assert "Re-test enabled mailboxes   after 24 h" in text and "Processed folder (IMAP)     Processed" in text

        await pilot.press("e")
        await pilot.pause()
        assert app.screen.query_one("#retest_hours", Input).value == "24"
        fill(app.screen, retest_hours="", processed_folder="")
        await save(app, pilot)
        shown = profiles.show(world.admin, "imap")
        assert (shown.retest_hours, shown.processed_folder) == (None, None)

    run(world, world.admin, scenario)


def test_mailbox_form_sets_tracking_and_back_to_the_organisations(world: World):
    ann = mailboxes.get("ann@corp.test").id

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(MailboxDetailScreen(ann))
        await settle(app, pilot)
        detail = app.screen
        assert "Tracking                        replies (the organisation's default)" in text_of(
            detail.query_one("#fields", Static))
        await pilot.press("e")
        await settle(app, pilot)
        form = app.screen
        assert isinstance(form, MailboxEditScreen)
        assert form.query_one("#tracking", Select).value == "default"
        fill(form, tracking="all")
        await save(app, pilot)
        await settle(app, pilot)
        assert app.screen is detail
        assert Mailbox.get_by_id(ann).tracking == "all"
        assert "Tracking                        all\n" in text_of(detail.query_one("#fields", Static))

        await pilot.press("e")
        await settle(app, pilot)
        assert app.screen.query_one("#tracking", Select).value == "all"
        fill(app.screen, tracking="default")
        await save(app, pilot)
        assert Mailbox.get_by_id(ann).tracking is None

    run(world, world.admin, scenario)


def test_a_forward_mailbox_form_offers_no_tracking(world: World):
    forwarder = mailboxes.get("fwd@corp.test").id

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(MailboxDetailScreen(forwarder))
        await settle(app, pilot)
        assert "Tracking                        each user's and queue's own" in text_of(
            app.screen.query_one("#fields", Static))
        await pilot.press("e")
        await settle(app, pilot)
        assert isinstance(app.screen, MailboxEditScreen)
        assert not app.screen.query("#tracking")

    run(world, world.admin, scenario)


def test_bulk_edit_sets_tracking_on_the_marked_mailboxes(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = app.screen.query_one(MailboxGrid)
        for email in ("ann@corp.test", "bob@corp.test"):
            await put_cursor_on(pilot, grid, email)
            await pilot.press("space")
        await pilot.press("e")
        await settle(app, pilot)
        modal = app.screen
        assert isinstance(modal, BulkEditScreen)
        for widget in modal.query("Select, Button"):
            assert widget.region.bottom <= 24, f"{widget} is off screen at 80x24"
        modal.query_one("#tracking", Select).value = "none"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "Set tracking = none on 2 mailboxes?" in app.screen.detail
        await pilot.press("y")
        await settle(app, pilot)
        assert [Mailbox.get(Mailbox.email == e).tracking for e in ("ann@corp.test", "bob@corp.test",
                                                                   "carla@corp.test")] == ["none", "none", None]

    console.run(scenario)
