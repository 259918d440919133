"""The real console, driven on a seeded database whose names, alerts, errors and history hold hostile
text (markup, braces, percent signs, escape sequences, control characters, right-to-left text,
combining marks, emoji, lone surrogates, very long text): every screen is visited and every input
on it gets each kind of hostile string (and is saved where the screen saves), then Hypothesis
presses random keys (the console's own bindings, navigation, esc, ?, enter, tab, letters) and
pastes hostile strings wherever the focus is, for thousands of steps in all.

Whatever happens, the console keeps running (no exception; quitting on purpose is allowed and
counted) and the screen never holds a raw control character. The run is bounded: a fixed seed
(``derandomize``), a fixed number of examples and of steps in each, no shrinking (a failure is
reported as found); ``MBXTUI_FUZZ_EXAMPLES=200`` searches longer."""

from __future__ import annotations

import asyncio
import os
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from textual import events
from textual.keys import REPLACED_KEYS, _character_to_key, _get_unicode_name_from_key
from textual.pilot import Pilot
from textual.widgets import Input

from mbxtui.core import db
from mbxtui.core.display import INVISIBLE
from mbxtui.core.models import database
from mbxtui.core.services import profiles
from mbxtui.tui.app import MbxApp
from mbxtui.tui.navigation import NAVIGATION
from mbxtui.tui.screens.alerts import AlertsScreen
from mbxtui.tui.screens.failed import FailedScreen
from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen
from mbxtui.tui.screens.mailboxes import MailboxesScreen
from mbxtui.tui.screens.operators import OperatorsScreen
from mbxtui.tui.screens.people import PeopleScreen
from mbxtui.tui.screens.profiles import ProfileDetailScreen, ProfilesScreen
from mbxtui.tui.widgets.grid import MailboxGrid
from tests.tui.conftest import (  # noqa: F401  (fixtures)
    BRANCH, HEAD_OFFICE, Console, console, console_env, screen_text, settle, unlocked_store,
)

UNSAFE = frozenset(INVISIBLE) - {ord("\n")}

HOSTILE = (
    "[/]", "[b]bold[/b]", "[", "]", "[@click=app.quit]quit[/]", "[link=https://evil.test]x[/link]",
    "[red on $accent]x", "$accent", "{0}", "{north}", "{count} {noun}", "%s", "%(x)s %d", "100%",
    "\x1b[2J\x1b]0;pwned\x07", "\x1b[31mred", "\x9b31m\x9d0;pwned\x9c", "a\x00b", "\x07\x08\x7f", "cr\rlf\nx",
    "tab\there", "\u202egnp.exe", "\u2066x\u2069", "مرحبا بالعالم", "שלום", "e\u0301\u0301\u0301",
    "Z\u0337\u0322a\u0336l\u0335g\u0334o", "👨\u200d👩\u200d👧🏴\u200d☠️", "\ufeffbom", "a\ud800b", "\\", ":smile:",
    "x" * 10_000, "[" * 500 + "/" + "]" * 500,
)
# What the tour types into every input of every screen: each hostile kind, several in one string
# (the random keys below paste each string of HOSTILE alone).
TOUR_TEXTS = (
    "[/]", "[b]bold[/b] [@click=app.quit]q[/] [link=https://evil.test]x[/link] $accent", "{0} {north} {count}",
    "%s %(x)s %d 100%", "\x1b[2J\x1b]0;pwned\x07\x9b31m\x9d0;pwned\x9c a\x00b \x07\x08\x7f cr\rlf\nx\ttab",
    "\u202egnp.exe \u2066x\u2069 مرحبا e\u0301\u0301 Z\u0337\u0322a 👨\u200d👩\u200d👧 \ufeff a\ud800b \\ :smile:",
    "x" * 10_000, "[" * 500 + "/" + "]" * 500,
)
# Names the services accept (markup, braces, percent signs, scripts) and names put in with SQL
# (control characters: what another tool or an older version could have left).
ACCEPTED_PROFILE_NAMES = ("[b]Sales[/b] {north} 100%s", "[/] [@click=app.quit]q[/]")
STORED = "\x1b[2J\x1b]0;pwned\x07 [/] {0} %s \u202eevil \x9b31m"

