"""Setting up and the operators: ``init``, ``whoami``, ``operator add|list|set-role|remove``."""

from __future__ import annotations

import argparse

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, command, group, json_option, metavar
from mbxtui.cli.output import EXIT_OK, emit, print_record, safe, table
from mbxtui.core.enums import Role


def cmd_init(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import operators

    actor = operators.initialise()
    print(f"initialised {safe(ctx.args.db or 'the default database')}; {safe(actor.login)} is {actor.role.value}")
    return EXIT_OK


def cmd_whoami(ctx: Context, args: argparse.Namespace) -> int:
    actor = ctx.actor
    data = {"login": actor.login, "role": actor.role.value, "acting_for": actor.by_login}
    emit(args, data, print_record)
    return EXIT_OK


def cmd_operator_add(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import operators

    emit(args, operators.add(ctx.actor, args.login, args.role, args.user).as_dict(), print_record)
    return EXIT_OK


def cmd_operator_list(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import operators

    emit(args, [o.as_dict() for o in operators.list_operators(ctx.actor)], table([("login", "LOGIN"), ("role", "ROLE"), ("user", "USER")]))
    return EXIT_OK


def cmd_operator_set_role(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import operators

    emit(args, operators.set_role(ctx.actor, args.login, args.role).as_dict(), print_record)
    return EXIT_OK


def cmd_operator_remove(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import operators

    operators.remove(ctx.actor, args.login)
    print(f"removed operator {safe(args.login)}")
    return EXIT_OK


def cmd_operator_sync_roles(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core import db, server_roles
    from mbxtui.core.models import database

    with db.write_transaction():  # the server allows it to global_admins and the owner only
        count = server_roles.grant_every_operator(database.obj)
    print(f"the database roles of {count} operator(s) match their mbxtui roles" if count
          else "nothing to do: only a PostgreSQL server enforces roles")
    return EXIT_OK


def register_init(commands: Commands) -> None:
    command(commands, "init", cmd_init, "create the database and make your login its global_admin")


def register(commands: Commands) -> None:
    json_option(command(commands, "whoami", cmd_whoami, "the operator you act as"))

    # A role is checked by the service, not by choices=, so that a wrong one is refused (exit 1)
    # with the roles named, and in any case (VIEWER) accepted, as every other field is.
    operators = group(commands, "operator", "operators and their roles")
    p = command(operators, "add", cmd_operator_add, "add an operator (global_admin only)")
    p.add_argument("login")
    p.add_argument("--role", required=True, metavar=metavar(Role))
    p.add_argument("--user", metavar="USER_EMAIL", help="the user this operator is ('My Mailboxes')")
    json_option(p)
    json_option(command(operators, "list", cmd_operator_list, "list operators"))
    command(operators, "sync-roles", cmd_operator_sync_roles,
            "PostgreSQL: give each operator's database role the membership its mbxtui role says")
    p = command(operators, "set-role", cmd_operator_set_role, "change an operator's role")
    p.add_argument("login")
    p.add_argument("--role", required=True)
    json_option(p)
    p = command(operators, "remove", cmd_operator_remove, "remove an operator")
    p.add_argument("login")
