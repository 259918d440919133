"""The command line: every headless action a script needs, over the same services as the console.

    mbxtui [--db PATH] [--as LOGIN] COMMAND ...

Exit status: 0 success, 1 refused or failed (one line on stderr), 2 usage error, 3 a test failed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from mbxtui import __version__
from mbxtui.core.display import INVISIBLE
from mbxtui.core.display import cell as safe

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_TEST_FAILED = 0, 1, 2, 3
VIEWS = ("active", "all", "mine", "forward", "pending", "failed", "disabled")


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"mbxtui: error: {message}\n")


# --- output ------------------------------------------------------------------------------------

# json.dumps escapes only the C0 controls; the others are written as \u escapes too, so that no
# terminal acts on them (they occur only inside strings, where the escape means the same).
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in INVISIBLE if code >= 0x7F}


def print_json(data: Any) -> None:
    print(json.dumps(data, default=str, ensure_ascii=False, indent=2).translate(_JSON_ESCAPES))


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], *, footer: str = "") -> None:
    cells = [[safe(_dig(row, key)) for key, _ in columns] for row in rows]
    widths = [len(title) for _, title in columns]
    for line in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, line)]
    print("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths)).rstrip())
    for line in cells:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
    if footer:
        print(footer)


def print_record(data: dict[str, Any], indent: str = "") -> None:
    width = max((len(k) for k in data), default=0)
    for key, value in data.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            print_record(value, indent + "  ")
        elif isinstance(value, list):
            print(f"{indent}{key.ljust(width)}  {', '.join(safe(v) for v in value) or '-'}")
        else:
            print(f"{indent}{key.ljust(width)}  {safe(value)}")


def _dig(row: dict[str, Any], key: str) -> Any:
    value: Any = row
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def emit(args: argparse.Namespace, data: Any, render: Callable[[Any], None]) -> None:
    if getattr(args, "json", False):
        print_json(data)
    else:
        render(data)


# --- context -----------------------------------------------------------------------------------

class Context:
    """What a command runs with: the open database, the acting operator, the secret store."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._actor = None
        self._store = None

    def open_database(self):
        from mbxtui.core import db, paths

        path = paths.database_location(self.args.db) if self.args.db else paths.default_database()
        self.db_path = path
        database = db.open_database(path)
        warning = db.world_readable_warning(path)
        if warning:
            print(f"mbxtui: {safe(warning)}", file=sys.stderr)
        return database

    @property
    def actor(self):
        if self._actor is None:
            from mbxtui.core.services import operators

            self._actor = operators.current_actor(as_login=self.args.as_login)
        return self._actor

    @property
    def store(self):
        if self._store is None:
            self._store = open_secret_store()
        return self._store


def open_secret_store():
    """The keyring; when only the encrypted file is available, unlock it with the master password
    from MBXTUI_MASTER_PASSWORD or asked for on the terminal (never a prompt of another library)."""
    from mbxtui.core import paths
    from mbxtui.core.secrets import MASTER_PASSWORD_ENV, SecretStore, SecretsError

    store = SecretStore.open(paths.ensure_private_dir(paths.data_dir()))
    if store.warning:
        print(f"mbxtui: warning: {store.warning}", file=sys.stderr)
    if not store.needs_master_password:
        return store
    password = os.environ.get(MASTER_PASSWORD_ENV)
    if password is None:
        if not _has_terminal():
            raise SecretsError(
                f"no OS keyring is available and {store.backend_name} is locked: set {MASTER_PASSWORD_ENV} "
                "or run this command from a terminal to be asked for the master password"
            )
        prompt = f"Master password for {store.backend_name}: "
        if store.creating_new_file:
            print(f"mbxtui: no OS keyring is available; secrets will be kept in {store.backend_name}, "
                  "encrypted with a master password you choose now.", file=sys.stderr)
            password = getpass.getpass("New master password: ")
            if password != getpass.getpass("Repeat the master password: "):
                raise SecretsError("the two master passwords differ; nothing was stored")
        else:
            password = getpass.getpass(prompt)
    store.unlock(password)
    return store


def _has_terminal() -> bool:
    try:
        with open("/dev/tty"):
            return True
    except OSError:
        return False


def _read_secret(args: argparse.Namespace, what: str) -> str:
    from mbxtui.core.services.credentials import check_secret, read_secret_line

    if not args.password_stdin:
        raise UsageError(f"give the {what} on standard input with --password-stdin (never on the command line)")
    return check_secret(what, read_secret_line(sys.stdin))


