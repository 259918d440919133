"""``migrate``: copy a whole installation into a new, empty database (SQLite to PostgreSQL, say)."""

from __future__ import annotations

import argparse

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, command, json_option
from mbxtui.cli.output import EXIT_OK, print_json, print_table, safe


def cmd_migrate(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core import paths, transfer

    summary = transfer.copy_installation(paths.database_location(args.source), paths.database_location(args.target))
    note = transfer.secrets_note(summary)
    if args.json:
        print_json({**summary.as_dict(), "secrets": note})
        return EXIT_OK
    print(f"copied {summary.rows:,} rows from {safe(summary.source)} to {safe(summary.target)} "
          f"(schema version {safe(summary.schema_version)}, install id {safe(summary.install_id)}); "
          "row counts verified")
    print_table([{"table": t.name, "rows": f"{t.rows:,}"} for t in summary.tables], [("table", "TABLE"), ("rows", "ROWS")])
    print(safe(note))
    return EXIT_OK


def register(commands: Commands) -> None:
    p = command(commands, "migrate", cmd_migrate, "copy a whole installation into a new, empty database "
                "(e.g. SQLite to PostgreSQL); secrets stay in the keyring")
    p.add_argument("--from", dest="source", required=True, metavar="DB",
                   help="the installation: sqlite:///path/to/mbxtui.db (or a path) or postgresql://...")
    p.add_argument("--to", dest="target", required=True, metavar="DB",
                   help="the new database: postgresql://USER@HOST:PORT/DBNAME or sqlite:///path")
    p.set_defaults(needs_database=False)
    json_option(p)
