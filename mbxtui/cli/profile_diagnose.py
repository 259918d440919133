"""``mbxtui profile diagnose NAME [--mailbox EMAIL] [--json]``: why an OAuth2 profile's logins fail
(core/diagnosis.py). Exit 0 when the token and every login passed and nothing is wrong, 1 otherwise.
The token is never printed: only its claims."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, command, json_option
from mbxtui.cli.output import EXIT_ERROR, EXIT_OK, print_json, safe


def cmd_profile_diagnose(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.diagnosis import diagnose_profile

    diagnosis = diagnose_profile(ctx.actor, args.profile, ctx.store, mailbox=args.mailbox)
    if args.json:
        print_json(diagnosis.as_dict())
    else:
        print("\n".join(_lines(diagnosis.as_dict())))
    return EXIT_OK if diagnosis.passed else EXIT_ERROR


def _lines(result: dict) -> list[str]:
    from mbxtui.core.display import check_step_lines

    lines = [f"profile {safe(result['profile'])} (OAuth2 provider {safe(result['provider'])})",
             f"mailbox {safe(result['mailbox'])} ({safe(result['mailbox_chosen'])})"]
    token = result["token"]
    if not token["ok"]:
        lines.append("token: none was issued")
    else:
        lines.append(f"token: issued in {token['seconds'] * 1000:.0f} ms")
        lines += [f"  {line}" for line in _claim_lines(token["claims"])]
    for protocol, login in result["logins"].items():
        mechanism = f" with {safe(login['mechanism'])}" if login.get("mechanism") else ""
        lines.append(f"login {protocol.upper()}{mechanism}: {'passed' if login['ok'] else 'FAILED'}")
        lines += check_step_lines({protocol: login})[1:]
    for protocol, why in result["not_checked"].items():
        lines.append(f"login {protocol.upper()}: not checked ({safe(why)})")
    if not result["findings"]:
        lines.append("nothing wrong: the token and every login passed")
        return lines
    lines.append("what is wrong, and what to change where:")
    lines += [f"  - {safe(finding['code'])}: {safe(finding['message'])}" for finding in result["findings"]]
    return lines


def _claim_lines(claims: dict) -> list[str]:
    if not claims["jwt"]:
        return [safe(claims["why_unreadable"])]
    shown = [("audience", ", ".join(claims["audience"]) or "none"), ("tenant (tid)", claims["tenant"] or "none"),
             ("issuer", claims["issuer"] or "none"), ("app", claims["app"] or "none")]
    if claims["roles"] or not claims["scopes"]:
        shown.append(("roles", " ".join(claims["roles"]) or "none"))
    if claims["scopes"]:
        shown.append(("scopes", " ".join(claims["scopes"])))
    shown.append(("expires", _expiry(claims["expires_at"])))
    return [f"{name}: {safe(value)}" for name, value in shown]


def _expiry(expires_at: str | None) -> str:
    """When the token expires, and how long from now by the core's clock (on PostgreSQL the database
    server's, see core/clock.py), the clock the console's "valid until" of a token is counted by."""
    from mbxtui.core import clock

    if expires_at is None:
        return "not said"
    left = (datetime.fromisoformat(expires_at) - clock.now().replace(tzinfo=timezone.utc)).total_seconds()
    when = f"in {left / 60:.0f} min" if left >= 0 else f"{-left / 60:.0f} min ago"
    return f"{expires_at} ({when})"


def register(profiles: Commands) -> None:
    p = command(profiles, "diagnose", cmd_profile_diagnose,
                "fetch an OAuth2 profile's token, read its claims, log in as a mailbox and say what is wrong")
    p.add_argument("profile", metavar="NAME")
    p.add_argument("--mailbox", metavar="EMAIL",
                   help="log in as this mailbox (default: the profile's first enabled, else first approved, mailbox; "
                        "without a client credential, one with its own authorization first)")
    json_option(p)
