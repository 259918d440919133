"""The mailbox detail's "Authorization" lines: what is recorded of the mailbox's own OAuth2
authorization (``mailbox authorize``), against the lab's HTTPS identity provider, never a token."""

from __future__ import annotations

import threading

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from mbxtui.core.oauth.delegated import DeviceCode
from mbxtui.core.services import authorizations
from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen
from tests.tui.test_detect_authorize import (  # noqa: F401  (the fixtures are used by name)
    ALICE, delegated_mailbox, lab_certificates, provider, refresh_token_of, run, screen_text,
)
from tests.lab.oauth_provider import OAuthProvider
from tests.tui.test_screens import World, settle, store, text_of, world  # noqa: F401

pytestmark = pytest.mark.servers


def fields_of(app: MbxApp) -> str:
    return text_of(app.screen.query_one("#fields", Static))


def test_the_detail_shows_the_authorization_record_and_no_token(world: World, provider: OAuthProvider):
    mailbox_id = delegated_mailbox(world, provider)
    provider.refresh_token_expires_in = 30 * 86400

    def approve(code: DeviceCode) -> None:
        threading.Timer(0.1, provider.approve, (code.user_code, ALICE)).start()

    async def before(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(MailboxDetailScreen(mailbox_id))
        await settle(app, pilot)
        assert "\nAuthorization: none (z authorizes it)" in fields_of(app)

    run(world, before)
    authorizations.authorize(world.admin, ALICE, world.store, approve)
    state = authorizations.state_of(world.admin, ALICE)

    async def after(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(MailboxDetailScreen(mailbox_id))
        await settle(app, pilot)
        shown = fields_of(app).split("\nAuthorization\n")[1]
        assert f"Authorized                {state['authorized_on']} by {world.admin.login}" in shown
        assert f"Refresh token can expire  {state['refresh_expires_on']}" in shown
        assert "Last refresh error        -" in shown
        everything = screen_text(app)
        for token in [refresh_token_of(world, mailbox_id), *provider.issued]:
            assert token not in everything

    run(world, after)
