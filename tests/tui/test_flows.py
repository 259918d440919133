"""The console's flows from the keyboard at 80x24, over a real SQLite database and the encrypted-file
keyring: the mailbox grid's views, filter, marks and bulk actions (each confirmed with its count and
checked in the database), Test & Enable against the real mail lab, refusals by role, the mailbox
detail and edit form, the master password, help, the command palette, navigation and 16 colours."""

from __future__ import annotations

import time

import pytest
from textual import events
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import Input, Static

from mbxtui.core.jobs import queue as jobs
from mbxtui.core.models import EnablementJob, Mailbox
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import bulk, credentials, mailbox_views, mailboxes, profiles, users
from mbxtui.core.services.selection import Selection
from mbxtui.tui.app import MbxApp, default_theme
from mbxtui.tui.navigation import screens
from mbxtui.tui.screens.help import HelpScreen
from mbxtui.tui.screens.mailbox_detail import FIELDS, MailboxDetailScreen, MailboxEditScreen
from mbxtui.tui.screens.mailboxes import BulkEditScreen, MailboxesScreen
from mbxtui.tui.screens.unlock import UnlockScreen
from mbxtui.tui.widgets.confirm import ConfirmScreen
from mbxtui.tui.widgets.grid import MailboxGrid
from tests.core.support import file_bytes, snapshot
from tests.lab import MailLab
from tests.tui.conftest import (
    AUTH_FAILED_MAILBOX, AUTH_FAILED_TEXT, BRANCH, HEAD_OFFICE, Console, notifications, offered, screen_text,
    settle,
)

SCREENS = screens()

TEST_RUN_TIMEOUT = 30.0


def grid_of(app: MbxApp) -> MailboxGrid:
    return app.screen.query_one(MailboxGrid)


def status_of(app: MbxApp) -> str:
    return str(app.screen.query_one("#status", Static).render())


def emails_in(grid: MailboxGrid) -> list[str]:
    rows = mailbox_views.rows_by_ids(grid.actor, list(grid.mailbox_ids))
    return [rows[mailbox_id]["email"] for mailbox_id in grid.mailbox_ids]


async def put_cursor_on(pilot: Pilot, grid: MailboxGrid, email: str) -> None:
    """Move the cursor with the arrow keys to the row of ``email``."""
    target = emails_in(grid).index(email)
    for _ in range(len(grid.mailbox_ids)):
        if grid.cursor_row == target:
            return
        await pilot.press("down" if grid.cursor_row < target else "up")
    assert grid.cursor_row == target


async def confirm_shows(app: MbxApp, pilot: Pilot, expected: str) -> ConfirmScreen:
    await pilot.pause()
    confirm = app.screen
    assert isinstance(confirm, ConfirmScreen), f"no confirmation: {type(confirm).__name__}"
    assert expected in confirm.detail, confirm.detail
    return confirm


def stored(email: str) -> Mailbox:
    return Mailbox.get(Mailbox.email == email)


# --- views and filter ----------------------------------------------------------------------------

def test_digit_keys_switch_views_and_the_status_line_counts_each(console: Console):
    expected = {  # key: tab, view title, mailboxes in it (from the seeded organisation)
        "1": ("Active", "Active", 12), "2": ("All", "All", 13), "3": ("My", "My", 3), "4": ("Forward", "Forward", 1),
        "5": ("Pending", "Pending Approval", 3), "6": ("Failed", "Test and Enable Failed", 2),
        "7": ("Disabled", "Disabled", 6),
    }

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        for key, (tab, title, count) in expected.items():
            await pilot.press(key)
            assert grid.row_count == count, (title, emails_in(grid))
            assert status_of(app).startswith(f"{count} in {title} · 0 selected")
            tabs = app.screen.query_one("#views", Static).render()
            assert [str(tabs)[span.start:span.end] for span in tabs.spans if span.style == "reverse"] == \
                [f"{key} {tab}"], tabs  # the tab of the view is highlighted
        assert emails_in(grid) == ["dmitri@corp.test", "erin@corp.test", "farah@corp.test", "ivo@corp.test",
                                   "jade@corp.test", "orders@corp.test"]
        await pilot.press("6")
        assert emails_in(grid) == [AUTH_FAILED_MAILBOX, "hana@corp.test"]
        shown = screen_text(app)
        assert "2 in Test and Enable Failed" in shown and "Hana Sato" in shown and "Ann Archer" not in shown

    console.run(scenario)


