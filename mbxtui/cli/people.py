"""Users and queues, each with its one mailbox: ``user add|list|deactivate|activate`` and
``queue add|list|deactivate|activate``."""

from __future__ import annotations

import argparse

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, command, group, json_option, paging
from mbxtui.cli.output import EXIT_OK, emit, print_record, table

USER_COLUMNS = [("name", "NAME"), ("email", "EMAIL"), ("active", "ACTIVE"), ("mailbox", "MAILBOX")]
QUEUE_COLUMNS = [("name", "NAME"), ("email", "EMAIL"), ("owner", "OWNER"), ("active", "ACTIVE"),
                 ("mailbox", "MAILBOX")]


def cmd_user_add(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import users

    emit(args, users.add_user(ctx.actor, args.name, args.email).as_dict(), print_record)
    return EXIT_OK


def cmd_user_list(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import users

    emit(args, [u.as_dict() for u in users.list_users(ctx.actor, filter_text=args.filter, limit=args.limit,
                                                     offset=args.offset)],
         table(USER_COLUMNS))
    return EXIT_OK


def cmd_user_deactivate(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import users

    emit(args, users.deactivate_user(ctx.actor, args.email).as_dict(), print_record)
    return EXIT_OK


def cmd_user_activate(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import users

    emit(args, users.activate_user(ctx.actor, args.email).as_dict(), print_record)
    return EXIT_OK


def cmd_queue_add(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import users

    emit(args, users.add_queue(ctx.actor, args.name, args.email, args.owner).as_dict(), print_record)
    return EXIT_OK


def cmd_queue_list(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import users

    emit(args, [q.as_dict() for q in users.list_queues(ctx.actor, limit=args.limit, offset=args.offset)],
         table(QUEUE_COLUMNS))
    return EXIT_OK


def cmd_queue_deactivate(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import users

    emit(args, users.deactivate_queue(ctx.actor, args.email).as_dict(), print_record)
    return EXIT_OK


def cmd_queue_activate(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import users

    emit(args, users.activate_queue(ctx.actor, args.email).as_dict(), print_record)
    return EXIT_OK


def register(commands: Commands) -> None:
    users = group(commands, "user", "users (each has one mailbox)")
    p = command(users, "add", cmd_user_add, "add a user and its mailbox")
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    json_option(p)
    p = command(users, "list", cmd_user_list, "list users")
    p.add_argument("--filter")
    paging(p, 1000)
    json_option(p)
    p = command(users, "deactivate", cmd_user_deactivate, "deactivate a user and its mailbox")
    p.add_argument("email")
    json_option(p)
    p = command(users, "activate", cmd_user_activate, "activate a user (its mailbox stays inactive)")
    p.add_argument("email")
    json_option(p)

    queues = group(commands, "queue", "queues (each has one mailbox)")
    p = command(queues, "add", cmd_queue_add, "add a queue and its mailbox")
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--owner", required=True, metavar="USER_EMAIL")
    json_option(p)
    p = command(queues, "list", cmd_queue_list, "list queues")
    paging(p, 1000)
    json_option(p)
    p = command(queues, "deactivate", cmd_queue_deactivate, "deactivate a queue and its mailbox")
    p.add_argument("email")
    json_option(p)
    p = command(queues, "activate", cmd_queue_activate, "activate a queue (its mailbox stays inactive)")
    p.add_argument("email")
    json_option(p)
