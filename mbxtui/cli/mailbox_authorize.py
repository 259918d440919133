"""``mbxtui mailbox authorize EMAIL``: a person authorizes a mailbox with its own credentials on an
oauth2 profile, through the device-code flow (a URL and a code typed in any browser: it works over
SSH). The refresh token goes to the keyring only; nothing of a token is printed.
``mbxtui mailbox deauthorize EMAIL`` takes it back: revoked at the provider where it can be, removed
from the keyring whatever the provider answered."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, command, json_option
from mbxtui.cli.output import EXIT_ERROR, EXIT_OK, safe

if TYPE_CHECKING:
    from mbxtui.core.oauth.delegated import DeviceCode

INTERRUPTED = 130


def cmd_mailbox_authorize(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.oauth.delegated import authorize_command
    from mbxtui.core.services import authorizations

    store = ctx.store  # unlocked before the code is shown: nothing is asked once the person approved

    def show(code: DeviceCode) -> None:
        minutes = max(1, round(code.expires_in / 60))
        if args.json:
            # One line each (JSON Lines): the code while waiting, the result once approved.
            print(json.dumps({"verification_uri": code.verification_uri, "user_code": code.user_code,
                              "expires_in": int(code.expires_in)}))
        else:
            print(f"To authorize mailbox {safe(args.email)}, open {safe(code.verification_uri)} in any browser "
                  f"and enter the code {safe(code.user_code)} (valid for {minutes} minute(s)).")
            print("Waiting for the approval; Ctrl-C stops without storing anything.")
        sys.stdout.flush()

    try:
        done = authorizations.authorize(ctx.actor, args.email, store, show)
    except KeyboardInterrupt:
        print(f"mbxtui: the authorization of {safe(args.email)} was interrupted before it was approved: nothing "
              f"was stored; run `{safe(authorize_command(args.email))}` again to start over", file=sys.stderr)
        return INTERRUPTED
    except authorizations.AuthorizationFailed as failed:
        print(f"mbxtui: {safe(failed)}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(done.as_dict()))
    else:
        until = f"; its refresh token can expire on {done.refresh_expires_on:%Y-%m-%d}" if done.refresh_expires_on \
            else ""
        print(f"mailbox {safe(done.email)} authorized{until}. Next: `mbxtui test-enable {safe(done.email)}`")
    return EXIT_OK


def cmd_mailbox_deauthorize(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import authorizations

    done = authorizations.deauthorize(ctx.actor, args.email, ctx.store)
    if args.json:
        print(json.dumps(done.as_dict()))
    else:
        print(f"mailbox {safe(done.email)} deauthorized: its refresh token was removed from the keyring; "
              f"{safe(done.revocation)}" if done.warning is None else
              f"mailbox {safe(done.email)} deauthorized: {safe(done.revocation)}")
    if done.warning is not None:
        print(f"mbxtui: warning: {safe(done.warning)}", file=sys.stderr)
    return EXIT_ERROR if done.revoked is False or done.warning is not None else EXIT_OK


def register(boxes: Commands) -> None:
    p = command(boxes, "authorize", cmd_mailbox_authorize,
                "authorize a mailbox's own OAuth2 access with the device-code flow (works over SSH)")
    p.add_argument("email")
    json_option(p)
    p = command(boxes, "deauthorize", cmd_mailbox_deauthorize,
                "take back a mailbox's own OAuth2 authorization: revoked at the provider where it can be, "
                "removed from the keyring (exit 1 when the provider refused or could not be reached, or the "
                "keyring could not remove it)")
    p.add_argument("email")
    json_option(p)
