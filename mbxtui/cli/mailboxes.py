"""Mailboxes: ``mailbox list|show|edit|set-password``, the bulk actions ``mailbox
approve|reject|deactivate|activate|bulk-edit|apply-defaults|confirm-secret``, and ``forward-mailbox
add``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any, Callable

from mbxtui.cli import mailbox_authorize
from mbxtui.cli.context import Context, read_secret, selection
from mbxtui.cli.options import (
    Commands, command, group, json_option, metavar, method_options, paging, secret_options, selection_options,
    switch, view_option,
)
from mbxtui.cli.output import EXIT_OK, emit, print_json, print_record, print_table, safe
from mbxtui.core.enums import Tracking

if TYPE_CHECKING:
    from mbxtui.core.permissions import Actor
    from mbxtui.core.services.bulk import BulkResult
    from mbxtui.core.services.selection import Selection

log = logging.getLogger(__name__)

MAILBOX_COLUMNS = [
    ("name", "NAME"), ("email", "EMAIL"), ("regarding", "REGARDING"), ("profile", "PROFILE"),
    ("incoming_method", "IN"), ("outgoing_method", "OUT"), ("act_method", "ACT"), ("approval", "APPROVAL"),
    ("incoming_status", "IN STATUS"), ("outgoing_status", "OUT STATUS"), ("act_status", "ACT STATUS"),
    ("enabled", "ENABLED"), ("test_completed_on", "LAST TESTED"),
]


def _enabled_text(row: dict[str, Any]) -> str:
    parts = [d for d in ("incoming", "outgoing", "act") if row.get(f"{d}_enabled")]
    return ",".join(parts) or "no"


def cmd_mailbox_list(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import mailbox_views

    page = mailbox_views.list_mailboxes(ctx.actor, view=args.view, filter_text=args.filter, sort=args.sort,
                                    descending=args.desc, limit=args.limit, offset=args.offset)
    if args.json:
        print_json({"total": page.total, "offset": args.offset, "rows": page.rows})
        return EXIT_OK
    for row in page.rows:
        row["enabled"] = _enabled_text(row)
    shown = f"{args.offset + 1}–{args.offset + len(page.rows)}" if page.rows else "none"
    print_table(page.rows, MAILBOX_COLUMNS, footer=f"{shown} of {page.total} mailbox(es) in view {args.view}")
    return EXIT_OK


def cmd_mailbox_show(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.jobs import queue as jobs
    from mbxtui.core.services import authorizations, credentials, mailbox_views, mailboxes

    shown = mailboxes.show(ctx.actor, args.email)
    last = jobs.last_result(shown.id)
    data: dict[str, Any] = {**shown.as_dict(), "secret_endpoint": credentials.mailbox_secret_state(ctx.actor, shown.email),
                            "last_test": None if last is None else last.as_dict(),
                            "authorization": authorizations.state_of(ctx.actor, shown.email),
                            "sync": mailbox_views.sync_of(ctx.actor, shown.id)}
    emit(args, data, _print_mailbox)
    return EXIT_OK


def _print_mailbox(data: dict[str, Any]) -> None:
    record = dict(data)
    sync = record.pop("sync")
    authorization = record.pop("authorization")
    print_record(record)
    print("Authorization")
    if authorization is None:
        print("  none")
    else:
        error = authorization["last_refresh_error"]
        print_record({
            "authorized": f"{authorization['authorized_on']} by {authorization['authorized_by']}",
            "refresh token can expire": authorization["refresh_expires_on"] or "-",
            "last refresh": authorization["last_refresh_on"] or "never",
            "last refresh error": error or "-",
        }, "  ")
    print("Sync")
    if sync["not_processed"]:
        print_record({"not processed": sync["not_processed"]}, "  ")
    if sync["state"] is None:
        print(f"  never processed{' (stale)' if sync['stale'] else ''}")
        return
    error = sync["last_error"]
    print_record({
        "state": sync["state"] + (" (stale)" if sync["stale"] else ""),
        "last cycle": f"{sync['last_cycle_started'] or '-'} to {sync['last_cycle_finished'] or '-'}",
        "last incoming sync": sync["last_incoming_success"] or "never",
        "last outgoing sync": sync["last_outgoing_success"] or "never",
        "items": f"{sync['items_last_cycle']} last cycle, {sync['items_total']} in total",
        "next due": sync["next_due"] or "-",
        "last error": f"{error['code']}: {error['text']}" if error else "-",
    }, "  ")


def cmd_mailbox_edit(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import mailboxes

    fields = {
        "name": args.name, "email": args.new_email, "profile": args.profile, "incoming_method": args.incoming,
        "outgoing_method": args.outgoing, "act_method": args.act, "username": args.username,
        "use_own_credentials": args.use_own_credentials, "delete_after_processing": args.delete_after_processing,
        "process_email_after": args.process_email_after, "tracking": args.tracking,
    }
    # The keyring is opened only when a new address or OAuth client takes the mailbox's own authorization out of it.
    edited = mailboxes.edit(ctx.actor, args.email, store=lambda: ctx.store, **fields)
    emit(args, edited.as_dict(), print_record)
    for warning in edited.warnings:  # the edit stands; what could not follow it is said
        print(f"mbxtui: warning: {safe(warning)}", file=sys.stderr)
        log.warning("warning: %s", warning)
    return EXIT_OK


def cmd_mailbox_set_password(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import credentials

    what = credentials.TOKEN if args.token else credentials.PASSWORD
    secret = read_secret(args, what)
    credentials.set_mailbox_secret(ctx.actor, args.email, secret, ctx.store, what)
    print(f"{what} of mailbox {safe(args.email)} set")
    return EXIT_OK


def _bulk(ctx: Context, args: argparse.Namespace, action: Callable[[Actor, Selection], BulkResult], verb: str) -> int:
    result = action(ctx.actor, selection(args))
    data = result.as_dict()
    emit(args, data, lambda d: print(f"{verb} {d['changed']} of {d['selected']} selected mailbox(es)"))
    return EXIT_OK


def cmd_mailbox_approve(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import bulk

    return _bulk(ctx, args, bulk.approve, "approved")


def cmd_mailbox_reject(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import bulk

    return _bulk(ctx, args, bulk.reject, "rejected")


def cmd_mailbox_deactivate(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import bulk

    return _bulk(ctx, args, bulk.deactivate, "deactivated")


def cmd_mailbox_activate(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import bulk

    return _bulk(ctx, args, bulk.activate, "activated")


def cmd_mailbox_bulk_edit(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import bulk

    def bulk_edit(actor: Actor, chosen: Selection) -> BulkResult:
        return bulk.bulk_edit(actor, chosen, profile=args.profile, incoming=args.incoming,
                              outgoing=args.outgoing, act=args.act, tracking=args.tracking)

    return _bulk(ctx, args, bulk_edit, "changed")


def cmd_mailbox_apply_defaults(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import bulk

    data = bulk.apply_defaults(ctx.actor, selection(args), schedule_test=not args.no_test).as_dict()

    def render(d: dict[str, Any]) -> None:
        print(f"applied the default email settings to {d['selected']} mailbox(es) ({d['changed']} recorded)")
        if d["test_batch"] is not None:
            print(f"Test & Enable scheduled (batch {d['test_batch']}); run `mbxtui worker` or open the console")

    emit(args, data, render)
    return EXIT_OK


def cmd_mailbox_confirm_secret(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import credentials

    selected, confirmed = credentials.confirm_mailbox_secrets(ctx.actor, selection(args))
    emit(args, {"selected": selected, "changed": confirmed},
         lambda d: print(f"confirmed the secrets of {d['changed']} of {d['selected']} selected mailbox(es) "
                         f"for their profile's current endpoint"))
    return EXIT_OK


def cmd_forward_add(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import mailboxes

    emit(args, mailboxes.create_forward_mailbox(
        ctx.actor, name=args.name, email=args.email, profile=args.profile,
        delete_after_processing=args.delete_after_processing, owner=args.owner).as_dict(), print_record)
    return EXIT_OK


def tracking_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking", metavar=metavar(Tracking) + "|default",
                   help="which messages become activities (R27); default follows the organisation's setting")


BULK_ACTIONS = (
    ("approve", cmd_mailbox_approve, "approve email addresses (global_admin, service_admin)"),
    ("reject", cmd_mailbox_reject, "reject email addresses (global_admin, service_admin)"),
    ("deactivate", cmd_mailbox_deactivate, "deactivate mailboxes"),
    ("activate", cmd_mailbox_activate, "activate mailboxes again"),
    ("confirm-secret", cmd_mailbox_confirm_secret,
     "confirm the mailboxes' passwords and tokens for their profile's current endpoint"),
)


def register(commands: Commands) -> None:
    boxes = group(commands, "mailbox", "mailboxes")
    p = command(boxes, "list", cmd_mailbox_list, "list the mailboxes of a view")
    view_option(p, default="active")
    p.add_argument("--filter", help="only mailboxes whose name or address contains this text")
    p.add_argument("--sort", default="name", help="column to sort by (name, email, profile, approval, status, ...)")
    p.add_argument("--desc", action="store_true", help="sort descending")
    paging(p)
    json_option(p)
    p = command(boxes, "show", cmd_mailbox_show, "show one mailbox")
    p.add_argument("email")
    json_option(p)
    p = command(boxes, "edit", cmd_mailbox_edit, "change one mailbox")
    p.add_argument("email")
    p.add_argument("--name")
    p.add_argument("--email", dest="new_email", metavar="NEW")
    p.add_argument("--profile", metavar="NAME")
    method_options(p)
    p.add_argument("--username")
    switch(p, "--use-own-credentials")
    switch(p, "--delete-after-processing")
    p.add_argument("--process-email-after", metavar="DATE")
    tracking_option(p)
    json_option(p)
    p = command(boxes, "set-password", cmd_mailbox_set_password, "store the mailbox's password in the keyring")
    p.add_argument("email")
    secret_options(p)
    mailbox_authorize.register(boxes)
    for name, handler, text in BULK_ACTIONS:
        p = command(boxes, name, handler, text)
        selection_options(p)
        json_option(p)
    p = command(boxes, "bulk-edit", cmd_mailbox_bulk_edit, "set profile, methods and tracking on many mailboxes")
    selection_options(p)
    p.add_argument("--profile", metavar="NAME")
    method_options(p)
    tracking_option(p)
    json_option(p)
    p = command(boxes, "apply-defaults", cmd_mailbox_apply_defaults,
                "apply the default email settings, then schedule Test & Enable")
    selection_options(p)
    p.add_argument("--no-test", action="store_true", help="do not schedule Test & Enable")
    json_option(p)

    forward = group(commands, "forward-mailbox", "forward mailboxes")
    p = command(forward, "add", cmd_forward_add, "create a forward mailbox")
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--profile", required=True, metavar="NAME")
    p.add_argument("--delete-after-processing", action="store_true")
    p.add_argument("--owner", metavar="USER_EMAIL")
    json_option(p)
