"""``email send``: queue an email from a mailbox (R29); processing sends it (``sync --once``, the
worker)."""

from __future__ import annotations

import argparse
import sys

from mbxtui.cli.context import Context
from mbxtui.cli.options import Commands, UsageError, command, group, json_option
from mbxtui.cli.output import EXIT_OK, emit

# A body file larger than the service could accept (1,000,000 characters of up to 4 bytes each) is
# refused without reading all of it.
MOST_BODY_BYTES = 4_000_000


def cmd_email_send(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.services import outgoing

    if (args.body is None) == (args.body_file is None):
        raise UsageError("give the text of the email with exactly one of --body TEXT or --body-file FILE (- for "
                         "standard input)")
    body = args.body if args.body is not None else _read_body(args.body_file)
    activity_id = outgoing.queue_email(ctx.actor, args.sender, args.to, args.cc or [], args.subject, body,
                                       reply_to_activity_id=args.reply_to_activity)
    emit(args, {"id": activity_id, "state": "pending"}, lambda data: print(data["id"]))
    return EXIT_OK


def _read_body(path: str) -> str:
    from mbxtui.core.errors import InvalidInput

    try:
        if path == "-":
            data = sys.stdin.buffer.read(MOST_BODY_BYTES + 1)
        else:
            with open(path, "rb") as file:
                data = file.read(MOST_BODY_BYTES + 1)
    except OSError as exc:
        raise InvalidInput("body file", f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte or an unencodable character in the path (as imports._read_rows)
        from mbxtui.core import validation

        raise InvalidInput("body file", f"cannot read {validation.shown(path)}: not a valid file name") from None
    if len(data) > MOST_BODY_BYTES:
        raise InvalidInput("body file", f"{path} is larger than {MOST_BODY_BYTES} bytes: send a shorter text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("body file", f"{path} is not UTF-8 text (byte {exc.start + 1} is not): "
                                        "convert it to UTF-8") from None


def register(commands: Commands) -> None:
    email = group(commands, "email", "outgoing email: queue an email from a mailbox")
    p = command(email, "send", cmd_email_send,
                "queue an email from a mailbox; prints its activity id (processing sends it: sync --once, worker)")
    p.add_argument("--from", dest="sender", required=True, metavar="MAILBOX_EMAIL",
                   help="the mailbox it is sent from (enabled for outgoing)")
    p.add_argument("--to", action="append", required=True, metavar="ADDR", help="a recipient (repeat for more)")
    p.add_argument("--cc", action="append", metavar="ADDR", help="a copy recipient (repeat for more)")
    p.add_argument("--subject", required=True, metavar="S")
    p.add_argument("--body", metavar="TEXT", help="the text of the email")
    p.add_argument("--body-file", metavar="FILE|-", help="read the text from this UTF-8 file (- for standard input)")
    p.add_argument("--reply-to-activity", type=int, metavar="ID",
                   help="answer this email activity (In-Reply-To and References follow its thread)")
    json_option(p)
