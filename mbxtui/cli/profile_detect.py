"""``profile detect EMAIL``: find a new profile's servers from an address, probe each, propose the
settings; ``--create NAME`` saves them as a profile once the person asks for it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, UsageError, command, json_option
from mbxtui.cli.output import EXIT_OK, EXIT_TEST_FAILED, print_json, print_record, safe

if TYPE_CHECKING:
    from mbxtui.core.detect import Detection

_VERDICT_TITLES = {"kept": "kept", "not_probed": "not probed", "dropped": "dropped"}


def cmd_profile_detect(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core import detect

    if args.create is not None:
        detect.refuse_existing_name(ctx.actor, args.create)
    elif args.oauth_client_id or args.oauth_tenant:
        raise UsageError("--oauth-client-id and --oauth-tenant go with --create NAME")
    found = detect.detect_settings(ctx.actor, args.email, dns_server=args.dns_server, ca_file=args.ca_file,
                                   timeout=args.timeout)
    if args.create is None:
        if args.json:
            print_json(found.as_dict())
        else:
            _print_detection(found)
            if found.chosen is not None:
                print("Nothing was saved: run again with --create NAME to create a profile with these settings.")
        return EXIT_OK if found.chosen is not None else EXIT_TEST_FAILED
    # Created first, shown after: a refusal leaves stdout empty, as every refusal of the command line.
    created = detect.create_profile(ctx.actor, args.create, found, ca_file=args.ca_file,
                                    oauth_tenant=args.oauth_tenant, oauth_client_id=args.oauth_client_id)
    if args.json:
        print_json({**found.as_dict(), "created": created.as_dict()})
        return EXIT_OK
    _print_detection(found)
    print(f"Profile {safe(created.name)} created with these settings.")
    if found.chosen is not None and found.chosen.oauth_provider:
        print(f"Next: store the client credential of its OAuth provider with `mbxtui profile set-oauth "
              f"{safe(created.name)} ...`.")
    return EXIT_OK


def _print_detection(found: Detection) -> None:
    from mbxtui.core.detect.model import SOURCE_NAMES

    print(f"Settings for {safe(found.email)} (domain {safe(found.domain)})")
    print("Sources:")
    for report in found.sources:
        print(f"  {SOURCE_NAMES[report.source]}: {safe(report.outcome)}")
    print("Candidates:" if found.tried else "Candidates: none")
    for tried in found.tried:
        candidate = tried.candidate
        print(f"  {_VERDICT_TITLES[tried.verdict.value]:<10} {candidate.protocol.upper():<4} "
              f"{safe(candidate.where)} {candidate.tls} ({SOURCE_NAMES[candidate.source]}): {safe(tried.reason)}")
    for warning in found.warnings:
        print(f"Warning: {safe(warning)}")
    if found.chosen is None:
        print(f"Nothing to propose: {safe(found.problem)}")
        return
    print("Proposed settings:")
    print_record({key: value for key, value in found.chosen.profile_fields().items() if value is not None}, "  ")


def register(profiles: Commands) -> None:
    p = command(profiles, "detect", cmd_profile_detect,
                "find a new profile's servers from an email address (autoconfig, SRV, MX presets, common "
                "names), each probed")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--dns-server", metavar="HOST[:PORT]", help="ask this DNS server for every name (default: "
                                                               "this machine's resolver)")
    p.add_argument("--ca-file", metavar="PATH", help="PEM bundle of CAs to trust instead of the system's (also "
                                                     "saved in the profile with --create)")
    p.add_argument("--timeout", metavar="SECONDS", default="10",
                   help="bound of each DNS question, fetch and probe, 1-120 (default 10)")
    p.add_argument("--create", metavar="NAME", help="create a profile NAME with the proposed settings")
    p.add_argument("--oauth-client-id", metavar="ID", help="with --create, for a Microsoft 365 or Google preset")
    p.add_argument("--oauth-tenant", metavar="ID", help="with --create, Microsoft 365: the tenant (default: the "
                                                        "address's domain)")
    json_option(p)
