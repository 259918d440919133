"""The console shows what other processes saw of a profile's OAuth2 tokens: Test & Enable and a
profile test run as child processes (their tokens stay in their memory), the console opened
afterwards on the same database reads the state they recorded, never the token."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from mbxtui.core.oauth import tokens
from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens.profiles import ProfileDetailScreen
from tests.integration.conftest import Org, stored_bytes
from tests.integration.test_oauth_test_enable import ALICE, TENANT, fresh_tokens, oauth_mail, oauth_profile  # noqa: F401
from tests.lab.oauth_mail import OAuthMail

pytestmark = pytest.mark.servers


def detail_lines(org: Org, name: str) -> dict[str, str]:
    """The profile detail's settings, title -> value, as the console shows them."""
    app = MbxApp(org.admin, db_path=org.db_path, data_dir=org.secrets_dir, run_tests=False, store=org.store)
    shown: dict[str, str] = {}

    async def main() -> None:
        async with app.run_test(size=(100, 50)) as pilot:
            await pilot.pause()
            await app.push_screen(ProfileDetailScreen(name))
            await app.workers.wait_for_complete()
            await pilot.pause()
            await pilot.pause()
            text = str(app.screen.query_one("#settings-text", Static).render())
            for row in text.splitlines():
                title, _, value = row.partition("  ")
                if value:
                    shown[title.strip()] = value.strip()
                elif shown:  # a long value wrapped onto the next line
                    last = list(shown)[-1]
                    shown[last] += " " + row.strip()

    asyncio.run(main())
    return shown


def test_the_console_shows_the_token_a_worker_process_obtained_then_the_error_of_a_refused_client(
        org: Org, oauth_mail: OAuthMail, fresh_tokens: None):  # noqa: F811
    provider = oauth_mail.provider
    provider.register(TENANT, "app-state", secret="Lab~state.secret-1")
    oauth_profile(org, oauth_mail, "M365", "app-state", secret="Lab~state.secret-1")
    org.mailbox(ALICE, "M365")
    assert detail_lines(org, "M365")["Last OAuth2 token"] == "none yet with these settings"

    tested = org.cli("test-enable", ALICE, "--wait", "--json")
    assert tested.returncode == 0, tested.stderr
    assert provider.requests_of("app-state") == 1
    tokens.forget_tokens()  # nothing of this process: what the console shows came from the child
    shown = detail_lines(org, "M365")
    obtained = datetime.fromisoformat(shown["Last OAuth2 token"])
    assert (datetime.fromisoformat(shown["OAuth2 token expires"]) - obtained).total_seconds() == provider.token_lifetime
    assert shown["Last OAuth2 token error"] == "none"

    provider.register(TENANT, "app-state", secret="Lab~rotated.secret-2")  # the secret was rotated at the provider
    checked = org.cli("profile", "test", "M365")
    assert checked.returncode != 0 and "OAUTH_CLIENT_REJECTED" in checked.stdout
    shown = detail_lines(org, "M365")
    assert shown["Last OAuth2 token error"].startswith("OAUTH_CLIENT_REJECTED at ")
    assert "refused client 'app-state'" in shown["Last OAuth2 token error"]
    assert datetime.fromisoformat(shown["Last OAuth2 token"]) == obtained  # the last token is still shown
    held = stored_bytes(org.db_path)
    assert provider.issued and all(token.encode() not in held for token in provider.issued)
