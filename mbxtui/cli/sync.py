"""Processing from the command line: ``sync --once``, both directions: incoming mail read, then the
queued outgoing email sent."""

from __future__ import annotations

import argparse

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, UsageError, command, json_option
from mbxtui.cli.output import EXIT_OK, EXIT_TEST_FAILED, print_json, print_table

RESULT_COLUMNS = [("email", "MAILBOX"), ("ok", "OK"), ("messages", "READ"), ("recorded", "RECORDED"),
                  ("unresolved", "UNRESOLVED"), ("deleted", "DELETED"), ("error_code", "ERROR"), ("error", "WHY")]
SENT_COLUMNS = [("email", "MAILBOX"), ("ok", "OK"), ("sent", "SENT"), ("failed", "FAILED"), ("retrying", "RETRYING"),
                ("uncertain", "UNCERTAIN"), ("error_code", "ERROR"), ("error", "WHY")]


def cmd_sync(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.sync.runner import sync_once

    if not args.once:
        raise UsageError("only one cycle can be run from here for now: add --once")
    if args.threads < 1:
        raise UsageError("--threads: a whole number above 0")
    summary = sync_once(ctx.actor, ctx.store, args.emails, ignore_interval=args.now, threads=args.threads)
    data = summary.as_dict()
    if args.json:
        print_json(data)
    else:
        print_table(data["results"], RESULT_COLUMNS)
        if data["outgoing"]:
            print()
            print_table(data["outgoing"], SENT_COLUMNS)
        print(f"{data['mailboxes']} mailbox(es) cycled, {data['failed']} failed, {data['messages']} message(s) "
              f"read, {data['recorded']} recorded; {data['sent']} email(s) sent, {data['send_failed']} failed, "
              f"{data['send_retrying']} to retry, {data['uncertain']} uncertain")
    return EXIT_TEST_FAILED if summary.failed else EXIT_OK


def register(commands: Commands) -> None:
    p = command(commands, "sync", cmd_sync,
                "process due mailboxes once: read their new mail, send their queued email (exit 3 when a mailbox "
                "failed in either direction; an email the server refused alone does not count)")
    p.add_argument("emails", nargs="*", metavar="EMAIL", help="only these mailboxes")
    p.add_argument("--once", action="store_true", help="one cycle of every due mailbox, then exit")
    p.add_argument("--now", action="store_true", help="ignore the profiles' minimum polling interval")
    p.add_argument("--threads", type=int, default=8, help="mailboxes cycled at once (each profile's bound still holds)")
    json_option(p)
