"""How the command line reads and prints: tables aligned by terminal cells (wide characters take
two), choices from the domain's enums, on/off switches read as booleans."""

from __future__ import annotations

from rich.cells import cell_len

from mbxtui.cli import build_parser
from mbxtui.core.enums import View
from tests.cli.conftest import Cli

WIDE_NAMES = {"jp@corp.test": "山田太郎", "zh@corp.test": "王小明先生", "emoji@corp.test": "Zoë 🎉🎉",
              "family@corp.test": "👩\u200d👩\u200d👧 Family"}


def column_starts(line: str, texts: list[str]) -> list[int]:
    """The terminal column (in cells) where each of ``texts`` starts on ``line``."""
    starts, position = [], 0
    for text in texts:
        position = line.index(text, position)
        starts.append(cell_len(line[:position]))
        position += len(text)
    return starts


def test_wide_characters_in_names_keep_the_columns_of_user_list_aligned(cli: Cli):
    for email, name in WIDE_NAMES.items():
        cli.ok("user", "add", "--name", name, "--email", email)

    lines = cli.ok("user", "list").stdout.splitlines()

    header = column_starts(lines[0], ["NAME", "EMAIL", "ACTIVE", "MAILBOX"])
    rows = {email: line for line in lines[1:] for email in [*WIDE_NAMES, "ann@corp.test", "bob@corp.test"]
            if f"  {email}  " in line}
    assert set(rows) == {*WIDE_NAMES, "ann@corp.test", "bob@corp.test"}, lines
    for email, line in rows.items():
        name = WIDE_NAMES.get(email, email.split("@")[0].title())
        assert column_starts(line, [name, email, "yes", email]) == header, f"misaligned: {line!r} under {lines[0]!r}"


def test_on_off_switches_are_read_as_booleans(cli: Cli):
    changed = cli.json("settings", "set", "--require-approval-users", "OFF", "--notify-owners", "on")
    assert changed["require_approval_users"] is False and changed["notify_owners_of_profile_alerts"] is True
    edited = cli.json("mailbox", "edit", "ann@corp.test", "--use-own-credentials", "on")
    assert edited["use_own_credentials"] is True


def test_a_bad_on_off_value_is_a_usage_error_naming_the_option(cli: Cli):
    before = cli.dump()
    for args, option in (
        (("settings", "set", "--require-approval-users", "maybe"), "--require-approval-users"),
        (("profile", "edit", "imap", "--verify-delivery", "\x1b[2J"), "--verify-delivery"),
        (("mailbox", "edit", "ann@corp.test", "--delete-after-processing", "2"), "--delete-after-processing"),
    ):
        stderr = cli.fails(*args, code=2)
        value = repr(args[-1])
        assert stderr.endswith(f"mbxtui: error: argument {option}: {value} is not on or off"), stderr
        assert "\x1b" not in stderr
    assert cli.dump() == before


def test_choices_are_the_values_of_the_enums():
    parser = build_parser()
    mailbox = parser._subparsers._group_actions[0].choices["mailbox"]
    listing = mailbox._subparsers._group_actions[0].choices["list"]
    view = next(action for action in listing._actions if action.dest == "view")
    assert view.choices == [member.value for member in View]
    assert "--view {" + ",".join(member.value for member in View) + "}" in listing.format_usage()
