"""The console processes mailboxes only when asked (`mbxtui console --process`, issue 12): the real
app driven by Pilot against the real mail lab. Opened without it, new mail stays unread however
long it is open; with it, the mail is recorded while the console keeps answering its keys."""

from __future__ import annotations

import asyncio
import time

import pytest
from textual.widgets import Input

from mbxtui.core.models import OrgSettings
from mbxtui.tui.app import MbxApp
from tests.backends import query
from tests.integration.conftest import Org
from tests.integration.test_sync_incoming import deliver, message

pytestmark = pytest.mark.servers

DEADLINE = 60.0
QUIET_SECONDS = 4.0  # two passes' pauses of a processing console


def receipts(org: Org) -> int:
    return query(org.db_path, "SELECT count(*) FROM activity_receipt")[0][0]


def enabled_mailbox(org: Org, prefix: str) -> str:
    OrgSettings.update(tracking_users="all").execute()
    [login] = org.lab.add_users(1, prefix=prefix)
    org.profile("lab", verify_delivery=False)
    org.mailbox(login, "lab", outgoing_method="none")
    assert org.test_enable(login).passed == 1
    time.sleep(1.1)  # INTERNALDATE has whole seconds: the mail below arrives after enabling
    deliver(org, login, message("ann@outside.test", login, "Seen by the console"))
    return login


def run_console(org: Org, *, process: bool, until) -> tuple[MbxApp, list[int]]:
    """Open the console; every half second press ``/`` (the grid's filter) and escape, until
    ``until()`` or the deadline. Returns the app and how many processing passes it published."""
    app = MbxApp(org.admin, db_path=org.db_path, data_dir=org.secrets_dir, store=org.store, run_tests=False,
                 process=process)
    passes: list[int] = []

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            app.mailboxes_processed.subscribe(app, lambda summary: passes.append(len(summary.mailboxes)))
            deadline = time.monotonic() + DEADLINE
            while not until(passes) and time.monotonic() < deadline:
                await pilot.press("slash")
                await pilot.pause()
                assert isinstance(app.focused, Input), "the console answers its keys while it processes"
                await pilot.press("escape")
                await asyncio.sleep(0.5)

    asyncio.run(main())
    return app, passes


def test_a_console_opened_without_process_reads_no_mailbox(org):
    enabled_mailbox(org, "conquiet")
    started = time.monotonic()

    app, passes = run_console(org, process=False, until=lambda _: time.monotonic() - started > QUIET_SECONDS)

    assert passes == [] and receipts(org) == 0
    assert query(org.db_path, "SELECT count(*) FROM sync_status WHERE last_cycle_started IS NOT NULL")[0][0] == 0, \
        "no cycle even started"


def test_a_console_opened_with_process_records_new_mail_while_it_stays_responsive(org):
    login = enabled_mailbox(org, "conproc")

    app, passes = run_console(org, process=True, until=lambda _: receipts(org) == 1)

    assert receipts(org) == 1, f"not recorded in time ({len(passes)} passes)"
    assert query(org.db_path, "SELECT subject FROM email_activity")[0][0] == "Seen by the console"
    deadline = time.monotonic() + 15
    while query(org.db_path, "SELECT count(*) FROM sync_status WHERE worker IS NOT NULL")[0][0]:
        assert time.monotonic() < deadline, "the closed console's pass gave its claims back"
        time.sleep(0.1)
    assert query(org.db_path, "SELECT * FROM connection_lease") == []