def _selection(args: argparse.Namespace):
    from mbxtui.core.services.selection import Selection

    emails = getattr(args, "emails", None) or []
    view = getattr(args, "view", None)
    filter_text = getattr(args, "filter", None)
    profile = getattr(args, "profile_all", None)
    given = sum(bool(x) for x in (emails, view or filter_text, profile))
    if given != 1:
        raise UsageError("name the mailboxes: EMAIL..., or --view/--filter" + (", or --profile" if hasattr(args, "profile_all") else ""))
    if emails:
        return Selection.of_emails(emails)
    if profile:
        return Selection.of_profile(profile)
    return Selection.of_view(view, filter_text)


# --- commands ----------------------------------------------------------------------------------

def cmd_init(ctx: Context, args) -> int:
    from mbxtui.core.services import operators

    actor = operators.initialise()
    print(f"initialised {safe(ctx.args.db or 'the default database')}; {actor.login} is {actor.role.value}")
    return EXIT_OK


def cmd_operator_add(ctx, args):
    from mbxtui.core.services import operators

    emit(args, operators.add(ctx.actor, args.login, args.role, args.user), print_record)
    return EXIT_OK


def cmd_operator_list(ctx, args):
    from mbxtui.core.services import operators

    emit(args, operators.list_operators(ctx.actor),
         lambda rows: print_table(rows, [("login", "LOGIN"), ("role", "ROLE"), ("user", "USER")]))
    return EXIT_OK


def cmd_operator_set_role(ctx, args):
    from mbxtui.core.services import operators

    emit(args, operators.set_role(ctx.actor, args.login, args.role), print_record)
    return EXIT_OK


def cmd_operator_remove(ctx, args):
    from mbxtui.core.services import operators

    operators.remove(ctx.actor, args.login)
    print(f"removed operator {args.login}")
    return EXIT_OK


def cmd_whoami(ctx, args):
    actor = ctx.actor
    data = {"login": actor.login, "role": actor.role.value, "acting_for": actor.by_login}
    emit(args, data, print_record)
    return EXIT_OK


def cmd_user_add(ctx, args):
    from mbxtui.core.services import users

    emit(args, users.add_user(ctx.actor, args.name, args.email), print_record)
    return EXIT_OK


USER_COLUMNS = [("name", "NAME"), ("email", "EMAIL"), ("active", "ACTIVE"), ("mailbox", "MAILBOX")]


def cmd_user_list(ctx, args):
    from mbxtui.core.services import users

    emit(args, users.list_users(ctx.actor, filter_text=args.filter, limit=args.limit, offset=args.offset),
         lambda rows: print_table(rows, USER_COLUMNS))
    return EXIT_OK


def cmd_user_deactivate(ctx, args):
    from mbxtui.core.services import users

    emit(args, users.deactivate_user(ctx.actor, args.email), print_record)
    return EXIT_OK


def cmd_user_activate(ctx, args):
    from mbxtui.core.services import users

    emit(args, users.activate_user(ctx.actor, args.email), print_record)
    return EXIT_OK


def cmd_queue_add(ctx, args):
    from mbxtui.core.services import users

    emit(args, users.add_queue(ctx.actor, args.name, args.email, args.owner), print_record)
    return EXIT_OK


def cmd_queue_list(ctx, args):
    from mbxtui.core.services import users

    emit(args, users.list_queues(ctx.actor, limit=args.limit, offset=args.offset),
         lambda rows: print_table(rows, [("name", "NAME"), ("email", "EMAIL"), ("owner", "OWNER"),
                                         ("active", "ACTIVE"), ("mailbox", "MAILBOX")]))
    return EXIT_OK


def cmd_queue_deactivate(ctx, args):
    from mbxtui.core.services import users

    emit(args, users.deactivate_queue(ctx.actor, args.email), print_record)
    return EXIT_OK


def cmd_queue_activate(ctx, args):
    from mbxtui.core.services import users

    emit(args, users.activate_queue(ctx.actor, args.email), print_record)
    return EXIT_OK


PROFILE_FIELDS = {
    "name": "name", "type": "type", "incoming_host": "incoming_host", "incoming_port": "incoming_port",
    "incoming_tls": "incoming_tls", "incoming_auth": "incoming_auth", "outgoing_host": "outgoing_host",
    "outgoing_port": "outgoing_port", "outgoing_tls": "outgoing_tls", "outgoing_auth": "outgoing_auth",
    "username": "username", "ca_file": "ca_file", "max_connections": "max_connections",
    "timeout": "timeout_seconds", "verify_delivery": "verify_delivery", "owner": "owner",
    "process_email_from": "process_email_from", "min_polling_minutes": "min_polling_minutes", "active": "active",
}


