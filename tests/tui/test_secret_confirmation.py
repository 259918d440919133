"""R34 in the console: the mailbox detail and the profile detail say whether the secret is confirmed
for the current endpoint, and offer to confirm it (``C``, through the one confirmation dialog)."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import Static

from mbxtui.core.services import audit, credentials, mailboxes, profiles
from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen
from mbxtui.tui.screens.profiles import ProfileDetailScreen
from mbxtui.tui.widgets.confirm import ConfirmScreen
from tests.tui.conftest import HEAD_OFFICE, Console, notifications

CARLA = "carla@corp.test"


def fields_text(app: MbxApp) -> str:
    return str(app.screen.query_one("#fields", Static).render())


def test_the_mailbox_detail_shows_an_unconfirmed_secret_and_confirms_it(console: Console):
    credentials.set_mailbox_secret(console.admin, CARLA, "carla-bound-secret", console.store)
    profiles.update(console.admin, HEAD_OFFICE, incoming_host="imap2.corp.test")

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(MailboxDetailScreen(mailboxes.get(CARLA).id))
        await pilot.pause()
        await pilot.pause()
        assert "Secret for this endpoint        not confirmed" in fields_text(app)
        await pilot.press("C")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert f"Send the password and token of {CARLA} to the current servers of profile {HEAD_OFFICE}" in \
            app.screen.detail
        await pilot.press("y")
        for _ in range(20):
            await pilot.pause()
            if "Secret for this endpoint        confirmed" in fields_text(app):
                break
        assert "Secret for this endpoint        confirmed" in fields_text(app)
        assert "Confirmed for the current endpoint" in notifications(app)

    console.run(scenario)
    assert credentials.mailbox_secret_state(console.admin, CARLA) == credentials.CONFIRMED
    assert audit.list_entries(console.admin, limit=1)[0]["action"] == "mailbox.confirm_secret"


def test_a_viewer_is_told_the_role_needed_to_confirm(console: Console):
    credentials.set_mailbox_secret(console.admin, CARLA, "carla-bound-secret", console.store)
    profiles.update(console.admin, HEAD_OFFICE, incoming_host="imap2.corp.test")

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(MailboxDetailScreen(mailboxes.get(CARLA).id))
        await pilot.pause()
        await pilot.press("C")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert "Confirm secret: you are viewer; this needs the role global_admin or service_admin" in (
            notifications(app)), notifications(app)

    console.run(scenario, role="viewer")
    assert credentials.mailbox_secret_state(console.admin, CARLA) == credentials.NOT_CONFIRMED


def test_the_profile_detail_shows_an_unconfirmed_secret_and_confirms_it(console: Console):
    credentials.set_profile_secret(console.admin, HEAD_OFFICE, "profile-bound-secret", console.store)
    profiles.update(console.admin, HEAD_OFFICE, outgoing_port=2525)

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(ProfileDetailScreen(HEAD_OFFICE))
        await pilot.pause()
        await pilot.pause()
        settings_text = str(app.screen.query_one("#settings-text", Static).render())
        assert "Secret for this endpoint    not confirmed" in settings_text
        assert "Credentials in clear        not allowed" in settings_text
        await pilot.press("C")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert f"Send the password and token of profile {HEAD_OFFICE} to its current servers" in app.screen.detail
        await pilot.press("y")
        for _ in range(20):
            await pilot.pause()
            if "Secret for this endpoint    confirmed" in str(app.screen.query_one("#settings-text", Static).render()):
                break
        assert "Secret for this endpoint    confirmed" in str(app.screen.query_one("#settings-text", Static).render())

    console.run(scenario)
    assert profiles.show(console.admin, HEAD_OFFICE).secret_endpoint == "confirmed"
