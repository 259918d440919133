"""The audit log: ``audit list``."""

from __future__ import annotations

import argparse

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, command, group, json_option, paging
from mbxtui.cli.output import EXIT_OK, emit, table

AUDIT_COLUMNS = [("at", "WHEN"), ("login", "OPERATOR"), ("by_login", "AS BY"), ("action", "ACTION"),
                 ("record_count", "RECORDS"), ("summary", "SUMMARY")]


def cmd_audit_list(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import audit, mailboxes

    record_kind, record_id = None, None
    if args.mailbox:
        record_kind, record_id = "mailbox", mailboxes.get(args.mailbox).id
    rows = audit.list_entries(ctx.actor, record_kind=record_kind, record_id=record_id, limit=args.limit,
                              offset=args.offset)
    emit(args, rows, table(AUDIT_COLUMNS))
    return EXIT_OK


def register(commands: Commands) -> None:
    audits = group(commands, "audit", "the audit log")
    p = command(audits, "list", cmd_audit_list, "list audit entries, newest first")
    p.add_argument("--mailbox", metavar="EMAIL", help="only entries about this mailbox, with before/after")
    paging(p)
    json_option(p)