def _profile_fields(args) -> dict[str, Any]:
    return {field: getattr(args, attr) for attr, field in PROFILE_FIELDS.items() if hasattr(args, attr)}


def cmd_profile_add(ctx, args):
    from mbxtui.core.services import profiles

    emit(args, profiles.create(ctx.actor, **_profile_fields(args)), print_record)
    return EXIT_OK


def cmd_profile_edit(ctx, args):
    from mbxtui.core.services import profiles

    fields = _profile_fields(args)
    fields["name"] = args.new_name
    emit(args, profiles.update(ctx.actor, args.profile, **fields), print_record)
    return EXIT_OK


def cmd_profile_list(ctx, args):
    from mbxtui.core.services import profiles

    emit(args, profiles.list_profiles(ctx.actor),
         lambda rows: print_table(rows, [("name", "NAME"), ("type", "TYPE"), ("incoming.host", "INCOMING"),
                                         ("incoming.port", "PORT"), ("outgoing.host", "OUTGOING"),
                                         ("outgoing.port", "PORT"), ("max_connections", "MAX CONN"),
                                         ("mailboxes", "MAILBOXES"), ("active", "ACTIVE")]))
    return EXIT_OK


def cmd_profile_show(ctx, args):
    from mbxtui.core.services import profiles

    emit(args, profiles.show(ctx.actor, args.profile), print_record)
    return EXIT_OK


def cmd_profile_set_password(ctx, args):
    from mbxtui.core.services import credentials

    what = credentials.TOKEN if args.token else credentials.PASSWORD
    secret = _read_secret(args, what)
    credentials.set_profile_secret(ctx.actor, args.profile, secret, ctx.store, what)
    print(f"{what} of profile {safe(args.profile)} set")
    return EXIT_OK


def cmd_profile_test(ctx, args):
    from mbxtui.core.profile_test import test_profile

    data = test_profile(ctx.actor, args.profile, ctx.store)
    if args.json:
        print_json(data)
    else:
        from mbxtui.core.display import test_step_lines

        print("\n".join(test_step_lines(data["directions"])))
    return EXIT_OK if data["passed"] else EXIT_TEST_FAILED


SETTINGS_FLAGS = {
    "default_profile": "default_profile", "incoming": "default_incoming", "outgoing": "default_outgoing",
    "act": "default_act", "require_approval_users": "require_approval_users",
    "require_approval_queues": "require_approval_queues", "error_alerts": "record_error_alerts",
    "warning_alerts": "record_warning_alerts", "information_alerts": "record_information_alerts",
    "notify_owners": "notify_owners_of_profile_alerts", "retry_attempts": "retry_attempts",
    "retry_interval": "retry_interval_minutes",
}


def cmd_settings_show(ctx, args):
    from mbxtui.core.services import settings

    emit(args, settings.show(ctx.actor), print_record)
    return EXIT_OK


def cmd_settings_set(ctx, args):
    from mbxtui.core.services import settings

    changes = {field: getattr(args, flag) for flag, field in SETTINGS_FLAGS.items()}
    emit(args, settings.update(ctx.actor, **changes), print_record)
    return EXIT_OK


MAILBOX_COLUMNS = [
    ("name", "NAME"), ("email", "EMAIL"), ("regarding", "REGARDING"), ("profile", "PROFILE"),
    ("incoming_method", "IN"), ("outgoing_method", "OUT"), ("act_method", "ACT"), ("approval", "APPROVAL"),
    ("incoming_status", "IN STATUS"), ("outgoing_status", "OUT STATUS"), ("act_status", "ACT STATUS"),
    ("enabled", "ENABLED"), ("test_completed_on", "LAST TESTED"),
]


def _enabled_text(row: dict[str, Any]) -> str:
    parts = [d for d in ("incoming", "outgoing", "act") if row.get(f"{d}_enabled")]
    return ",".join(parts) or "no"


def cmd_mailbox_list(ctx, args):
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


def cmd_mailbox_show(ctx, args):
    from mbxtui.core import jobs
    from mbxtui.core.services import mailboxes

    data = mailboxes.show(ctx.actor, args.email)
    data["last_test"] = jobs.last_result(data["id"])
    emit(args, data, print_record)
    return EXIT_OK


def cmd_mailbox_edit(ctx, args):
    from mbxtui.core.services import mailboxes

    fields = {
        "name": args.name, "email": args.new_email, "profile": args.profile, "incoming_method": args.incoming,
        "outgoing_method": args.outgoing, "act_method": args.act, "username": args.username,
        "use_own_credentials": args.use_own_credentials, "delete_after_processing": args.delete_after_processing,
        "process_email_after": args.process_email_after,
    }
    emit(args, mailboxes.edit(ctx.actor, args.email, **fields), print_record)
    return EXIT_OK