YIELDS_PER_STEP = 5

# Every key the console binds, and keys that move around; never the keys that quit.
QUIT_KEYS = {"ctrl+q", "ctrl+c"}
MOVES = ("escape", "enter", "tab", "shift+tab", "up", "down", "left", "right", "pageup", "pagedown", "home",
         "end", "space", "backspace", "question_mark", "slash", "ctrl+p", "ctrl+s", "ctrl+r", "y", "n")
LETTERS = tuple("abcdeinpqrstuvxyADNRTX0123456789")


def bound_keys() -> set[str]:
    """The keys of every binding of the console: the app's, each screen's, the grid's, the dialogs'."""
    from mbxtui.tui.screens import (alerts, failed, forms, help, listing, mailbox_detail, mailboxes, operators,
                                    people, profiles as profile_screens, settings as settings_screen, unlock)
    from mbxtui.tui.widgets import confirm, grid

    keys: set[str] = set()
    for module in (alerts, failed, forms, help, listing, mailbox_detail, mailboxes, operators, people,
                   profile_screens, settings_screen, unlock, confirm, grid):
        for holder in [MbxApp, *(value for value in vars(module).values() if isinstance(value, type))]:
            for binding in getattr(holder, "BINDINGS", []):
                keys.update(part.strip() for part in binding.key.split(","))
    return keys - QUIT_KEYS


KEYS = sorted(bound_keys() | set(MOVES) | set(LETTERS))


def seed_hostile_data(console: Console) -> None:
    """Hostile names, alerts, errors, test steps and history in the seeded organisation."""
    for name in ACCEPTED_PROFILE_NAMES:
        profiles.create(console.admin, name=name, type="imap_smtp", incoming_host="imap.corp.test",
                        incoming_port=993, incoming_tls="implicit", incoming_auth="mailbox",
                        outgoing_host="smtp.corp.test", outgoing_port=587, outgoing_tls="starttls",
                        outgoing_auth="mailbox")
    long_text = "[/] {0} " * 500 + "\x1b[2J"
    with db.write_transaction():
        database.execute_sql("UPDATE profile SET name = ? WHERE name = ?", [BRANCH + STORED, BRANCH])
        database.execute_sql('UPDATE "user" SET name = name || ? WHERE id % 2 = 0', [STORED])
        database.execute_sql("UPDATE queue SET name = name || ?", [" [b]{0}[/b] %s"])
        database.execute_sql("UPDATE mailbox SET name = name || ?, last_error_text = ? WHERE id % 3 = 0",
                             [STORED, long_text])
        database.execute_sql("UPDATE mailbox SET last_error_code = ? WHERE last_error_code IS NOT NULL",
                             ["AUTH[/]\x1b[5m{0}"])
        database.execute_sql("UPDATE alert SET text = text || ?, code = code || ?", [STORED, "[/]"])
        database.execute_sql("UPDATE operator SET login = ? WHERE login = 'vic'", ["vic[/]\x1b[2J{0}"])
        database.execute_sql("UPDATE audit_entry SET summary = summary || ?, login = login || ?",
                             [STORED, "[/]\x9b"])
        database.execute_sql("UPDATE test_job SET result = replace(result, 'LOGIN refused', ?)",
                             ["LOGIN refused [/] {0} %s \\u001b[2J"])
        database.execute_sql(  # processing's view of them: the Sync monitor and the detail's sync status
            "INSERT INTO sync_status (mailbox_id, state, items_last_cycle, items_total, unresolved_total, "
            "last_error_code, last_error_text) SELECT id, 'waiting', 0, 0, 0, ?, ? FROM mailbox WHERE id % 2 = 0",
            ["TIMEOUT[/]\x1b[5m{0}", long_text])


@pytest.fixture
def fuzzed_console(console: Console) -> Console:
    seed_hostile_data(console)
    return console


def assert_console_alive(app: MbxApp, where: str) -> None:
    assert app._exception is None, f"{where}: {app._exception!r}"
    assert app.return_code in (None, 0), f"{where}: exit status {app.return_code}"