def test_slash_filters_as_you_type(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        await pilot.press("2", "slash")
        box = app.screen.query_one("#filter", Input)
        assert box.has_focus and box.display
        counts = []
        for key in "hana":
            await pilot.press(key)
            counts.append(grid.row_count)
        # "h" and "ha" match several names and addresses; "han" is Hana Sato and Farah Khan.
        assert counts[0] > counts[2] == 2 and counts[3] == 1, counts
        assert counts == sorted(counts, reverse=True)
        assert emails_in(grid) == ["hana@corp.test"]
        assert status_of(app).startswith("1 in All matching 'hana'")
        await pilot.press("backspace")
        assert sorted(emails_in(grid)) == ["farah@corp.test", "hana@corp.test"]
        await pilot.press("escape")  # back to the grid, the filter stays
        assert grid.has_focus and grid.row_count == 2
        assert "Farah Khan" in screen_text(app) and "Ann Archer" not in screen_text(app)

    console.run(scenario)


def test_keys_typed_right_after_slash_go_to_the_filter(console: Console):
    """A fast typist or a paste: the keys arrive together, before the screen has painted the box."""
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        for key, character in (("slash", "/"), ("h", "h"), ("a", "a"), ("n", "n")):
            app.post_message(events.Key(key, character))
        await pilot.pause()
        assert app.screen.query_one("#filter", Input).value == "han"
        assert not grid.marked  # "a" would have marked every mailbox
        assert sorted(emails_in(grid)) == ["farah@corp.test", "hana@corp.test"]
        await pilot.press("slash")  # in the filter box "/" is text
        assert app.screen.query_one("#filter", Input).value == "han/"

    console.run(scenario)


# --- marks and bulk actions ------------------------------------------------------------------------

def test_space_marks_rows_and_approve_asks_with_the_count_then_approves_them(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        await pilot.press("5")
        assert emails_in(grid) == ["farah@corp.test", "jade@corp.test", "orders@corp.test"]
        await pilot.press("space", "down", "space")
        assert "2 selected" in status_of(app)
        before = snapshot()
        await pilot.press("A")
        await confirm_shows(app, pilot, "Approve the email address of 2 mailboxes?")
        await pilot.press("n")
        await settle(app, pilot)
        assert snapshot() == before  # cancelled: nothing written
        await pilot.press("A")
        await confirm_shows(app, pilot, "2 mailboxes")
        await pilot.press("y")
        await settle(app, pilot)
        assert isinstance(app.screen, MailboxesScreen)
        for email in ("farah@corp.test", "jade@corp.test"):
            assert (stored(email).approval, stored(email).approved_by) == ("approved", "admin")
        assert stored("orders@corp.test").approval == "pending"
        assert emails_in(grid) == ["orders@corp.test"]  # the Pending view was read again
        assert status_of(app).startswith("1 in Pending Approval · 0 selected")
        assert "2 of 2 changed" in notifications(app)

    console.run(scenario)


def test_mark_all_takes_the_whole_view_not_only_what_is_on_screen(console: Console):
    newcomers = [f"new{number:02}@corp.test" for number in range(25)]
    for number, email in enumerate(newcomers):
        users.add_user(console.admin, f"Newcomer {number:02}", email)  # pending, like every new user

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        await pilot.press("5")
        assert grid.row_count == 28 > grid.size.height  # more than the screen holds
        await pilot.press("a")
        assert "28 selected" in status_of(app)
        await pilot.press("A")
        await confirm_shows(app, pilot, "Approve the email address of 28 mailboxes?")
        # Between the marks and the answer: one more user arrives, pending, never shown.
        users.add_user(console.admin, "Late Comer", "late@corp.test")
        await pilot.press("y")
        await settle(app, pilot)
        still_pending = Mailbox.select(Mailbox.email).where(Mailbox.approval == "pending")
        assert [box.email for box in still_pending] == ["late@corp.test"]
        assert "28 of 28 changed" in notifications(app)
        assert grid.row_count == 1

    console.run(scenario)


def test_reject_acts_on_the_cursor_row_when_nothing_is_marked(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        await pilot.press("5")
        await put_cursor_on(pilot, grid, "jade@corp.test")
        await pilot.press("R")
        await confirm_shows(app, pilot, "Reject the email address of 1 mailbox?")
        await pilot.press("y")
        await settle(app, pilot)
        assert stored("jade@corp.test").approval == "rejected"
        assert [stored(e).approval for e in ("farah@corp.test", "orders@corp.test")] == ["pending", "pending"]
        assert "jade@corp.test" not in emails_in(grid)

    console.run(scenario)


def test_apply_defaults_gives_the_default_profile_and_queues_a_test_shown_in_the_status_line(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        for email in ("gus@corp.test", "hana@corp.test"):
            await put_cursor_on(pilot, grid, email)
            await pilot.press("space")
        await pilot.press("D")
        await confirm_shows(app, pilot, "Give 2 mailboxes the organisation's default profile and methods")
        await pilot.press("y")
        await settle(app, pilot)
        for email in ("gus@corp.test", "hana@corp.test"):
            assert mailboxes.show(console.admin, email).profile == HEAD_OFFICE
            assert stored(email).test_scheduled
        assert mailboxes.show(console.admin, "ivo@corp.test").profile == BRANCH
        assert EnablementJob.select().where(EnablementJob.state == "queued").count() == 2
        # No runner in this console: the batch stays queued and the status line says so.
        assert "Test & Enable: 0/2 done · 0 passed · 0 failed · 2 remaining" in status_of(app)
        assert "2 changed; Test & Enable queued" in notifications(app)

    console.run(scenario)


def test_bulk_edit_chooses_the_profile_in_a_modal_then_confirms(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        for email in ("ann@corp.test", "bob@corp.test"):
            await put_cursor_on(pilot, grid, email)
            await pilot.press("space")
        await pilot.press("e")
        await settle(app, pilot)  # the profiles to choose from arrive
        modal = app.screen
        assert isinstance(modal, BulkEditScreen)
        assert "Bulk edit of 2 mailbox(es)" in screen_text(app)
        for widget in modal.query("Select, Button"):
            assert widget.region.bottom <= 24, f"{widget} is off screen at 80x24"
        await pilot.press("enter")  # opens the profile choices: (leave as it is), Branch POP3, Head office
        await pilot.press("down", "enter")
        await pilot.press("ctrl+s")
        await confirm_shows(app, pilot, f"Set profile = {BRANCH} on 2 mailboxes?")
        await pilot.press("y")
        await settle(app, pilot)
        for email in ("ann@corp.test", "bob@corp.test"):
            row = mailboxes.show(console.admin, email)
            assert (row.profile, row.incoming_status) == (BRANCH, "not_run")  # a new profile needs a new test
        assert mailboxes.show(console.admin, "carla@corp.test").profile == HEAD_OFFICE

    console.run(scenario)


def test_bulk_edit_with_nothing_chosen_changes_nothing(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        before = snapshot()
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, BulkEditScreen)
        assert "Choose a profile, a method or a tracking to set" in notifications(app)
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, MailboxesScreen) and snapshot() == before

    console.run(scenario)


def test_deactivate_asks_then_deactivates_and_the_row_leaves_the_active_view(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        await put_cursor_on(pilot, grid, "erin@corp.test")
        await pilot.press("X")
        await confirm_shows(app, pilot, "Deactivate 1 mailbox?")
        await pilot.press("escape")
        await settle(app, pilot)
        assert stored("erin@corp.test").active
        await pilot.press("X")
        await confirm_shows(app, pilot, "Deactivate 1 mailbox?")
        await pilot.press("y")
        await settle(app, pilot)
        assert not stored("erin@corp.test").active
        assert "erin@corp.test" not in emails_in(grid) and grid.row_count == 11
        await pilot.press("2")
        assert "erin@corp.test" in emails_in(grid)

    console.run(scenario)


# --- Test & Enable against the mail lab ------------------------------------------------------------

LAB_PROFILE = "Lab"
SILENT_PROFILE = "Lab silent"
SILENT_MAILBOX = "silent@example.test"


def add_lab_mailboxes(console: Console, lab: MailLab) -> dict[str, str]:
    """Mailboxes on profiles pointing at the mail lab, with what their test should end in: two with
    their right passwords, one with a wrong one, and one whose server never answers (a transient
    failure, retried later), which keeps the batch running for a second."""
    admin = console.admin
    lab_side = {"incoming_host": lab.host, "incoming_tls": "implicit", "incoming_auth": "mailbox",
                "outgoing_host": lab.host, "outgoing_tls": "starttls", "outgoing_auth": "mailbox",
                "ca_file": lab.ca_file}
    profiles.create(admin, name=LAB_PROFILE, type="imap_smtp", incoming_port=lab.ports["imaps"],
                    outgoing_port=lab.ports["smtp"], verify_delivery=True, timeout_seconds=5, **lab_side)
    profiles.create(admin, name=SILENT_PROFILE, type="imap_smtp", incoming_port=lab.ports["silent"],
                    outgoing_port=lab.ports["silent"], timeout_seconds=1, **lab_side)
    outcomes = {"alice@example.test": "passed", "jose@example.test": "passed", "bob@example.test": "failed",
                SILENT_MAILBOX: "postponed"}
    for email in outcomes:
        users.add_user(admin, email.split("@")[0].capitalize(), email)
        mailboxes.edit(admin, email, profile=SILENT_PROFILE if email == SILENT_MAILBOX else LAB_PROFILE)
        password = "wrong password" if email == "bob@example.test" else lab.users.get(email, "unused")
        credentials.set_mailbox_secret(admin, email, password, console.store)
    bulk.approve(admin, Selection.of_emails(list(outcomes)))
    return outcomes


@pytest.mark.servers
def test_test_and_enable_runs_against_the_lab_while_the_console_stays_usable(console: Console, mail_lab: MailLab):
    outcomes = add_lab_mailboxes(console, mail_lab)
    statuses: list[str] = []

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        await pilot.press("slash", *"example.test", "enter")
        assert sorted(emails_in(grid)) == sorted(outcomes)
        before = screen_text(app)
        assert all("not run" in line for line in before.splitlines() if "@example.test" in line)
        await pilot.press("a", "t")
        await confirm_shows(app, pilot, "Test the connection of 4 mailboxes in the background")
        await pilot.press("y")

        # The console answers keys while the batch runs.
        deadline = time.monotonic() + TEST_RUN_TIMEOUT
        while not app.watched_batches:
            assert time.monotonic() < deadline, "the batch was never queued"
            await pilot.pause(0.02)
        batch = next(iter(app.watched_batches))
        await pilot.press("1")
        assert grid.view == "active" and jobs.batch_progress(batch).remaining > 0

        while app.watched_batches:
            statuses.append(status_of(app))
            assert time.monotonic() < deadline, f"Test & Enable still running: {jobs.batch_progress(batch)}"
            await pilot.pause(0.05)
        await pilot.pause()

        shown = {email: stored(email) for email in outcomes}
        assert {email: ("postponed" if box.postponed_until else box.overall_status) for email, box in shown.items()} \
            == {email: {"passed": "success", "failed": "failure"}.get(outcome, outcome)
                for email, outcome in outcomes.items()}
        assert shown["alice@example.test"].incoming_enabled and shown["alice@example.test"].outgoing_enabled
        assert (shown["bob@example.test"].last_error_code, shown["bob@example.test"].incoming_enabled) == \
            ("AUTH_FAILED", False)
        assert shown[SILENT_MAILBOX].last_error_code == "TIMEOUT"
        assert any(message["Subject"] == "Your mailbox is now connected"
                   for message in mail_lab.messages("alice@example.test"))

        rows = {word: line for line in screen_text(app).splitlines()
                for word in line.split() if "@example.test" in word}
        assert "passed  passed" in rows["alice@example.test"] and "passed  passed" in rows["jose@example.test"]
        assert "failed" in rows["bob@example.test"] and "failed" in rows[SILENT_MAILBOX]
        assert "2 passed, 1 failed, 1 postponed for retry" in notifications(app)
        assert "Test & Enable" not in status_of(app)  # the progress line goes once the batch is done

    console.run(scenario, run_tests=True)
    progress = [s for s in statuses if "Test & Enable: " in s]
    assert progress, statuses
    assert any("/4 done" in s and "remaining" in s for s in progress), progress


# --- roles ----------------------------------------------------------------------------------------

def test_a_system_admin_pressing_approve_is_told_the_role_needed_and_nothing_changes(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("5", "a")
        assert not offered(app.screen, "A") and offered(app.screen, "t")
        before = snapshot()
        await pilot.press("A")
        await settle(app, pilot)
        assert isinstance(app.screen, MailboxesScreen)
        assert "Approve: you are system_admin; this needs the role global_admin or service_admin" \
            in notifications(app)
        assert snapshot() == before

    console.run(scenario, "system")


def test_a_viewer_cannot_run_test_approve_or_edit_from_keys_or_palette(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        screen = app.screen
        for key in ("t", "A", "e", "R", "D", "X", "N"):
            assert not offered(screen, key), key
        assert offered(screen, "enter") and offered(screen, "slash")
        palette = [command.title for command in app.get_system_commands(screen)]
        assert "Open" in palette and not {"Approve", "Test & Enable", "Bulk edit"} & set(palette), palette
        before = snapshot()
        for key, action in (("t", "Test & Enable"), ("A", "Approve"), ("e", "Bulk edit")):
            await pilot.press(key)
            await settle(app, pilot)
            assert app.screen is screen
            assert f"{action}: you are viewer; this needs the role global_admin or service_admin" + \
                ("" if key == "A" else " or system_admin") in notifications(app)
        assert snapshot() == before

    console.run(scenario, "viewer")


# --- mailbox detail and edit ------------------------------------------------------------------------

def test_enter_opens_the_mailbox_with_every_field_its_test_steps_alerts_and_history(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await put_cursor_on(pilot, grid_of(app), AUTH_FAILED_MAILBOX)
        await pilot.press("enter")
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, MailboxDetailScreen)
        assert "Mailbox Bob Baker <bob@corp.test> · admin (global_admin)" in str(
            detail.query_one("#title", Static).render())
        fields = str(detail.query_one("#fields", Static).render())
        titles = [line.split("  ")[0] for line in fields.splitlines()]
        assert titles == [title for _, title in FIELDS]
        for value in ("Bob Baker", HEAD_OFFICE, "AUTH_FAILED", AUTH_FAILED_TEXT, "2024-05-06 11:00:00"):
            assert value in fields
        steps = str(detail.query_one("#test", Static).render())
        assert "Last test: failed on 2024-05-06 09:00:00 (attempt 1)" in steps
        assert "incoming (imap): FAILED" in steps and "ERR authenticate" in steps and "501.2 ms" in steps
        assert "AUTH_FAILED (permanent)" in steps and "outgoing (smtp): passed" in steps
        assert "incoming test of bob@corp.test failed" in str(detail.query_one("#alerts", Static).render())
        history = str(detail.query_one("#history", Static).render())
        assert "admin: approved the email address of 9 mailbox(es)\n" \
               "      approval: pending → approved; approved_by: - → admin" in history
        assert "admin: created the mailbox of user bob@corp.test" in history

        scroller = detail.query_one("#detail")
        assert scroller.max_scroll_y > 0  # at 80x24 the history is below the fold
        await pilot.press("end")
        await pilot.pause()
        assert scroller.scroll_y == scroller.max_scroll_y and "History" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, MailboxesScreen)

    console.run(scenario)


async def open_edit_form(app: MbxApp, pilot: Pilot, email: str) -> MailboxEditScreen:
    await put_cursor_on(pilot, grid_of(app), email)
    await pilot.press("enter", "e")
    await pilot.pause()
    form = app.screen
    assert isinstance(form, MailboxEditScreen)
    return form


async def type_into(pilot: Pilot, box: Input, text: str) -> None:
    box.focus()
    box.value = ""
    await pilot.press(*text)


def test_edit_form_shows_a_bad_address_beside_the_field_and_writes_nothing(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        form = await open_edit_form(app, pilot, "carla@corp.test")
        await type_into(pilot, form.query_one("#email", Input), "carla at corp")
        before = snapshot()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is form
        error = form.query_one("#error-email", Static)
        assert error.display and "carla at corp" in str(error.render())
        assert error.region.y == form.query_one("#email", Input).region.y + 1  # on the line under the field
        assert form.query_one("#email", Input).has_focus
        assert snapshot() == before

    console.run(scenario)


def test_an_unsaved_edit_asks_before_leaving(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        form = await open_edit_form(app, pilot, "carla@corp.test")
        await type_into(pilot, form.query_one("#name", Input), "Carla Díaz-Ruiz")
        before = snapshot()
        await pilot.press("escape")
        await confirm_shows(app, pilot, "Leave this form and lose your changes?")
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is form and form.query_one("#name", Input).value == "Carla Díaz-Ruiz"
        await pilot.press("f2")  # leaving by another screen's key asks too
        await confirm_shows(app, pilot, "lose your changes")
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, MailboxesScreen)
        assert snapshot() == before and stored("carla@corp.test").name == "Carla Diaz"

    console.run(scenario)


def test_the_password_is_masked_and_write_only(console: Console):
    secret = "Zq7-write-only-pässword"

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        form = await open_edit_form(app, pilot, "carla@corp.test")
        assert "Password (not set)" in screen_text(app)
        box = form.query_one("#password", Input)
        await type_into(pilot, box, secret)
        assert box.password and box.value == secret
        assert secret not in screen_text(app) and "•" * 8 in screen_text(app)
        await pilot.press("ctrl+s")
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, MailboxDetailScreen)
        assert "Saved" in notifications(app)
        assert "Password                        set" in str(detail.query_one("#fields", Static).render())
        assert secret not in screen_text(app)
        await pilot.press("e")  # the form opens again with the password empty: it is never read back
        await pilot.pause()
        assert app.screen.query_one("#password", Input).value == ""
        assert "Password (set)" in screen_text(app) and secret not in screen_text(app)

    console.run(scenario)
    carla = stored("carla@corp.test")
    assert carla.password_set
    assert credentials.mailbox_secret(console.store, carla.id).reveal() == secret
    on_disk = file_bytes(console.db_path)
    assert secret.encode() not in on_disk and secret.encode("utf-16-le") not in on_disk


# --- the master password ----------------------------------------------------------------------------

def test_the_master_password_screen_unlocks_an_existing_secrets_file(console: Console):
    SecretStore.open(console.data_dir).unlock("the right one")  # the file exists from an earlier run

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.pause()
        unlock = app.screen
        assert isinstance(unlock, UnlockScreen)
        assert "No OS keyring is available. Enter the master password of" in screen_text(app)
        assert app.store.needs_master_password
        box = unlock.query_one("#master", Input)
        assert box.password
        await pilot.press(*"the wrong one", "enter")
        await settle(app, pilot)  # the key derivation runs in a worker
        assert "Wrong master password" in str(unlock.query_one("#error", Static).render())
        assert app.screen is unlock and box.value == ""
        await pilot.press(*"the right one")
        assert "the right one" not in screen_text(app)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, MailboxesScreen)
        assert not app.store.needs_master_password

    app = console.run(scenario, store=None)
    assert app.store.backend_name.startswith("encrypted file")


def test_the_master_password_is_chosen_twice_for_a_new_secrets_file(console: Console):
    store = SecretStore.open(console.data_dir)  # no OS keyring, no MBXTUI_MASTER_PASSWORD: locked
    assert store.needs_master_password and store.creating_new_file

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.pause()
        unlock = app.screen
        assert isinstance(unlock, UnlockScreen)
        assert "master password you choose now" in screen_text(app)
        await pilot.press(*"first choice", "enter", *"second choice", "enter")
        await pilot.pause()
        assert "The two entries differ" in str(unlock.query_one("#error", Static).render())
        await pilot.press(*"agreed", "enter")
        assert "Enter the same master password again" in str(unlock.query_one("#error", Static).render())
        await pilot.press(*"agreed", "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, MailboxesScreen)

    console.run(scenario, store=store)
    assert not store.needs_master_password
    reopened = SecretStore.open(console.data_dir)
    reopened.unlock("agreed")  # the file was created with the password chosen


# --- help, palette, navigation ------------------------------------------------------------------------

def test_help_lists_the_keys_of_the_screen_it_was_opened_from(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one(Static).render())
        assert text.startswith("Keys of Mailboxes")
        for key, description in (("A", "Approve"), ("R", "Reject"), ("t", "Test & Enable"), ("D", "Apply defaults"),
                                 ("e", "Bulk edit"), ("X", "Deactivate"), ("space", "Mark"), ("a", "Mark all"),
                                 ("/", "Filter"), ("f3", "Profiles")):
            assert any(line.split(None, 1)[:1] == [key] and line.split(None, 1)[1].startswith(description)
                       for line in text.splitlines()), (key, text)
        assert "Approve  (not allowed for your role)" in text
        lines = text.splitlines()  # the screen's actions come before the grid's cursor keys
        assert lines.index("Where the cursor is") > max(i for i, line in enumerate(lines) if "Bulk edit" in line)
        await pilot.press("escape")
        await put_cursor_on(pilot, grid_of(app), "ann@corp.test")
        await pilot.press("enter", "f1")
        await pilot.pause()
        text = str(app.screen.query_one(Static).render())
        assert text.startswith("Keys of Mailbox\n") and "Edit" in text and "Mark all" not in text
        assert "(not allowed for your role)" in text  # the viewer may approve nothing

    console.run(scenario, "viewer")


def test_the_command_palette_offers_the_screen_actions_and_runs_them(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid = grid_of(app)
        await pilot.press("5")
        await pilot.press("ctrl+p")
        await pilot.pause()
        palette = app.screen
        assert isinstance(palette, CommandPalette)
        await pilot.press(*"approve")
        deadline = time.monotonic() + 5
        while "key: A" not in screen_text(app):
            assert time.monotonic() < deadline, screen_text(app)
            await pilot.pause(0.05)
        await pilot.press("enter")
        await confirm_shows(app, pilot, "Approve the email address of 1 mailbox?")
        await pilot.press("y")
        await settle(app, pilot)
        assert stored("farah@corp.test").approval == "approved" and grid.row_count == 2

    console.run(scenario)


def test_function_keys_go_to_each_screen_and_f2_comes_back(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        grid_screen = app.screen
        for key, name in (("f3", "profiles"), ("f4", "alerts"), ("f5", "failed"), ("f6", "settings"),
                          ("f7", "people"), ("f8", "operators"), ("f9", "activities")):
            await pilot.press(key)
            await settle(app, pilot)
            assert isinstance(app.screen, SCREENS[name]), (key, app.screen)
        await pilot.press("f4")  # already open further down: back to it, not a second one
        await settle(app, pilot)
        kinds = [type(screen) for screen in app.screen_stack]
        assert isinstance(app.screen, SCREENS["alerts"]) and kinds.count(SCREENS["alerts"]) == 1, kinds
        await pilot.press("f2")
        await pilot.pause()
        assert app.screen is grid_screen

    console.run(scenario)


# --- 16 colours and NO_COLOR ----------------------------------------------------------------------------

def test_the_console_runs_with_the_ansi_theme_and_no_color(console: Console, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MBXTUI_THEME", "ansi-dark")
    monkeypatch.setenv("NO_COLOR", "1")

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        assert app.theme == "ansi-dark" and app.no_color
        await pilot.press("space", "down")
        for key in ("f3", "f4", "f5", "f6", "f7", "f8", "f2", "enter"):
            await pilot.press(key)
            await settle(app, pilot)
        assert isinstance(app.screen, MailboxDetailScreen)
        assert "Mailbox Bob Baker <bob@corp.test>" in screen_text(app)

    console.run(scenario)


@pytest.mark.parametrize("term, colorterm, expected", [
    ("linux", None, "ansi-dark"),
    ("xterm", None, "ansi-dark"),
    ("xterm-256color", "truecolor", "textual-dark"),
])
def test_sixteen_colour_terminals_get_the_ansi_theme(monkeypatch: pytest.MonkeyPatch, term: str,
                                                     colorterm: str | None, expected: str):
    monkeypatch.delenv("MBXTUI_THEME", raising=False)
    monkeypatch.setenv("TERM", term)
    if colorterm is None:
        monkeypatch.delenv("COLORTERM", raising=False)
    else:
        monkeypatch.setenv("COLORTERM", colorterm)
    assert default_theme() == expected
