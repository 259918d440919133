"""Email server profiles: ``profile add|edit|list|show|set-password|confirm-secret|test``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mbxtui.cli import profile_detect, profile_diagnose
from mbxtui.cli.context import Context, read_secret
from mbxtui.cli.options import Commands, command, group, json_option, metavar, secret_options, switch
from mbxtui.cli.output import EXIT_OK, EXIT_TEST_FAILED, emit, print_json, print_record, safe, table
from mbxtui.core.errors import InvalidInput
from mbxtui.core.enums import IncomingAuth, OAuthProvider, OutgoingAuth, ProfileType, TlsMode

# option's attribute on the parsed arguments -> the field of profiles.create / profiles.update
PROFILE_FIELDS = {
    "name": "name", "type": "type", "incoming_host": "incoming_host", "incoming_port": "incoming_port",
    "incoming_tls": "incoming_tls", "incoming_auth": "incoming_auth", "outgoing_host": "outgoing_host",
    "outgoing_port": "outgoing_port", "outgoing_tls": "outgoing_tls", "outgoing_auth": "outgoing_auth",
    "username": "username", "ca_file": "ca_file", "max_connections": "max_connections",
    "timeout": "timeout_seconds", "verify_delivery": "verify_delivery", "owner": "owner",
    "process_email_from": "process_email_from", "min_polling_minutes": "min_polling_minutes", "active": "active",
    "retest_hours": "retest_hours", "processed_folder": "processed_folder",
    "oauth_provider": "oauth_provider", "oauth_tenant": "oauth_tenant", "oauth_client_id": "oauth_client_id",
    "oauth_issuer": "oauth_issuer", "oauth_scope": "oauth_scope",
}
MAX_CREDENTIAL_FILE = 64 * 1024
PROFILE_COLUMNS = [("name", "NAME"), ("type", "TYPE"), ("incoming.host", "INCOMING"), ("incoming.port", "PORT"),
                   ("outgoing.host", "OUTGOING"), ("outgoing.port", "PORT"), ("max_connections", "MAX CONN"),
                   ("mailboxes", "MAILBOXES"), ("active", "ACTIVE")]


def _profile_fields(args: argparse.Namespace) -> dict[str, Any]:
    return {field: getattr(args, attr) for attr, field in PROFILE_FIELDS.items() if hasattr(args, attr)}


def cmd_profile_add(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import profiles

    created = profiles.create(ctx.actor, allow_plaintext_credentials=args.allow_plaintext_credentials,
                              **_profile_fields(args))
    emit(args, created.as_dict(), print_record)
    return EXIT_OK


def cmd_profile_edit(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import profiles

    fields = _profile_fields(args)
    fields["name"] = args.new_name
    updated = profiles.update(ctx.actor, args.profile, allow_plaintext_credentials=args.allow_plaintext_credentials,
                              **fields)
    emit(args, updated.as_dict(), print_record)
    return EXIT_OK


def cmd_profile_confirm_secret(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import credentials

    changed = credentials.confirm_profile_secret(ctx.actor, args.profile)
    verdict = "confirmed for its current endpoint" if changed else "were already confirmed for its current endpoint"
    print(f"the secrets of profile {safe(args.profile)} {verdict}")
    return EXIT_OK


def cmd_profile_list(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import profiles

    emit(args, [p.as_dict() for p in profiles.list_profiles(ctx.actor)], table(PROFILE_COLUMNS))
    return EXIT_OK


def cmd_profile_show(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import profiles

    emit(args, profiles.show(ctx.actor, args.profile).as_dict(), print_record)
    return EXIT_OK


def cmd_profile_set_password(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import credentials

    what = credentials.TOKEN if args.token else credentials.PASSWORD
    secret = read_secret(args, what)
    credentials.set_profile_secret(ctx.actor, args.profile, secret, ctx.store, what)
    print(f"{what} of profile {safe(args.profile)} set")
    return EXIT_OK


def cmd_profile_set_oauth(ctx: Context, args: argparse.Namespace) -> int:
    """The client credential for the profile's OAuth provider; a file is read once, here, and may be
    deleted afterwards."""
    from mbxtui.core.services import credentials
    from mbxtui.core.services.credentials import read_secret_line

    if args.client_secret_stdin:
        kind, value = "client_secret", read_secret_line(sys.stdin)
    else:
        kind, option, path = (("certificate", "--certificate-file", args.certificate_file) if args.certificate_file
                              else ("service_account", "--service-account-file", args.service_account_file))
        try:
            with open(path, "rb") as file:
                value = file.read(MAX_CREDENTIAL_FILE + 1)
        except OSError as exc:
            raise InvalidInput(option, f"cannot read {safe(path)}: {exc.strerror}") from None
    credentials.set_profile_oauth(ctx.actor, args.profile, kind, value, ctx.store)
    print(f"OAuth {kind.replace('_', ' ')} of profile {safe(args.profile)} set")
    return EXIT_OK


def cmd_profile_test(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.profile_check import check_profile

    checked = check_profile(ctx.actor, args.profile, ctx.store)
    if args.json:
        print_json(checked.as_dict())
    else:
        from mbxtui.core.display import check_step_lines

        print("\n".join(check_step_lines(checked.directions)))
    return EXIT_OK if checked.passed else EXIT_TEST_FAILED


def _profile_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    # The enumerated fields are named in metavars but checked by the service (exit 1, the allowed
    # values named, any case accepted), as the console's forms are.
    p.add_argument("--type", required=required, metavar=metavar(ProfileType, ","), help=metavar(ProfileType))
    for side in ("incoming", "outgoing"):
        p.add_argument(f"--{side}-host", required=required, metavar="HOST")
        p.add_argument(f"--{side}-port", required=required, metavar="PORT")
        p.add_argument(f"--{side}-tls", required=required, metavar=metavar(TlsMode))
    p.add_argument("--incoming-auth", required=required, metavar=metavar(IncomingAuth))
    p.add_argument("--outgoing-auth", required=required, metavar=metavar(OutgoingAuth))
    p.add_argument("--username", help="the profile's own user name (for profile credentials)")
    p.add_argument("--ca-file", metavar="PATH", help="PEM bundle of CAs to trust instead of the system's")
    p.add_argument("--max-connections", metavar="N", help="1–300 (default 10)")
    p.add_argument("--timeout", metavar="SECONDS", help="bound of one connection test, 1–600 (default 30)")
    switch(p, "--verify-delivery", "check over IMAP that the test message arrived")
    p.add_argument("--owner", metavar="USER_EMAIL", help="the user who receives the profile's alerts")
    p.add_argument("--process-email-from", metavar="DATE")
    p.add_argument("--min-polling-minutes", metavar="N")
    p.add_argument("--retest-hours", metavar="HOURS|none",
                   help="test enabled mailboxes again when not proven for this long, 1–8760 (R33); none: never")
    p.add_argument("--processed-folder", metavar="FOLDER|none",
                   help="imap_smtp only: move processed mail to this folder instead of deleting it (R28); "
                        "none: delete it")
    p.add_argument("--oauth-provider", metavar=metavar(OAuthProvider) + "|none",
                   help="with oauth2 authentication: fetch tokens from this provider (none: tokens set by hand)")
    p.add_argument("--oauth-tenant", metavar="ID", help="microsoft365: the directory (tenant) id")
    p.add_argument("--oauth-client-id", metavar="ID", help="the application (client) id")
    p.add_argument("--oauth-issuer", metavar="URL",
                   help="generic: the provider's issuer URL; microsoft365: another login host (a national cloud)")
    p.add_argument("--oauth-scope", metavar="SCOPE",
                   help="default: https://outlook.office365.com/.default (microsoft365), https://mail.google.com/ "
                        "(google)")
    p.add_argument("--allow-plaintext-credentials", action="store_true",
                   help="global_admin only: let TLS mode none carry credentials to a host off this machine")
    json_option(p)


def register(commands: Commands) -> None:
    profiles = group(commands, "profile", "email server profiles")
    p = command(profiles, "add", cmd_profile_add, "create a profile")
    p.add_argument("--name", required=True)
    _profile_options(p, required=True)
    p = command(profiles, "edit", cmd_profile_edit, "change a profile")
    p.add_argument("profile", metavar="NAME")
    p.add_argument("--name", dest="new_name", metavar="NEW_NAME")
    switch(p, "--active")
    _profile_options(p, required=False)
    json_option(command(profiles, "list", cmd_profile_list, "list profiles"))
    p = command(profiles, "show", cmd_profile_show, "show a profile")
    p.add_argument("profile", metavar="NAME")
    json_option(p)
    p = command(profiles, "set-password", cmd_profile_set_password, "store the profile's password in the keyring")
    p.add_argument("profile", metavar="NAME")
    secret_options(p)
    p = command(profiles, "confirm-secret", cmd_profile_confirm_secret,
                "confirm the profile's password and token for its current endpoint")
    p.add_argument("profile", metavar="NAME")
    p = command(profiles, "set-oauth", cmd_profile_set_oauth,
                "store the client credential of the profile's OAuth provider in the keyring")
    p.add_argument("profile", metavar="NAME")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--client-secret-stdin", action="store_true", help="read the client secret from standard input")
    given.add_argument("--certificate-file", metavar="PEM", help="the app's private key and certificate (read once)")
    given.add_argument("--service-account-file", metavar="JSON", help="google: the service account's key file "
                                                                      "(read once)")
    p = command(profiles, "test", cmd_profile_test, "test the profile's own connection settings")
    p.add_argument("profile", metavar="NAME")
    json_option(p)
    profile_detect.register(profiles)
    profile_diagnose.register(profiles)