def cmd_mailbox_set_password(ctx, args):
    from mbxtui.core.services import credentials

    what = credentials.TOKEN if args.token else credentials.PASSWORD
    secret = _read_secret(args, what)
    credentials.set_mailbox_secret(ctx.actor, args.email, secret, ctx.store, what)
    print(f"{what} of mailbox {safe(args.email)} set")
    return EXIT_OK


def _bulk(ctx, args, action: Callable, verb: str) -> int:
    result = action(ctx.actor, _selection(args))
    data = result.as_dict()
    emit(args, data, lambda d: print(f"{verb} {d['changed']} of {d['selected']} selected mailbox(es)"))
    return EXIT_OK


def cmd_mailbox_approve(ctx, args):
    from mbxtui.core.services import bulk

    return _bulk(ctx, args, bulk.approve, "approved")


def cmd_mailbox_reject(ctx, args):
    from mbxtui.core.services import bulk

    return _bulk(ctx, args, bulk.reject, "rejected")


def cmd_mailbox_deactivate(ctx, args):
    from mbxtui.core.services import bulk

    return _bulk(ctx, args, bulk.deactivate, "deactivated")


def cmd_mailbox_activate(ctx, args):
    from mbxtui.core.services import bulk

    return _bulk(ctx, args, bulk.activate, "activated")


def cmd_mailbox_bulk_edit(ctx, args):
    from mbxtui.core.services import bulk

    return _bulk(ctx, args, lambda actor, sel: bulk.bulk_edit(
        actor, sel, profile=args.profile, incoming=args.incoming, outgoing=args.outgoing, act=args.act), "changed")


def cmd_mailbox_apply_defaults(ctx, args):
    from mbxtui.core.services import bulk

    data = bulk.apply_defaults(ctx.actor, _selection(args), schedule_test=not args.no_test).as_dict()

    def render(d):
        print(f"applied the default email settings to {d['selected']} mailbox(es) ({d['changed']} recorded)")
        if d["test_batch"] is not None:
            print(f"Test & Enable scheduled (batch {d['test_batch']}); run `mbxtui worker` or open the console")

    emit(args, data, render)
    return EXIT_OK


def cmd_forward_add(ctx, args):
    from mbxtui.core.services import mailboxes

    emit(args, mailboxes.create_forward_mailbox(
        ctx.actor, name=args.name, email=args.email, profile=args.profile,
        delete_after_processing=args.delete_after_processing, owner=args.owner), print_record)
    return EXIT_OK


def cmd_import(ctx, args):
    from mbxtui.core.services import imports

    data = imports.import_csv(ctx.actor, args.kind, Path(args.file))
    emit(args, data, lambda d: print(f"imported {d['imported']} {d['kind']} with their mailboxes"))
    return EXIT_OK


def cmd_alerts_list(ctx, args):
    from mbxtui.core.services import alerts

    rows = alerts.list_alerts(ctx.actor, level=args.level, mailbox=args.mailbox, profile=args.profile,
                              include_dismissed=args.all, limit=args.limit, offset=args.offset)
    emit(args, rows, lambda r: print_table(r, [("id", "ID"), ("created_on", "WHEN"), ("level", "LEVEL"),
                                               ("code", "CODE"), ("mailbox", "MAILBOX"), ("profile", "PROFILE"),
                                               ("text", "TEXT")]))
    return EXIT_OK


def cmd_alerts_dismiss(ctx, args):
    from mbxtui.core.services import alerts

    if args.ids and (args.all_shown):
        raise UsageError("give alert ids or --all, not both")
    if args.all_shown:
        count = alerts.dismiss_matching(ctx.actor, level=args.level, mailbox=args.mailbox, profile=args.profile)
    elif args.ids:
        count = alerts.dismiss(ctx.actor, args.ids)
    else:
        raise UsageError("give alert ids, or --all to dismiss every alert matching the filters")
    print(f"dismissed {count} alert(s)")
    return EXIT_OK


def cmd_audit_list(ctx, args):
    from mbxtui.core.services import audit, mailboxes

    record_kind, record_id = None, None
    if args.mailbox:
        record_kind, record_id = "mailbox", mailboxes.get(args.mailbox).id
    rows = audit.list_entries(ctx.actor, record_kind=record_kind, record_id=record_id, limit=args.limit,
                              offset=args.offset)
    emit(args, rows, lambda r: print_table(r, [("at", "WHEN"), ("login", "OPERATOR"), ("by_login", "AS BY"),
                                               ("action", "ACTION"), ("record_count", "RECORDS"),
                                               ("summary", "SUMMARY")]))
    return EXIT_OK


