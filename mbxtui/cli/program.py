"""The top of the command line: the global options, the parser built from the command groups'
modules, and running one command with the exit statuses and one-line errors of the contract."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from mbxtui import __version__, logs
from mbxtui.cli import alerts, audit, enablement, imports, launch, mailboxes, migrate, operators, people, profiles
from mbxtui.cli import activities, check, email, settings, sync
from mbxtui.cli.context import Context
from mbxtui.cli.options import Parser, UsageError
from mbxtui.cli.output import EXIT_ERROR, EXIT_OK, EXIT_USAGE, safe

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mbxtui", description="Console and command line for server-side email synchronization "
                    "mailboxes. With no command, opens the console.")
    parser.add_argument("--version", action="version", version=f"mbxtui {__version__}")
    parser.add_argument("--db", metavar="PATH", help="the database file, or postgresql://USER@HOST:PORT/DBNAME "
                        "(default: $MBXTUI_DB or the user data dir)")
    parser.add_argument("--as", dest="as_login", metavar="LOGIN", help="act as another operator (global_admin only)")
    parser.add_argument("--log-file", metavar="PATH", help=f"append a log to this file, created owner-only "
                        f"(default: ${logs.LOG_ENV}; without either, no log is written)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    # In the order `mbxtui --help` lists them.
    operators.register_init(commands)
    launch.register_demo(commands)
    launch.register_console(commands)
    migrate.register(commands)
    operators.register(commands)
    people.register(commands)
    profiles.register(commands)
    settings.register(commands)
    mailboxes.register(commands)
    enablement.register(commands)
    imports.register(commands)
    alerts.register(commands)
    audit.register(commands)
    sync.register(commands)
    activities.register(commands)
    check.register(commands)
    email.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        if args.command is not None:
            parser.error(f"{args.command}: give a subcommand")
        args.handler = launch.cmd_console
        args.needs_database = False  # as `console`: it opens the database itself
    path = logs.log_file_from(args.log_file)
    try:
        handler = logs.open_log_file(path) if path is not None else None
    except OSError as exc:
        print(f"mbxtui: cannot write the log file {safe(path)}: {exc.strerror}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return run(args)
    finally:
        logs.close_log_file(handler)
        failure = getattr(handler, "failure", None)
        if failure is not None:
            print(f"mbxtui: warning: the log file {safe(path)} could not be written ({safe(failure)}); "
                  "what followed is not in it", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run the parsed command: its exit status, a refusal as one line on stderr (and in the log)."""
    import sqlite3

    import peewee

    from mbxtui.core.errors import MbxError, problem_sentence, refusal
    from mbxtui.core.faults import fault_sentence

    name = " ".join(part for part in (args.command or "console", getattr(args, "subcommand", None)) if part)
    log.info("mbxtui %s: %s", __version__, name)
    ctx = Context(args)
    try:
        if getattr(args, "needs_database", True):
            ctx.open_database()
        code = args.handler(ctx, args)
    except UsageError as exc:
        return _refused(name, EXIT_USAGE, f"error: {safe(exc)}")
    except MbxError as exc:
        return _refused(name, EXIT_ERROR, safe(problem_sentence(exc)))
    except (sqlite3.OperationalError, peewee.OperationalError) as exc:
        return _refused(name, EXIT_ERROR, safe(problem_sentence(exc)))
    except peewee.DatabaseError as exc:
        if refusal(exc) is None and fault_sentence(exc) is None:  # neither a refusal nor the machine: a bug
            return _crashed(name, exc)
        return _refused(name, EXIT_ERROR, safe(problem_sentence(exc)))
    except KeyboardInterrupt:
        return _refused(name, 130, "interrupted")
    except BrokenPipeError:
        log.info("%s: its output was closed", name)
        return EXIT_OK
    except Exception as exc:
        fault = fault_sentence(exc)  # a full disk or a read-only file system under any write
        if fault is not None:
            return _refused(name, EXIT_ERROR, safe(fault))
        return _crashed(name, exc)
    log.info("%s: exit status %d", name, code)
    return code


def _crashed(name: str, exc: BaseException) -> int:
    """Not one of the refusals: a bug. Its traceback (never local variables' values) goes to the log
    file or a crash report file; the terminal gets one line naming it."""
    line, _report = logs.report_crash(exc, what=name)
    print(line, file=sys.stderr)
    return EXIT_ERROR


def _refused(name: str, code: int, message: str) -> int:
    print(f"mbxtui: {message}", file=sys.stderr)
    log.warning("%s: exit status %d: %s", name, code, message)
    return code