def assert_screen_harmless(app: MbxApp, where: str) -> None:
    """No raw control character on the screen, apart from what the operator typed into an input
    (an input shows what it holds; the services refuse it on save)."""
    typed = "".join(widget.value for widget in app.screen.query(Input))
    text = screen_text(app).replace("\n", "")
    raw = {code for code in UNSAFE.intersection(map(ord, text)) if chr(code) not in typed}
    assert not raw, f"{where}: raw {sorted(raw)} on the screen:\n{screen_text(app)}"


async def yield_to_the_app() -> None:
    """Let the app take the events sent so far (``wait_for_idle`` would sleep 20 ms at least)."""
    for _ in range(YIELDS_PER_STEP):
        await asyncio.sleep(0)


async def press(app: MbxApp, key: str) -> None:
    """One key, as the terminal sends it (what ``Pilot.press`` does, without its pauses)."""
    if len(key) == 1 and not key.isalnum():
        key = _character_to_key(key)
    try:
        character = unicodedata.lookup(_get_unicode_name_from_key(REPLACED_KEYS.get(key, key)))
    except KeyError:
        character = key if len(key) == 1 else None
    event = events.Key(key, character)
    event.set_sender(app)
    app._driver.send_message(event)
    await yield_to_the_app()


async def paste(app: MbxApp, text: str) -> None:
    """``text`` pasted where the focus is (a bracketed paste from the terminal)."""
    event = events.Paste(text)
    event.set_sender(app)
    app._driver.send_message(event)
    await yield_to_the_app()


async def fill_every_input(app: MbxApp, pilot: Pilot, text: str) -> int:
    """Each input of the screen emptied, then ``text`` pasted into it (as the terminal sends a paste to
    the focused input); returns how many there are."""
    inputs = [widget for widget in app.screen.query(Input) if widget.display and not widget.disabled]
    for widget in inputs:
        widget.value = ""
        widget.post_message(events.Paste(text))
    await yield_to_the_app()
    return len(inputs)


# --- every screen, every input, every hostile string ---------------------------------------------

# How to reach each screen from the mailbox grid, and whether ctrl+s saves what it shows.
TOUR: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("the mailbox grid", ("f2",), False),
    ("the grid's filter", ("f2", "slash"), False),
    ("the mailbox detail", ("f2", "enter"), False),
    ("the mailbox edit form", ("f2", "enter", "e"), True),
    ("the bulk edit dialog", ("f2", "e"), False),
    ("the new forward mailbox form", ("f2", "N"), True),
    ("the profiles", ("f3",), False),
    ("the profiles' filterless list, a profile's settings", ("f3", "enter", "1"), False),
    ("a profile's mailboxes", ("f3", "enter", "2"), False),
    ("a profile's alerts", ("f3", "enter", "3"), False),
    ("the new profile form", ("f3", "a"), True),
    ("the profile edit form", ("f3", "down", "e"), True),
    ("the alerts wall", ("f4", "slash"), False),
    ("Test and Enable Failed", ("f5", "slash"), False),
    ("a failed mailbox's edit form", ("f5", "e"), True),
    ("the settings", ("f6",), True),
    ("the users", ("f7", "slash"), False),
    ("the new user form", ("f7", "a"), True),
    ("the new queue form", ("f7", "2", "a"), True),
    ("the operators", ("f8",), False),
    ("the new operator form", ("f8", "a"), True),
    ("an operator's role", ("f8", "down", "r"), True),
    ("the sync monitor", ("f10",), False),
    ("the help", ("f2", "question_mark"), False),
    ("the command palette", ("f2", "ctrl+p"), False),
)


async def back_to_the_grid(app: MbxApp, pilot: Pilot) -> None:
    """Escape until the mailbox grid is in front, discarding edits."""
    for _ in range(8):
        if isinstance(app.screen, MailboxesScreen) and app.screen.query_one(MailboxGrid).has_focus:
            return
        await pilot.press("escape")
        await settle(app, pilot)
        if type(app.screen).__name__ == "ConfirmScreen":
            await pilot.press("y")  # "Leave this form and lose your changes?"
            await settle(app, pilot)
    await pilot.press("f2")
    await settle(app, pilot)


