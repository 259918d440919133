"""Email activities: ``activity list|show|resend``."""

from __future__ import annotations

import argparse

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, command, group, json_option, metavar
from mbxtui.cli.output import EXIT_OK, emit, print_record, table
from mbxtui.core.enums import ActivityDirection, ActivityState

ACTIVITY_COLUMNS = [("id", "ID"), ("when", "RECEIVED/SENT"), ("direction", "DIRECTION"), ("state", "STATE"),
                    ("sender", "FROM"), ("subject", "SUBJECT"), ("parties", "PARTIES")]


def cmd_activity_list(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import activities

    found = activities.list_activities(ctx.actor, mailbox=args.mailbox, regarding=args.regarding,
                                       direction=args.direction, state=args.state, text=args.filter,
                                       limit=args.limit)
    shown = [{**row, "parties": ", ".join(row["parties"]), "when": row["received_on"] or row["sent_on"]}
             for row in found["rows"]]
    total = f"{found['total']:,}" + ("" if found["total_exact"] else "+")
    emit(args, found, lambda _: table(ACTIVITY_COLUMNS, footer=f"{total} activities")(shown))
    return EXIT_OK


def cmd_activity_show(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import activities

    activity = activities.show_activity(ctx.actor, args.id)
    shown = {**activity, "attachments": [f"{a['name']} ({a['size']} bytes)" for a in activity["attachments"]]}
    emit(args, activity, lambda _: print_record(shown))
    return EXIT_OK


def cmd_activity_resend(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import outgoing

    outgoing.resend(ctx.actor, args.id)
    emit(args, {"id": args.id, "state": "pending"},
         lambda data: print(f"email activity {data['id']} is pending again: processing sends it once more"))
    return EXIT_OK


def register(commands: Commands) -> None:
    activity = group(commands, "activity", "email activities: what processing recorded")
    p = command(activity, "list", cmd_activity_list, "list email activities, newest first")
    p.add_argument("--mailbox", metavar="EMAIL", help="came through or sent from this mailbox")
    p.add_argument("--regarding", metavar="EMAIL", help="concerns this user or queue")
    p.add_argument("--direction", metavar=metavar(ActivityDirection))
    p.add_argument("--state", metavar=metavar(ActivityState))
    p.add_argument("--filter", metavar="TEXT", help="in the subject, sender, recipients or Message-ID")
    p.add_argument("--limit", type=int, default=100, help="at most this many rows (default 100)")
    json_option(p)
    p = command(activity, "show", cmd_activity_show, "one email activity with its text preview")
    p.add_argument("id", type=int, metavar="ID")
    json_option(p)
    p = command(activity, "resend", cmd_activity_resend,
                "send an uncertain or failed outgoing email again (an uncertain one may have been sent already)")
    p.add_argument("id", type=int, metavar="ID")
    json_option(p)
