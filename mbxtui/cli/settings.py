"""The organisation's email settings: ``settings show|set``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, command, group, json_option, metavar, method_options, switch
from mbxtui.cli.output import EXIT_OK, emit, print_record, safe
from mbxtui.core.enums import Tracking

# option's attribute on the parsed arguments -> the field of settings.update
SETTINGS_FLAGS = {
    "default_profile": "default_profile", "incoming": "default_incoming", "outgoing": "default_outgoing",
    "act": "default_act", "require_approval_users": "require_approval_users",
    "require_approval_queues": "require_approval_queues", "error_alerts": "record_error_alerts",
    "warning_alerts": "record_warning_alerts", "information_alerts": "record_information_alerts",
    "notify_owners": "notify_owners_of_profile_alerts", "retry_attempts": "retry_attempts",
    "retry_interval": "retry_interval_minutes", "tracking_users": "tracking_users",
    "tracking_queues": "tracking_queues", "stale_hours": "stale_hours",
    "notification_mailbox": "notification_mailbox",
    "oauth_refresh_days": "oauth_refresh_days", "oauth_warning_days": "oauth_expiry_warning_days",
}
SWITCHES = ("require-approval-users", "require-approval-queues", "error-alerts", "warning-alerts",
            "information-alerts", "notify-owners")

if TYPE_CHECKING:
    from mbxtui.core.services.settings import EmailSettings


def _emit(args: argparse.Namespace, record: EmailSettings) -> None:
    emit(args, record.as_dict(), print_record)
    if record.notification_warning:
        print(f"mbxtui: warning: {safe(record.notification_warning)}", file=sys.stderr)


def cmd_settings_show(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import settings

    _emit(args, settings.show(ctx.actor))
    return EXIT_OK


def cmd_settings_set(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import settings

    changes = {field: getattr(args, flag) for flag, field in SETTINGS_FLAGS.items()}
    _emit(args, settings.update(ctx.actor, **changes))
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
    # Checked by the service, as the methods are (exit 1 naming the allowed values, any case).
    p.add_argument("--tracking-users", metavar=metavar(Tracking),
                   help="which messages become activities for users without their own setting (R27)")
    p.add_argument("--tracking-queues", metavar=metavar(Tracking),
                   help="the same for queues (R27)")
    p.add_argument("--stale-hours", metavar="HOURS",
                   help="an enabled mailbox without a successful sync for this long is stale, 1–8760 (R31)")
    p.add_argument("--oauth-refresh-days", metavar="DAYS",
                   help="a mailbox's own OAuth2 refresh token's life when its provider does not say, 1–3650")
    p.add_argument("--oauth-warning-days", metavar="DAYS",
                   help="warn this many days before a mailbox's own OAuth2 authorization can expire, 1–3650")
    p.add_argument("--notification-mailbox", metavar="EMAIL|none",
                   help="the mailbox that sends the owners' alert emails (R32); none clears it")
    json_option(p)
