"""The operator's keymap file (``keymap.toml`` in ``MBXTUI_CONFIG_DIR``) rebinds the console's keys
by binding id; the help shows the keys in force; a bad file is refused with the line at fault and
the default keys stay."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from mbxtui.tui.app import MbxApp
from mbxtui.tui.keymap import binding_ids, read_keymap
from mbxtui.tui.navigation import screens
from mbxtui.tui.screens.help import HelpScreen
from mbxtui.tui.screens.mailboxes import MailboxesScreen
from tests.tui.conftest import Console, notifications, screen_text, settle

SCREENS = screens()


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "config"
    folder.mkdir()
    monkeypatch.setenv("MBXTUI_CONFIG_DIR", str(folder))
    return folder


def write_keymap(config_dir: Path, text: str) -> None:
    (config_dir / "keymap.toml").write_text(text, encoding="utf-8")


def test_a_keymap_moves_the_alerts_screen_to_another_key_and_the_help_shows_it(console: Console, config_dir: Path):
    write_keymap(config_dir, '# my keys\ngo-alerts = "f12"\n"mailboxes-approve" = "ctrl+a"\n')

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        assert not [n for n in app._notifications if n.title == "Keymap not used"]
        await pilot.press("f4")  # no longer the alerts key
        await settle(app, pilot)
        assert isinstance(app.screen, MailboxesScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = [line.split(None, 1) for line in str(app.screen.query_one(Static).render()).splitlines()]
        assert ["f12", "Alerts"] in keys and ["f4", "Alerts"] not in keys, keys
        assert ["^a", "Approve"] in keys and ["A", "Approve"] not in keys, keys
        await pilot.press("escape")
        await pilot.press("f12")
        await settle(app, pilot)
        assert isinstance(app.screen, SCREENS["alerts"])
        assert "AUTH_FAILED" in screen_text(app)

    console.run(scenario)


@pytest.mark.parametrize("text, line, what", [
    ('go-alerts = "f12"\ngo-profiles = \n', 2, "not TOML"),
    ('go-alerts = "f12"\n\ngo-nowhere = "f10"\n', 3, "go-nowhere"),
    ('go-alerts = "f12"\n[grid]\ntoggle_mark = 5\n', 3, "grid.toggle_mark"),
])
def test_a_bad_keymap_is_refused_naming_its_line_and_the_defaults_stay(console: Console, config_dir: Path,
                                                                       text: str, line: int, what: str):
    write_keymap(config_dir, text)

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        refused = [n.message for n in app._notifications if n.title == "Keymap not used"]
        assert len(refused) == 1, notifications(app)
        assert f"line {line}" in refused[0] and what in refused[0], refused
        assert "default keys are in force" in refused[0]
        await pilot.press("f12")  # the file's key is not used...
        await settle(app, pilot)
        assert isinstance(app.screen, MailboxesScreen)
        await pilot.press("f4")  # ...the default is
        await settle(app, pilot)
        assert isinstance(app.screen, SCREENS["alerts"])

    console.run(scenario)


def test_every_binding_has_an_id_that_a_keymap_can_name():
    from textual.binding import Binding
    from textual.dom import DOMNode

    binding_ids()  # imports every module of the console
    missing = []

    def walk(cls: type) -> None:
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("mbxtui.tui") and not sub.__module__.startswith("mbxtui.tui.widgets.grid"):
                missing.extend(f"{sub.__name__}: {b.key}" for b in sub.__dict__.get("BINDINGS", [])
                               if isinstance(b, Binding) and not b.id)
            walk(sub)

    walk(DOMNode)
    assert not missing
    assert {"help", "go-alerts", "mailboxes-approve", "back", "save"} <= binding_ids()


def test_no_keymap_file_is_no_keymap_and_no_problem(config_dir: Path):
    keymap = read_keymap()
    assert (keymap.keys, keymap.problems) == ({}, [])
    write_keymap(config_dir, 'help = "f1, h"\ngrid.toggle_mark = "m"\n')
    assert read_keymap().keys == {"help": "f1,h", "grid.toggle_mark": "m"}


def test_the_navigation_table_makes_the_function_keys_and_the_palette_entries(console: Console, config_dir: Path):
    from mbxtui.tui.navigation import NAVIGATION

    write_keymap(config_dir, 'go-alerts = "f12"\n')

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        assert set(SCREENS) == {destination.name for destination in NAVIGATION}
        commands = {command.title: command.help for command in app.get_system_commands(app.screen)}
        for destination in NAVIGATION:
            key = "f12" if destination.name == "alerts" else destination.key
            assert commands[destination.title] == f"{destination.palette} (key: {key})", commands
        for destination in NAVIGATION:
            await pilot.press("f12" if destination.name == "alerts" else destination.key)
            await settle(app, pilot)
            assert isinstance(app.screen, SCREENS[destination.name]), destination

    console.run(scenario)
