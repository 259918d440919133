"""The demo's console shows the mailbox the OAuth2 app was never granted where a newcomer looks:
Test and Enable Failed and the alerts, with the code and the sentence that says what to do."""

from __future__ import annotations

import asyncio

from textual.pilot import Pilot

from mbxtui.demo import Demo, seed
from mbxtui.tui.app import MbxApp
from tests.tui.conftest import screen_text, settle

UNGRANTED = seed.plan().ungranted


def test_the_ungranted_mailbox_is_in_the_failed_view_and_the_alerts_with_its_sentence(restarted_demo: Demo):
    app = MbxApp(restarted_demo.actor, db_path=restarted_demo.db_path, data_dir=restarted_demo.directory,
                 store=restarted_demo.store, run_tests=False)
    shown: dict[str, str] = {}

    async def look(pilot: Pilot, view: str, filter_text: str) -> str:
        app.action_go(view)
        await settle(app, pilot)
        app.screen.apply_filter(filter_text)
        await settle(app, pilot)
        return " ".join(screen_text(app).split())

    async def main() -> None:
        async with app.run_test(size=(200, 40)) as pilot:
            await pilot.pause()
            shown["failed"] = await look(pilot, "failed", UNGRANTED)
            shown["alerts"] = await look(pilot, "alerts", UNGRANTED)

    asyncio.run(main())
    failed, alerts = shown["failed"], shown["alerts"]
    assert f"{UNGRANTED}: incoming, outgoing failed with OAUTH_PERMISSION_MISSING" in failed, failed
    assert "refused the OAuth2 token the provider issued" in failed and "AUTHENTICATE failed." in failed
    assert "OAUTH_PERMISSION_MISSING" in alerts and UNGRANTED in alerts, alerts
