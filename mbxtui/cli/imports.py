"""``import users|queues FILE.csv``: all rows or none."""

from __future__ import annotations

import argparse
from pathlib import Path

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, command, json_option
from mbxtui.cli.output import EXIT_OK, emit
from mbxtui.core.enums import Regarding

# What can be imported: users and queues (forward mailboxes are made one at a time).
KINDS = [f"{regarding.value}s" for regarding in (Regarding.USER, Regarding.QUEUE)]


def cmd_import(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import imports

    data = imports.import_csv(ctx.actor, args.kind, Path(args.file))
    emit(args, data, lambda d: print(f"imported {d['imported']} {d['kind']} with their mailboxes"))
    return EXIT_OK


def register(commands: Commands) -> None:
    p = command(commands, "import", cmd_import, "import users or queues from CSV (all rows or none)")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("file", metavar="FILE.csv")
    json_option(p)