def _runner(ctx, *, threads: int, on_tested=None, **options):
    from mbxtui.core.jobs import TestRunner

    return TestRunner(ctx.store, threads=threads, on_tested=on_tested, **options)


def cmd_test_enable(ctx, args):
    from mbxtui.core import jobs
    from mbxtui.core.services import mailbox_views

    request = jobs.schedule(ctx.actor, _selection(args))
    if not args.wait:
        emit(args, request, lambda d: print(
            f"Test & Enable queued for {d['queued']} mailbox(es) (batch {d['batch']}); "
            "run `mbxtui worker` or open the console to run it"))
        return EXIT_OK
    batch = request["batch"]
    show_progress = sys.stderr.isatty()

    def report(_events):
        if show_progress:
            p = jobs.batch_progress(batch)
            print(f"\rtested {p.done}/{p.total}: {p.passed} passed, {p.failed} failed, "
                  f"{p.postponed} postponed, {p.remaining} remaining ", end="", file=sys.stderr, flush=True)

    _runner(ctx, threads=args.threads, on_tested=report).run(until_idle=True)
    if show_progress:
        print(file=sys.stderr)
    results = []
    for row in jobs.batch_results(batch):
        details = mailbox_views.rows_by_ids(ctx.actor, [row["mailbox_id"]])[row["mailbox_id"]]
        results.append({
            "email": details["email"], "outcome": row["outcome"],
            "incoming_status": details["incoming_status"], "outgoing_status": details["outgoing_status"],
            "act_status": details["act_status"], "error_code": details["last_error_code"],
            "error": details["last_error_text"], "next_retry": details["postponed_until"],
            "directions": row["directions"],
        })
    progress = jobs.batch_progress(batch)
    if args.json:
        print_json({"batch": batch, "progress": progress.as_dict(), "results": results})
    else:
        print_table(results, [("email", "EMAIL"), ("outcome", "OUTCOME"), ("incoming_status", "IN"),
                              ("outgoing_status", "OUT"), ("act_status", "ACT"), ("error_code", "ERROR"),
                              ("error", "WHAT TO DO")],
                    footer=f"{progress.passed} passed, {progress.failed} failed, {progress.postponed} postponed")
    return EXIT_OK if progress.passed == progress.total else EXIT_TEST_FAILED


def cmd_worker(ctx, args):
    import signal
    import threading

    def report(events):
        for event in events:
            codes = ", ".join(f"{d}: {c}" for d, c in event.failures.items())
            print(f"{event.email}: {event.outcome}{' (' + codes + ')' if codes else ''}", flush=True)

    if args.lease <= 0:
        raise UsageError("--lease: a number of seconds above 0")
    runner = _runner(ctx, threads=args.threads, on_tested=report, lease_seconds=args.lease)
    stop = threading.Event()

    def request_stop(*_):
        stop.set()
        runner.wake()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, request_stop)
    summary = runner.run(stop=stop, until_idle=args.once, poll_seconds=args.poll)
    print(f"tested {summary.tested}: {summary.passed} passed, {summary.failed} failed, "
          f"{summary.postponed} postponed", file=sys.stderr)
    return EXIT_OK


def cmd_console(ctx, args):
    from mbxtui.core import paths
    from mbxtui.tui.app import MbxApp

    actor = ctx.actor
    data_dir = paths.ensure_private_dir(paths.data_dir())
    app = MbxApp(actor, db_path=ctx.db_path, data_dir=data_dir, run_tests=not getattr(args, "no_tests", False),
                 threads=getattr(args, "threads", 32))
    app.run()
    return app.return_code or EXIT_OK


def cmd_migrate(ctx, args):
    from mbxtui.core import paths, transfer

    summary = transfer.copy_installation(paths.database_location(args.source), paths.database_location(args.target))
    note = transfer.secrets_note(summary)
    if args.json:
        print_json({**summary.as_dict(), "secrets": note})
        return EXIT_OK
    print(f"copied {summary.rows:,} rows from {safe(summary.source)} to {safe(summary.target)} "
          f"(schema version {summary.schema_version}, install id {summary.install_id}); row counts verified")
    print_table([{"table": t.name, "rows": f"{t.rows:,}"} for t in summary.tables], [("table", "TABLE"), ("rows", "ROWS")])
    print(note)
    return EXIT_OK


def cmd_demo(ctx, args):
    from mbxtui.demo import run_demo

    return run_demo(reset=args.reset)


# --- parser ------------------------------------------------------------------------------------

