"""The organisation's email settings: ``settings show|set``."""

from __future__ import annotations

import argparse

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, command, group, json_option, method_options, switch
from mbxtui.cli.output import EXIT_OK, emit, print_record

# option's attribute on the parsed arguments -> the field of settings.update
SETTINGS_FLAGS = {
    "default_profile": "default_profile", "incoming": "default_incoming", "outgoing": "default_outgoing",
    "act": "default_act", "require_approval_users": "require_approval_users",
    "require_approval_queues": "require_approval_queues", "error_alerts": "record_error_alerts",
    "warning_alerts": "record_warning_alerts", "information_alerts": "record_information_alerts",
    "notify_owners": "notify_owners_of_profile_alerts", "retry_attempts": "retry_attempts",
    "retry_interval": "retry_interval_minutes",
}
SWITCHES = ("require-approval-users", "require-approval-queues", "error-alerts", "warning-alerts",
            "information-alerts", "notify-owners")


def cmd_settings_show(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import settings

    emit(args, settings.show(ctx.actor).as_dict(), print_record)
    return EXIT_OK


def cmd_settings_set(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import settings

    changes = {field: getattr(args, flag) for flag, field in SETTINGS_FLAGS.items()}
    emit(args, settings.update(ctx.actor, **changes).as_dict(), print_record)
    return EXIT_OK


def register(commands: Commands) -> None:
    settings = group(commands, "settings", "organisation email settings")
    json_option(command(settings, "show", cmd_settings_show, "show the email settings"))
    p = command(settings, "set", cmd_settings_set, "change the email settings")
    p.add_argument("--default-profile", metavar="NAME")
    method_options(p)
    for flag in SWITCHES:
        switch(p, f"--{flag}")
    p.add_argument("--retry-attempts", metavar="N")
    p.add_argument("--retry-interval", metavar="MINUTES")
    json_option(p)
