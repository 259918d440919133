"""Consoles see each other's changes: a change committed on another connection or by another
process (another console, a worker, the command line) shows in the grid within a bounded wait, with
the cursor and marks kept, and the console's watcher is gone once it quits."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from textual.pilot import Pilot

from mbxtui.core.services import bulk, mailboxes
from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens.help import HelpScreen
from mbxtui.tui.widgets.grid import MailboxGrid
from tests.backends import execute
from tests.tui.conftest import LOGINS

REPO = Path(__file__).resolve().parents[2]
# Another process approving a mailbox through the services, as another console or the CLI would.
APPROVE_ELSEWHERE = """
import sys
from mbxtui.core import db
from mbxtui.core.services import bulk, mailboxes, operators
from mbxtui.core.services.selection import Selection
db.open_database(sys.argv[1])
bulk.approve(operators.current_actor(login=sys.argv[2]), Selection.of_emails([sys.argv[3]]))
"""

DEADLINE_SECONDS = 10.0


def grid_of(app: MbxApp) -> MailboxGrid:
    return app.screen.query_one(MailboxGrid)


def shown_line(grid: MailboxGrid, position: int) -> str:
    return grid.render_line(1 + position - int(grid.scroll_y)).text


async def until(pilot: Pilot, condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE_SECONDS} s: {what}"
        await pilot.pause(0.05)


def mailbox_id(email: str) -> int:
    return mailboxes.get(email).id


def watchers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "mbxtui-changes"]


def test_a_rename_elsewhere_moves_the_row_and_keeps_cursor_and_marks(console):
    bob, carla = mailbox_id("bob@corp.test"), mailbox_id("carla@corp.test")

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        await pilot.press("down", "space", "down", "space")  # marks the second and third rows
        marked, cursor = set(grid.marked), grid.cursor_id
        assert bob not in grid.mailbox_ids[:1] and "Aaron Elsewhere" not in shown_line(grid, 0)

        await asyncio.to_thread(execute, console.db_path,
                                "UPDATE mailbox SET name = 'Aaron Elsewhere' WHERE id = ?", [bob])

        await until(pilot, lambda: grid.mailbox_ids[0] == bob, "bob's mailbox sorted first")
        assert "Aaron Elsewhere" in shown_line(grid, 0)
        assert set(grid.marked) == marked and grid.cursor_id == cursor

    console.run(scenario)
    assert not watchers()


def test_a_mailbox_leaving_the_view_elsewhere_drops_its_mark(console):
    ann = mailbox_id("ann@corp.test")

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        await pilot.press("2")  # All mailboxes; then Active
        await pilot.press("1")
        total = grid.row_count
        await pilot.press("space")
        assert grid.cursor_id == ann and set(grid.marked) == {ann}

        await asyncio.to_thread(execute, console.db_path, "UPDATE mailbox SET active = 0 WHERE id = ?", [ann])

        await until(pilot, lambda: grid.row_count == total - 1, "ann's mailbox gone from the Active view")
        assert ann not in grid.mailbox_ids and not grid.marked

    console.run(scenario)


def test_a_change_while_another_screen_is_in_front_shows_when_the_grid_comes_back(console):
    bob = mailbox_id("bob@corp.test")

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await asyncio.to_thread(execute, console.db_path,
                                "UPDATE mailbox SET name = 'Aaron Elsewhere' WHERE id = ?", [bob])
        await until(pilot, lambda: grid.screen._changed_meanwhile, "the change noticed behind the help")
        assert grid.mailbox_ids[0] != bob  # not reloaded under the screen in front
        await pilot.press("escape")
        await until(pilot, lambda: grid.mailbox_ids[0] == bob, "bob's mailbox sorted first")

    console.run(scenario)


def test_an_approval_by_another_process_leaves_the_pending_view(console):
    jade = mailbox_id("jade@corp.test")

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        await pilot.press("5")
        total = grid.row_count
        assert jade in grid.mailbox_ids

        approved = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", APPROVE_ELSEWHERE, str(console.db_path), LOGINS["admin"],
                             "jade@corp.test"],
            capture_output=True, text=True, timeout=60, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        assert approved.returncode == 0, approved.stderr

        await until(pilot, lambda: grid.row_count == total - 1, "jade's mailbox gone from Pending Approval")
        assert jade not in grid.mailbox_ids

    console.run(scenario)


def test_a_large_marked_view_shows_changed_cells_and_keeps_its_marks_until_ctrl_r(console, monkeypatch):
    from mbxtui.tui.screens import mailboxes as mailboxes_screen

    # A view "too large" to re-read under its marks: here, anything above one row.
    monkeypatch.setattr(mailboxes_screen, "AUTO_RELOAD_MOST_MARKED_ROWS", 1)
    bob = mailbox_id("bob@corp.test")

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        await pilot.press("a")
        marked, order = set(grid.marked), list(grid.mailbox_ids)
        position = order.index(bob)

        await asyncio.to_thread(execute, console.db_path,
                                "UPDATE mailbox SET name = 'Aaron Elsewhere' WHERE id = ?", [bob])

        await until(pilot, lambda: "Aaron Elsewhere" in shown_line(grid, position), "bob's new name in his row")
        assert list(grid.mailbox_ids) == order and set(grid.marked) == marked  # not re-read under the marks
        assert "changed elsewhere: ctrl+r reads it again" in str(app.screen.query_one("#status").render())
        await pilot.press("ctrl+r")
        assert grid.mailbox_ids[0] == bob and set(grid.marked) == marked
        assert "changed elsewhere" not in str(app.screen.query_one("#status").render())

    console.run(scenario)