def test_every_screen_shows_hostile_data_and_takes_hostile_text_in_every_input(console: Console):
    seed_hostile_data(console)
    filled: dict[str, int] = {}

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await settle(app, pilot)
        for where, keys, saves in TOUR:
            await back_to_the_grid(app, pilot)
            for key in keys:
                await pilot.press(key)
                await settle(app, pilot)
            assert_console_alive(app, where)
            assert_screen_harmless(app, where)
            for text in TOUR_TEXTS:
                filled[where] = await fill_every_input(app, pilot, text)
                if saves:
                    await press(app, "ctrl+s")
                await settle(app, pilot)
                assert_console_alive(app, f"{where}, given {text[:40]!r}")
                assert_screen_harmless(app, f"{where}, given {text[:40]!r}")

    console.run(scenario, size=(120, 36))
    assert all(filled.get(where) for where in ("the grid's filter", "the mailbox edit form", "the new profile form",
                                               "the settings", "the new user form", "the new operator form",
                                               "the alerts wall", "the command palette")), filled


# --- random keys and hostile text, anywhere ------------------------------------------------------

STEP = st.one_of(
    st.sampled_from(KEYS).map(lambda key: ("key", key)),
    st.sampled_from(tuple(d.key for d in NAVIGATION)).map(lambda key: ("key", key)),
    # A screen, then the record under the cursor opened: the way into the detail screens.
    st.sampled_from(tuple(d.key for d in NAVIGATION)).map(lambda key: ("type", (key, "enter"))),
    st.sampled_from(HOSTILE).map(lambda text: ("paste", text)),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=4).map(lambda text: ("type", text)),
)
EXAMPLES = int(os.environ.get("MBXTUI_FUZZ_EXAMPLES", "10"))  # more for a longer search
STEPS = 200  # at most, per example: 10 x 200 = 2,000 steps; at least 10 x 150 = 1,500
CHECK_EVERY = 20  # steps between two looks at the console (each waits for it to settle)
ran = {"steps": 0, "examples": 0, "quit": 0, "screens": set()}


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          phases=(Phase.explicit, Phase.generate),  # shrinking a run of the console takes minutes
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(steps=st.lists(STEP, min_size=STEPS * 3 // 4, max_size=STEPS))
def test_random_keys_and_hostile_text_never_crash_the_console(fuzzed_console: Console, steps):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        for index, (kind, value) in enumerate(steps):
            if not app.is_running:
                ran["quit"] += 1  # the palette's "Quit" chosen, say: leaving on purpose is no crash
                return
            if kind == "key":
                await press(app, value)
            elif kind == "paste":
                await paste(app, value)
            else:  # several keys in a row: characters, or key names
                for key in value:
                    await press(app, key)
            ran["steps"] += 1
            ran["screens"].add(type(app.screen).__name__)
            if index % CHECK_EVERY == CHECK_EVERY - 1:
                await settle(app, pilot)
                assert_console_alive(app, f"after {steps[:index + 1]!r}")
                assert_screen_harmless(app, f"after {steps[:index + 1]!r}")
        if app.is_running:
            await settle(app, pilot)
            assert_screen_harmless(app, f"after {steps!r}")

    app = fuzzed_console.run(scenario, size=(100, 30))
    assert_console_alive(app, f"after {steps!r}")
    ran["examples"] += 1


def test_the_random_keys_reached_every_screen_in_thousands_of_steps():
    """Run after the property above (pytest keeps the file's order): what it covered."""
    if not ran["examples"]:
        return  # the property was deselected
    assert ran["steps"] >= 1_500, ran
    expected = {cls.__name__ for cls in (MailboxesScreen, MailboxDetailScreen, ProfilesScreen, ProfileDetailScreen,
                                          AlertsScreen, FailedScreen, PeopleScreen, OperatorsScreen)}
    assert expected <= ran["screens"], (expected - ran["screens"], ran)