def _json(p):
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _paging(p, limit=100):
    p.add_argument("--limit", type=int, default=limit, help=f"at most this many rows (default {limit})")
    p.add_argument("--offset", type=int, default=0, help="skip this many rows first")


def _selection_args(p, *, profile: bool = False):
    p.add_argument("emails", nargs="*", metavar="EMAIL", help="mailbox addresses")
    p.add_argument("--view", choices=VIEWS, help="act on every mailbox of this view")
    p.add_argument("--filter", help="with --view: only mailboxes whose name or address contains this text")
    if profile:
        p.add_argument("--profile", dest="profile_all", metavar="NAME", help="every mailbox of this profile")


def _profile_args(p, *, required: bool):
    types = "imap_smtp|pop3_smtp|exchange_online|exchange_server"
    p.add_argument("--type", required=required, metavar=types.replace("|", ","), help=types)
    for side in ("incoming", "outgoing"):
        p.add_argument(f"--{side}-host", required=required, metavar="HOST")
        p.add_argument(f"--{side}-port", required=required, metavar="PORT")
        p.add_argument(f"--{side}-tls", required=required, metavar="implicit|starttls|none")
    p.add_argument("--incoming-auth", required=required, metavar="mailbox|profile|oauth2")
    p.add_argument("--outgoing-auth", required=required, metavar="mailbox|profile|oauth2|none")
    p.add_argument("--username", help="the profile's own user name (for profile credentials)")
    p.add_argument("--ca-file", metavar="PATH", help="PEM bundle of CAs to trust instead of the system's")
    p.add_argument("--max-connections", metavar="N", help="1–300 (default 10)")
    p.add_argument("--timeout", metavar="SECONDS", help="bound of one connection test, 1–600 (default 30)")
    p.add_argument("--verify-delivery", metavar="on|off", help="check over IMAP that the test message arrived")
    p.add_argument("--owner", metavar="USER_EMAIL", help="the user who receives the profile's alerts")
    p.add_argument("--process-email-from", metavar="DATE")
    p.add_argument("--min-polling-minutes", metavar="N")
    _json(p)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mbxtui", description="Console and command line for server-side email synchronization "
                    "mailboxes. With no command, opens the console.")
    parser.add_argument("--version", action="version", version=f"mbxtui {__version__}")
    parser.add_argument("--db", metavar="PATH", help="the database file, or postgresql://USER@HOST:PORT/DBNAME "
                        "(default: $MBXTUI_DB or the user data dir)")
    parser.add_argument("--as", dest="as_login", metavar="LOGIN", help="act as another operator (global_admin only)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    def command(name: str, handler, help_text: str, parent=commands):
        p = parent.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    def group(name: str, help_text: str):
        p = commands.add_parser(name, help=help_text, description=help_text)
        sub = p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", parser_class=Parser, required=True)
        return sub

    command("init", cmd_init, "create the database and make your login its global_admin")
    p = command("demo", cmd_demo, "open the console on a demo organisation with its own sandbox mail servers "
                "(never your real database or keyring)")
    p.add_argument("--reset", action="store_true", help="start the demo over from scratch")
    p.set_defaults(needs_database=False)
    p = command("console", cmd_console, "open the console (the default when no command is given)")
    p.add_argument("--no-tests", action="store_true", help="do not run queued Test & Enable jobs in this console")
    p.add_argument("--threads", type=int, default=32, help="Test & Enable tests run at once")
    p = command("migrate", cmd_migrate, "copy a whole installation into a new, empty database "
                "(e.g. SQLite to PostgreSQL); secrets stay in the keyring")
    p.add_argument("--from", dest="source", required=True, metavar="DB",
                   help="the installation: sqlite:///path/to/mbxtui.db (or a path) or postgresql://...")
    p.add_argument("--to", dest="target", required=True, metavar="DB",
                   help="the new database: postgresql://USER@HOST:PORT/DBNAME or sqlite:///path")
    p.set_defaults(needs_database=False)
    _json(p)
    p = command("whoami", cmd_whoami, "the operator you act as")
    _json(p)

    ops = group("operator", "operators and their roles")
    p = command("add", cmd_operator_add, "add an operator (global_admin only)", ops)
    p.add_argument("login")
    p.add_argument("--role", required=True, metavar="global_admin|service_admin|system_admin|viewer")
    p.add_argument("--user", metavar="USER_EMAIL", help="the user this operator is ('My Mailboxes')")
    _json(p)
    p = command("list", cmd_operator_list, "list operators", ops)
    _json(p)
    p = command("set-role", cmd_operator_set_role, "change an operator's role", ops)
    p.add_argument("login")
    p.add_argument("--role", required=True)
    _json(p)
    p = command("remove", cmd_operator_remove, "remove an operator", ops)
    p.add_argument("login")

    users = group("user", "users (each has one mailbox)")
    p = command("add", cmd_user_add, "add a user and its mailbox", users)
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    _json(p)
    p = command("list", cmd_user_list, "list users", users)
    p.add_argument("--filter")
    _paging(p, 1000)
    _json(p)
    p = command("deactivate", cmd_user_deactivate, "deactivate a user and its mailbox", users)
    p.add_argument("email")
    _json(p)
    p = command("activate", cmd_user_activate, "activate a user (its mailbox stays inactive)", users)
    p.add_argument("email")
    _json(p)

    queues = group("queue", "queues (each has one mailbox)")
    p = command("add", cmd_queue_add, "add a queue and its mailbox", queues)
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--owner", required=True, metavar="USER_EMAIL")
    _json(p)
    p = command("list", cmd_queue_list, "list queues", queues)
    _paging(p, 1000)
    _json(p)
    p = command("deactivate", cmd_queue_deactivate, "deactivate a queue and its mailbox", queues)
    p.add_argument("email")
    _json(p)
    p = command("activate", cmd_queue_activate, "activate a queue (its mailbox stays inactive)", queues)
    p.add_argument("email")
    _json(p)

    profiles = group("profile", "email server profiles")
    p = command("add", cmd_profile_add, "create a profile", profiles)
    p.add_argument("--name", required=True)
    _profile_args(p, required=True)
    p = command("edit", cmd_profile_edit, "change a profile", profiles)
    p.add_argument("profile", metavar="NAME")
    p.add_argument("--name", dest="new_name", metavar="NEW_NAME")
    p.add_argument("--active", metavar="on|off")
    _profile_args(p, required=False)
    p = command("list", cmd_profile_list, "list profiles", profiles)
    _json(p)
    p = command("show", cmd_profile_show, "show a profile", profiles)
    p.add_argument("profile", metavar="NAME")
    _json(p)
    p = command("set-password", cmd_profile_set_password, "store the profile's password in the keyring", profiles)
    p.add_argument("profile", metavar="NAME")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--token", action="store_true", help="store an OAuth2 access token instead")

    p = command("test", cmd_profile_test, "test the profile's own connection settings", profiles)
    p.add_argument("profile", metavar="NAME")
    _json(p)

    settings = group("settings", "organisation email settings")
    p = command("show", cmd_settings_show, "show the email settings", settings)
    _json(p)
    p = command("set", cmd_settings_set, "change the email settings", settings)
    p.add_argument("--default-profile", metavar="NAME")
    p.add_argument("--incoming", metavar="none|server_side_sync|forward_mailbox")
    p.add_argument("--outgoing", metavar="none|server_side_sync")
    p.add_argument("--act", metavar="none|server_side_sync")
    for flag in ("require-approval-users", "require-approval-queues", "error-alerts", "warning-alerts",
                 "information-alerts", "notify-owners"):
        p.add_argument(f"--{flag}", metavar="on|off")
    p.add_argument("--retry-attempts", metavar="N")
    p.add_argument("--retry-interval", metavar="MINUTES")
    _json(p)

    boxes = group("mailbox", "mailboxes")
    p = command("list", cmd_mailbox_list, "list the mailboxes of a view", boxes)
    p.add_argument("--view", choices=VIEWS, default="active")
    p.add_argument("--filter", help="only mailboxes whose name or address contains this text")
    p.add_argument("--sort", default="name", help="column to sort by (name, email, profile, approval, status, ...)")
    p.add_argument("--desc", action="store_true", help="sort descending")
    _paging(p)
    _json(p)
    p = command("show", cmd_mailbox_show, "show one mailbox", boxes)
    p.add_argument("email")
    _json(p)
    p = command("edit", cmd_mailbox_edit, "change one mailbox", boxes)
    p.add_argument("email")
    p.add_argument("--name")
    p.add_argument("--email", dest="new_email", metavar="NEW")
    p.add_argument("--profile", metavar="NAME")
    p.add_argument("--incoming", metavar="none|server_side_sync|forward_mailbox")
    p.add_argument("--outgoing", metavar="none|server_side_sync")
    p.add_argument("--act", metavar="none|server_side_sync")
    p.add_argument("--username")
    p.add_argument("--use-own-credentials", metavar="on|off")
    p.add_argument("--delete-after-processing", metavar="on|off")
    p.add_argument("--process-email-after", metavar="DATE")
    _json(p)
    p = command("set-password", cmd_mailbox_set_password, "store the mailbox's password in the keyring", boxes)
    p.add_argument("email")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--token", action="store_true", help="store an OAuth2 access token instead")
    for name, handler, text in (
        ("approve", cmd_mailbox_approve, "approve email addresses (global_admin, service_admin)"),
        ("reject", cmd_mailbox_reject, "reject email addresses (global_admin, service_admin)"),
        ("deactivate", cmd_mailbox_deactivate, "deactivate mailboxes"),
        ("activate", cmd_mailbox_activate, "activate mailboxes again"),
    ):
        p = command(name, handler, text, boxes)
        _selection_args(p)
        _json(p)
    p = command("bulk-edit", cmd_mailbox_bulk_edit, "set profile and methods on many mailboxes", boxes)
    _selection_args(p)
    p.add_argument("--profile", metavar="NAME")
    p.add_argument("--incoming", metavar="none|server_side_sync|forward_mailbox")
    p.add_argument("--outgoing", metavar="none|server_side_sync")
    p.add_argument("--act", metavar="none|server_side_sync")
    _json(p)
    p = command("apply-defaults", cmd_mailbox_apply_defaults,
                "apply the default email settings, then schedule Test & Enable", boxes)
    _selection_args(p)
    p.add_argument("--no-test", action="store_true", help="do not schedule Test & Enable")
    _json(p)

    forward = group("forward-mailbox", "forward mailboxes")
    p = command("add", cmd_forward_add, "create a forward mailbox", forward)
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--profile", required=True, metavar="NAME")
    p.add_argument("--delete-after-processing", action="store_true")
    p.add_argument("--owner", metavar="USER_EMAIL")
    _json(p)

    p = command("test-enable", cmd_test_enable,
                "Test & Enable mailboxes: connect to their servers and enable what passes")
    _selection_args(p, profile=True)
    p.add_argument("--wait", action="store_true", help="run the tests now and print each result "
                   "(exit 0 if all passed, 3 if any failed)")
    p.add_argument("--threads", type=int, default=32, help="tests run at once (each profile's bound still holds)")
    _json(p)
    p = command("worker", cmd_worker, "run queued Test & Enable jobs and due retries")
    p.add_argument("--once", action="store_true", help="run what is due now, then exit")
    p.add_argument("--threads", type=int, default=32)
    p.add_argument("--poll", type=float, default=5.0, metavar="SECONDS", help="how often to look for new jobs")
    p.add_argument("--lease", type=float, default=60.0, metavar="SECONDS",
                   help="how long the jobs and connection slots of a worker that died stay held before "
                   "other workers take them over (a live worker renews them)")

    p = command("import", cmd_import, "import users or queues from CSV (all rows or none)")
    p.add_argument("kind", choices=("users", "queues"))
    p.add_argument("file", metavar="FILE.csv")
    _json(p)

    alerts = group("alerts", "the alerts wall")
    p = command("list", cmd_alerts_list, "list alerts, newest first", alerts)
    p.add_argument("--level", metavar="error|warning|information")
    p.add_argument("--mailbox", metavar="EMAIL")
    p.add_argument("--profile", metavar="NAME")
    p.add_argument("--all", action="store_true", help="include dismissed alerts")
    _paging(p)
    _json(p)
    p = command("dismiss", cmd_alerts_dismiss, "dismiss alerts", alerts)
    p.add_argument("ids", nargs="*", type=int, metavar="ID")
    p.add_argument("--all", dest="all_shown", action="store_true", help="every alert matching the filters")
    p.add_argument("--level")
    p.add_argument("--mailbox", metavar="EMAIL")
    p.add_argument("--profile", metavar="NAME")

    audits = group("audit", "the audit log")
    p = command("list", cmd_audit_list, "list audit entries, newest first", audits)
    p.add_argument("--mailbox", metavar="EMAIL", help="only entries about this mailbox, with before/after")
    _paging(p)
    _json(p)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import sqlite3

    import peewee

    from mbxtui.core.errors import MbxError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        if args.command is not None:
            parser.error(f"{args.command}: give a subcommand")
        args.handler = cmd_console
    ctx = Context(args)
    try:
        if getattr(args, "needs_database", True):
            ctx.open_database()
        return args.handler(ctx, args)
    except UsageError as exc:
        print(f"mbxtui: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MbxError as exc:
        print(f"mbxtui: {safe(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except (sqlite3.OperationalError, peewee.OperationalError) as exc:
        busy = "locked" in str(exc) or "busy" in str(exc)
        reason = ("another session held the database for longer than the busy timeout; nothing was changed, "
                  "try again" if busy else "database error: " + " ".join(str(exc).split()))
        print(f"mbxtui: {safe(reason)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("mbxtui: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
