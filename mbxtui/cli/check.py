"""``mbxtui check``: a probe for monitoring systems (Nagios, Icinga, Zabbix, cron), following the
Nagios plugin conventions: one status line with performance data after ``|``, and the exit status
0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the figures could not be read at all)."""

from __future__ import annotations

import argparse
import json
import logging
from typing import TYPE_CHECKING

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, command, json_option
from mbxtui.cli.output import safe

if TYPE_CHECKING:
    from mbxtui.core.services.health import Health

log = logging.getLogger(__name__)

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATUS_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
DEFAULT_WARNING = 0.0  # any failing or stale mailbox asks for a look
DEFAULT_CRITICAL = 20.0  # more than one in five: a server or the processing itself is down


def _percent(option: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{option} {text!r} is not a number: give a percentage from 0 to 100") from None
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"{option} {text} is out of range: give a percentage from 0 to 100")
    return value


def status_of(health: Health, warning: float, critical: float) -> int:
    """CRITICAL when more than ``critical`` percent of the watched mailboxes are failing or stale,
    WARNING when more than ``warning`` percent are."""
    share = health.problem_percent
    if share > critical:
        return CRITICAL
    if share > warning:
        return WARNING
    return OK


def status_line(code: int, health: Health, warning: float, critical: float) -> str:
    oldest = health.oldest_sync_seconds
    summary = (f"{health.failing} failing and {health.stale} stale of {health.watched} mailbox(es) "
               f"({health.problem_percent:.1f}%), {health.enabled} enabled, {health.queued} email(s) queued")
    if oldest is not None:
        summary += f", oldest last sync {oldest}s ago"
    perfdata = (f"enabled={health.enabled} failing={health.failing} stale={health.stale} queued={health.queued} "
                f"oldest_sync={oldest or 0}s problems={health.problem_percent:.1f}%;{warning:g};{critical:g};0;100")
    return f"MBXTUI {STATUS_NAMES[code]} - {summary} | {perfdata}"


def _unknown(args: argparse.Namespace, why: str) -> int:
    log.warning("check: UNKNOWN: %s", why)
    if args.json:
        print(json.dumps({"status": "UNKNOWN", "exit": UNKNOWN, "problem": why}))
    else:
        print(f"MBXTUI UNKNOWN - {why}")  # Nagios reads the first line of standard output
    return UNKNOWN


def cmd_check(ctx: Context, args: argparse.Namespace) -> int:
    try:
        warning = _percent("--warning", args.warning)
        critical = _percent("--critical", args.critical)
    except ValueError as exc:
        return _unknown(args, str(exc))
    if critical < warning:
        return _unknown(args, f"--critical {critical:g} is below --warning {warning:g}: give a critical share at "
                              "least as large as the warning one")
    try:
        from mbxtui.core import db, paths
        from mbxtui.core.models import database
        from mbxtui.core.services.health import health

        location = paths.database_location(args.db) if args.db else paths.default_database()
        database.initialize(db.connect_database(location, existing_only=True))  # a probe never creates one
        figures = health(ctx.actor)
    except Exception as exc:  # whatever it is, the monitoring system gets one line and UNKNOWN
        from mbxtui.core.errors import problem_sentence

        return _unknown(args, f"the figures cannot be read: {safe(problem_sentence(exc))}")
    code = status_of(figures, warning, critical)
    if args.json:
        print(json.dumps({"status": STATUS_NAMES[code], "exit": code, **figures.as_dict(),
                          "warning_percent": warning, "critical_percent": critical}))
    else:
        print(status_line(code, figures, warning, critical))
    return code


def register(commands: Commands) -> None:
    p = command(commands, "check", cmd_check,
                "a monitoring probe with the Nagios plugin conventions: one status line with performance data; "
                "exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN")
    p.epilog = ("A mailbox is watched when it is active and enabled for a direction or in Test and Enable Failed; "
                "the share that is failing (Test and Enable Failed, or waiting to retry a failed cycle) or stale "
                "(no successful sync for longer than the stale threshold) sets the status. Any operator, viewers "
                "too, may run it.")
    p.add_argument("--warning", metavar="PCT", default=str(DEFAULT_WARNING),
                   help=f"WARNING when more than PCT percent of the watched mailboxes are failing or stale "
                        f"(default {DEFAULT_WARNING:g}: any one)")
    p.add_argument("--critical", metavar="PCT", default=str(DEFAULT_CRITICAL),
                   help=f"CRITICAL when more than PCT percent are (default {DEFAULT_CRITICAL:g})")
    json_option(p)
    p.set_defaults(needs_database=False)
