"""The argparse pieces the command groups share: the parser that exits 2 on a usage error, adding a
command or a group of subcommands, the options that recur (--json, paging, a mailbox selection),
on/off switches read as booleans, and choices and metavars written from the enums."""

from __future__ import annotations

import argparse
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Callable, NoReturn

from mbxtui.cli.output import EXIT_USAGE
from mbxtui.core.display import safe
from mbxtui.core.enums import ActMethod, IncomingMethod, OutgoingMethod, View

if TYPE_CHECKING:
    from mbxtui.cli.context import Context

Handler = Callable[["Context", argparse.Namespace], int]
Commands = argparse._SubParsersAction  # what add_subparsers returns; argparse names no public type


class UsageError(Exception):
    """A command given the wrong mix of arguments: one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"mbxtui: error: {safe(message)}\n")  # it may quote what was typed


def command(commands: Commands, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser


def group(commands: Commands, name: str, help_text: str) -> Commands:
    """A command made of subcommands (``mbxtui mailbox list``): returns where to add them."""
    parser = commands.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", parser_class=Parser, required=True)


def values(enum: type[StrEnum]) -> list[str]:
    """The values of ``enum`` as plain strings (argparse quotes choices with repr())."""
    return [member.value for member in enum]


def metavar(enum: type[StrEnum], separator: str = "|") -> str:
    return separator.join(values(enum))


def on_off(text: str) -> bool:
    """An on/off switch (``on``, ``off`` and the words validation accepts for them) as a boolean;
    argparse puts the option's name before the message."""
    from mbxtui.core import validation
    from mbxtui.core.errors import InvalidInput

    try:
        return validation.on_off("switch", text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None


def switch(parser: argparse.ArgumentParser, flag: str, help_text: str | None = None) -> None:
    parser.add_argument(flag, type=on_off, metavar="on|off", help=help_text)


def json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def paging(parser: argparse.ArgumentParser, limit: int = 100) -> None:
    parser.add_argument("--limit", type=int, default=limit, help=f"at most this many rows (default {limit})")
    parser.add_argument("--offset", type=int, default=0, help="skip this many rows first")


def method_options(p: argparse.ArgumentParser) -> None:
    """--incoming, --outgoing and --act: named in metavars, checked by the service (exit 1 naming
    the allowed methods), as the console's forms are."""
    p.add_argument("--incoming", metavar=metavar(IncomingMethod))
    p.add_argument("--outgoing", metavar=metavar(OutgoingMethod))
    p.add_argument("--act", metavar=metavar(ActMethod))


def secret_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    parser.add_argument("--token", action="store_true", help="store an OAuth2 access token instead")


def view_option(parser: argparse.ArgumentParser, **options: object) -> None:
    parser.add_argument("--view", choices=values(View), **options)


def selection_options(parser: argparse.ArgumentParser, *, profile: bool = False) -> None:
    parser.add_argument("emails", nargs="*", metavar="EMAIL", help="mailbox addresses")
    view_option(parser, help="act on every mailbox of this view")
    parser.add_argument("--filter", help="with --view: only mailboxes whose name or address contains this text")
    if profile:
        parser.add_argument("--profile", dest="profile_all", metavar="NAME", help="every mailbox of this profile")
