"""Opening the console: ``console`` (also what ``mbxtui`` alone does) and ``demo``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, command
from mbxtui.cli.output import EXIT_OK
from mbxtui.core.errors import MbxError

if TYPE_CHECKING:
    from mbxtui.core.permissions import Actor
    from mbxtui.tui.app import MbxApp


def console_app(ctx: Context, args: argparse.Namespace) -> MbxApp:
    """The console as ``mbxtui console`` runs it: it paints first and opens the database and the
    operator on a thread meanwhile (their round trips would otherwise come before its first frame)."""
    from mbxtui.core import paths
    from mbxtui.tui.app import MbxApp

    def opening() -> Actor:
        ctx.open_database(warn=False)  # on stderr once the console has closed (cmd_console)
        return ctx.actor

    return MbxApp(None, opening=opening, db_path=ctx.database_path(), data_dir=paths.private_data_dir(),
                  run_tests=not getattr(args, "no_tests", False), threads=getattr(args, "threads", 32),
                  process=getattr(args, "process", False))


def cmd_console(ctx: Context, args: argparse.Namespace) -> int:
    """What opening the database or the operator raised is said once the console has closed, in
    the words and with the exit status of any other command (``program.run``)."""
    app = console_app(ctx, args)
    app.run()
    if app.opening_failure is not None:
        raise app.opening_failure
    if ctx.db_path is not None:  # the console showed them as notifications; the terminal keeps them too
        ctx.warn_about_storage()
    return app.return_code or EXIT_OK


DEMO_EXTRA_MODULES = ("aiosmtpd", "trustme")  # pyproject.toml's optional dependencies "demo"


class DemoExtraMissing(MbxError):
    pass


def cmd_demo(ctx: Context, args: argparse.Namespace) -> int:
    try:
        from mbxtui.demo import run_demo
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in DEMO_EXTRA_MODULES:
            raise
        raise DemoExtraMissing(f"the demo needs the packages of the demo extra ({exc.name} is not installed): "
                               "install them with pip install 'mbxtui[demo]'") from None
    return run_demo(reset=args.reset)


def register_demo(commands: Commands) -> None:
    p = command(commands, "demo", cmd_demo, "open the console on a demo organisation with its own sandbox mail "
                "servers (never your real database or keyring)")
    p.add_argument("--reset", action="store_true", help="start the demo over from scratch")
    p.set_defaults(needs_database=False)


def register_console(commands: Commands) -> None:
    p = command(commands, "console", cmd_console, "open the console (the default when no command is given)")
    p.set_defaults(needs_database=False)  # opened by the console itself, after its first frame
    p.add_argument("--no-tests", action="store_true", help="do not run queued Test & Enable jobs in this console")
    p.add_argument("--threads", type=int, default=32, help="Test & Enable tests run at once")
    p.add_argument("--process", action="store_true", help="also process the enabled mailboxes (read their mail) "
                   "while the console is open, as `mbxtui worker` does; without it the console never reads a mailbox")
