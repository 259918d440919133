"""The alerts wall: ``alerts list|dismiss``."""

from __future__ import annotations

import argparse

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, UsageError, command, group, json_option, metavar, paging
from mbxtui.cli.output import EXIT_OK, emit, table
from mbxtui.core.enums import AlertLevel

ALERT_COLUMNS = [("id", "ID"), ("created_on", "WHEN"), ("level", "LEVEL"), ("code", "CODE"), ("mailbox", "MAILBOX"),
                 ("profile", "PROFILE"), ("text", "TEXT")]


def cmd_alerts_list(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import alerts

    rows = alerts.list_alerts(ctx.actor, level=args.level, mailbox=args.mailbox, profile=args.profile,
                              include_dismissed=args.all, limit=args.limit, offset=args.offset)
    emit(args, rows, table(ALERT_COLUMNS))
    return EXIT_OK


def cmd_alerts_dismiss(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import alerts

    if args.ids and args.all_shown:
        raise UsageError("give alert ids or --all, not both")
    if args.all_shown:
        count = alerts.dismiss_matching(ctx.actor, level=args.level, mailbox=args.mailbox, profile=args.profile)
    elif args.ids:
        count = alerts.dismiss(ctx.actor, args.ids)
    else:
        raise UsageError("give alert ids, or --all to dismiss every alert matching the filters")
    print(f"dismissed {count} alert(s)")
    return EXIT_OK


def register(commands: Commands) -> None:
    alerts = group(commands, "alerts", "the alerts wall")
    p = command(alerts, "list", cmd_alerts_list, "list alerts, newest first")
    p.add_argument("--level", metavar=metavar(AlertLevel))
    p.add_argument("--mailbox", metavar="EMAIL")
    p.add_argument("--profile", metavar="NAME")
    p.add_argument("--all", action="store_true", help="include dismissed alerts")
    paging(p)
    json_option(p)
    p = command(alerts, "dismiss", cmd_alerts_dismiss, "dismiss alerts")
    p.add_argument("ids", nargs="*", type=int, metavar="ID")
    p.add_argument("--all", dest="all_shown", action="store_true", help="every alert matching the filters")
    p.add_argument("--level")
    p.add_argument("--mailbox", metavar="EMAIL")
    p.add_argument("--profile", metavar="NAME")
