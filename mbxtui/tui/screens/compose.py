"""The compose form: a new email from a mailbox, or a reply to an incoming activity, queued as a
pending outgoing activity (R29) that processing then sends."""

from __future__ import annotations

import re
from typing import Any

from textual.app import ComposeResult
from textual.widgets import Footer, Input, Static, TextArea

from mbxtui.core.permissions import Permission
from mbxtui.core.services import outgoing
from mbxtui.tui.screens.forms import FormScreen

SEND = Permission.SEND_EMAIL

def address_list(text: str) -> list[str]:
    """Addresses typed with commas, semicolons or spaces between them."""
    return [part for part in re.split(r"[,;\s]+", text) if part]


def reply_subject(subject: str) -> str:
    return subject if subject[:3].lower() == "re:" else f"Re: {subject}".strip()


class ComposeForm(FormScreen):
    """New email: dismisses with True once it is queued. ``reply_to``: the incoming activity (as
    ``activity_detail`` gives it) answered, which fills the sender's mailbox, the recipient and the
    subject; else ``sender``, the address of the mailbox to send from (a mailbox's own screen, say)."""

    TITLE_TEXT = "New email"
    DEFAULT_CSS = """
    ComposeForm #body { height: 8; width: 1fr; background: $boost; }
    """
    PERMISSIONS = {"save": SEND}
    FIELD_ALIASES = {"from": "sender", "sender_email": "sender"}

    def __init__(self, reply_to: dict[str, Any] | None = None, sender: str = "") -> None:
        super().__init__()
        self.reply_to = reply_to
        self.sender = reply_to["mailbox"] or "" if reply_to is not None else sender

    def compose(self) -> ComposeResult:
        reply = self.reply_to
        title = f"Reply to activity {reply['id']}" if reply is not None else self.TITLE_TEXT
        yield Static(f"mbxtui · {title}", id="title", markup=False)
        with self.form():
            yield self.note("Queued as a pending email; processing sends it through the mailbox's profile "
                            "once the mailbox is enabled for outgoing.")
            yield from self.field("sender", "From (a mailbox's address)",
                                  Input(self.sender, placeholder="support@example.com"))
            yield from self.field("to", "To", Input(reply["sender"] if reply else "",
                                                    placeholder="addresses, separated by commas"))
            yield from self.field("cc", "Cc", Input(placeholder="(optional)"))
            yield from self.field("subject", "Subject", Input(reply_subject(reply["subject"]) if reply else ""))
            yield from self.field("body", "Text", TextArea(soft_wrap=True, show_line_numbers=False))
            yield from self.buttons("Queue")
        yield Footer()

    def form_ready(self) -> None:
        super().form_ready()
        if self.reply_to is not None:
            self.query_one("#body", TextArea).focus()  # the rest is filled in

    def values(self) -> dict[str, Any]:
        values = super().values()
        for area in self.query("#form TextArea").results(TextArea):
            values[area.id] = area.text
        return values

    def action_save(self) -> None:
        values = self.values()
        reply_id = self.reply_to["id"] if self.reply_to is not None else None

        def queue() -> int:
            return outgoing.queue_email(self.actor, values["sender"].strip(), address_list(values["to"]),
                                       address_list(values["cc"]), values["subject"], values["body"],
                                       reply_to_activity_id=reply_id)

        def queued(activity_id: int) -> None:
            self.notify(f"Queued as activity {activity_id}: it is sent once processing reaches it",
                        title="New email", markup=False)
            self.dismiss(True)

        self.run_save(queue, queued)
