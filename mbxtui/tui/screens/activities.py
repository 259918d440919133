"""Email activities: newest first, a view by direction or state, a filter over addresses, subject and
mailbox; one activity's headers, parties, attachments and preview, resending an outgoing one that
failed or may not have gone, and replying to an incoming one (the compose form).

Pages follow each other by id (``page_activities(before_id=...)``), never by OFFSET, and the count
comes after the page, bounded (``count_activities``), so that a million activities paint as fast as
a hundred. Text that no index finds is looked for by a walk down the ids: what it finds within its
time budget (``head_activities``) is shown at once with "searching…", then the whole page."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.timer import Timer
from textual.widgets import Footer, Input, Static
from textual.worker import get_current_worker

from mbxtui.core.display import cell, safe, shown
from mbxtui.core.enums import ActivityDirection, ActivityState
from mbxtui.core.services import activities, outgoing
from mbxtui.tui.messages import Done, ListPageLoaded, ServiceFailed
from mbxtui.tui.screens.base import LOADING, BaseScreen
from mbxtui.tui.screens.compose import SEND, ComposeForm
from mbxtui.tui.screens.listing import ListScreen
from mbxtui.tui.widgets.confirm import ConfirmScreen
from mbxtui.tui.workers import run_service

# (title, direction, state) of each view, on the keys 1 to 5.
VIEWS: tuple[tuple[str, str | None, str | None], ...] = (
    ("All", None, None),
    ("Incoming", ActivityDirection.INCOMING.value, None),
    ("Outgoing", ActivityDirection.OUTGOING.value, None),
    ("Failed", ActivityDirection.OUTGOING.value, ActivityState.FAILED.value),
    ("Uncertain", ActivityDirection.OUTGOING.value, ActivityState.UNCERTAIN.value),
)
FILTER_PAUSE_SECONDS = 0.15  # typing faster than this reads once, for the last text
REFRESH_SECONDS = 5.0
"""The first page is read again this often while shown, and when the database says something changed
(PostgreSQL signals only changes to mailboxes and profiles, so new activities need the timer)."""
REFRESH_FACTOR = 10
"""A slow page (text found in few of a million activities) is read again only after this many times
its own length, so that the screen left open never keeps a core busy."""
SEARCHING = "searching…"


def addresses(values: list[str]) -> str:
    return ", ".join(values)


def worker_cancelled() -> bool:
    """In a worker thread: a newer read of its group, or leaving the screen, made it useless."""
    return get_current_worker().is_cancelled


@dataclass
class PageHead(ListPageLoaded):
    """The rows a text filter's walk found within its time budget, while it reads on."""

    filters: dict[str, str | None]


class ActivitiesScreen(ListScreen):
    TITLE_TEXT = "Activities"
    BINDINGS = [
        *[Binding(str(index + 1), f"view({index})", title, show=False, id=f"activities-view-{title.lower()}")
          for index, (title, _, _) in enumerate(VIEWS)],
        Binding("slash", "filter", "Filter", priority=True, id="filter"),
        Binding("enter", "open", "Open", id="open"),
        Binding("c", "compose", "New email", id="activities-compose"),
    ]
    PERMISSIONS = {"compose": SEND}
    # The subject before the recipients, so that it shows at 80 columns.
    COLUMNS = (("When (UTC)", 16), ("Dir", 3), ("State", 10), ("From", 20), ("Subject", 36), ("To", 24),
               ("Mailbox", 24))
    FILTER_PLACEHOLDER = "an address, words of the subject, or a mailbox's whole address"
    SHOW_DETAIL = True

    def __init__(self) -> None:
        super().__init__()
        self.view = 0
        self.before_ids: dict[int, int] = {}  # page start -> the id the page's rows are below
        self.count: tuple[int, bool] | None = None
        self.counting = False
        self.count_after_page = False  # the page being read is followed by the count
        self.searching = False  # the rows shown are a walk's first; the rest of the page is being read
        self.read_started = 0.0
        self.next_refresh = 0.0  # monotonic time before which the timer does not read the page again
        self.filter_timer: Timer | None = None
        self.read_on_return = False  # a detail or a form was opened from here

    def filters(self) -> dict[str, str | None]:
        _, direction, state = VIEWS[self.view]
        return {"text": self.filter_text or None, "direction": direction, "state": state}

    def fetch(self, offset: int, limit: int) -> tuple[int | None, list[dict[str, Any]]]:
        """The page (its count follows: read_count); when a text filter's walk runs out of time,
        what it found is posted first (PageHead), then the rest of the page is read."""
        filters = self.filters()
        head = activities.head_activities(self.actor, **filters, before_id=self.before_ids.get(offset), limit=limit)
        if head.searched_below is None:
            return None, head.rows
        if not worker_cancelled():
            self.post_message(PageHead(offset, None, head.rows, filters))
        rest = activities.page_activities(self.actor, **filters, before_id=head.searched_below,
                                          limit=limit - len(head.rows), stop=worker_cancelled)
        return None, head.rows + rest

    def key_of(self, row: dict[str, Any]) -> str:
        return str(row["id"])

    def cells_of(self, row: dict[str, Any]) -> tuple[Any, ...]:
        direction = "in" if row["direction"] == ActivityDirection.INCOMING.value else "out"
        return (row["when"][:16], direction, row["state"], row["sender"], row["subject"], addresses(row["to"]),
                row["mailbox"])

    def describe(self, row: dict[str, Any] | None) -> str:
        if row is None and self.searching:
            return "Searching older activities…"
        if row is None:
            return "No activities to show." if not self.filter_text else "No activity matches the filter."
        return (f"{safe(row['subject']) or '(no subject)'}\nfrom {cell(row['sender'])} to "
                f"{cell(addresses(row['to']))} · {row['state']} · mailbox {cell(row['mailbox'])}")

    def views_line(self) -> str:
        tabs = []
        for index, (title, _, _) in enumerate(VIEWS):
            label = f"{index + 1} {title}"
            tabs.append(f"[reverse]{label}[/]" if index == self.view else label)
        return "  ".join(tabs) + "   / filter"

    def status_parts(self) -> list[str]:
        if self.searching:
            return [SEARCHING]
        if self.counting:
            return ["counting…"]
        if self.count is not None and self.count[1]:
            return [f"more than {self.count[0]:,} in all"]
        return []

    # -- reading: the page first, then the count --

    def on_mount(self) -> None:
        self.set_interval(REFRESH_SECONDS, self.refresh_first_page)

    def data_changed(self) -> None:
        self.refresh_first_page()

    def refresh_first_page(self) -> None:
        """New activities at the top, while the newest are shown and nothing is being read (nor was
        just read slowly); the count too, unless a text filter would make it read every row again."""
        if (self.page_start == 0 and not self.reading and not self.searching and self.is_current
                and time.monotonic() >= self.next_refresh):
            self.reload(count=self.count is None or not self.filter_text)

    def reload(self, count: bool = True) -> None:
        self.count_after_page = self.page_start == 0 and count
        if self.count_after_page:
            self.counting = True
        self.read_started = time.monotonic()
        super().reload()

    def on_page_head(self, message: PageHead) -> None:
        if message.filters == self.filters() and self.reading:
            self.on_list_page_loaded(message)

    def on_list_page_loaded(self, message: ListPageLoaded) -> None:
        self.searching = isinstance(message, PageHead)
        super().on_list_page_loaded(message)
        if self.searching:
            self.update_status()
            return
        self.next_refresh = time.monotonic() + REFRESH_FACTOR * (time.monotonic() - self.read_started)
        if self.count_after_page:
            self.count_after_page = False
            if self.page_start == 0 and len(message.rows) < self.PAGE_SIZE:
                self.counted(self.filters(), (len(message.rows), False))  # the whole list is this page
            else:
                self.read_count()

    def update_status(self) -> None:
        if self.searching and not self.rows:
            self.query_one("#status", Static).update(f"{SEARCHING} for {self.filter_text!r}")
            return
        if self.count is not None and not self.count[1]:
            self.total = self.count[0]  # a page read puts back what its fetch knew: None
        super().update_status()

    def read_count(self) -> None:
        self.counting = True
        filters = self.filters()
        run_service(self, lambda: activities.count_activities(self.actor, **filters, stop=worker_cancelled),
                    lambda count: Done(count, lambda counted: self.counted(filters, counted)), group="count",
                    title="Not counted")

    def counted(self, filters: dict[str, str | None], count: tuple[int, bool]) -> None:
        if filters != self.filters():
            return  # the count of a filter since changed
        self.counting = False
        self.count = count
        self.update_status()

    def service_failed(self, message: ServiceFailed) -> None:
        if message.group == "count":
            self.counting = False
            self.update_status()
        if message.group == "page":
            self.count_after_page = self.counting = False
        super().service_failed(message)

    def restart(self) -> None:
        """A new view or filter: from the newest, with a new count."""
        self.page_start = 0
        self.before_ids.clear()
        self.total = None
        self.count = None
        self.workers.cancel_group(self, "count")  # an older filter's count would read on for nothing
        self.reload()

    def apply_filter(self, text: str) -> None:
        if self.filter_timer is not None:
            self.filter_timer.stop()
        self.filter_timer = self.set_timer(FILTER_PAUSE_SECONDS, lambda: self.filter_now(text))

    def filter_now(self, text: str) -> None:
        self.filter_timer = None
        if text.strip() != self.filter_text:
            self.filter_text = text.strip()
            self.restart()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter" and self.filter_timer is not None:
            self.filter_timer.stop()
            self.filter_now(event.value)
        # ListScreen's handler runs next (Textual calls each class's own) and focuses the table.

    # -- actions --

    def action_view(self, index: int) -> None:
        self.view = index
        self.restart()

    def action_page(self, step: int) -> None:
        if self.searching:
            return  # the page being read decides where the next one starts
        if step > 0 and not self.reading and self.rows and self.has_next_page():
            self.before_ids[self.page_start + self.PAGE_SIZE] = min(row["id"] for row in self.rows.values())
        super().action_page(step)

    def action_open(self) -> None:
        row = self.current()
        if row is not None:
            self.read_on_return = True  # it may be resent, or answered, meanwhile
            self.app.push_screen(ActivityDetailScreen(row["id"]))

    def action_compose(self) -> None:
        self.read_on_return = True
        self.app.push_screen(ComposeForm())

    def on_screen_resume(self) -> None:
        if self.read_on_return:
            self.read_on_return = False
            self.restart()


class ActivityDetailScreen(BaseScreen):
    """One activity: headers, parties, attachments, its preview as plain text, an outgoing one's
    attempts and last error; resend (failed or uncertain) and reply (incoming)."""

    TITLE_TEXT = "Activity"
    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("R", "resend", "Resend", id="activity-resend"),
        Binding("r", "reply", "Reply", id="activity-reply"),
        Binding("ctrl+r", "reload", "Reload", id="reload"),
    ]
    PERMISSIONS = {"resend": SEND, "reply": SEND}

    def __init__(self, activity_id: int) -> None:
        super().__init__()
        self.activity_id = activity_id
        self.activity: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"mbxtui · Activity {self.activity_id} · {self.actor.login} ({self.actor.role.value})",
                     id="title", markup=False)
        with VerticalScroll(id="detail"):
            yield Static(LOADING, id="headers", markup=False)
            yield Static(id="preview", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()
        self.query_one("#detail").focus()

    def action_reload(self) -> None:
        activity_id = self.activity_id
        self.load(lambda: activities.activity_detail(self.actor, activity_id), lambda found: Done(found, self.show))

    def service_failed(self, message: ServiceFailed) -> None:
        if message.group == "load" and self.activity is None:
            self.query_one("#headers", Static).update(f"Not loaded: {message.problem} (ctrl+r tries again)")

    def show(self, activity: dict[str, Any]) -> None:
        self.activity = activity
        self.refresh_bindings()
        self.query_one("#headers", Static).update("\n".join(self.header_lines(activity)))
        preview = activity["problem"] and f"Not readable: {activity['problem']}" or activity["preview"]
        self.query_one("#preview", Static).update("\nPreview\n" + (shown(preview) if preview else "(empty)"))

    @staticmethod
    def header_lines(activity: dict[str, Any]) -> list[str]:
        outgoing = activity["direction"] == ActivityDirection.OUTGOING.value
        fields = [
            ("Message-ID", activity["message_id"]), ("Direction", activity["direction"]),
            ("State", activity["state"]), ("From", activity["sender"]), ("To", addresses(activity["to"])),
            ("Cc", addresses(activity["cc"])), ("Subject", activity["subject"]),
            ("Received (UTC)", activity["received_on"]), ("Sent (UTC)", activity["sent_on"]),
            ("Size", f"{activity['size']:,} bytes"), ("In-Reply-To", " ".join(activity["in_reply_to"])),
            ("Mailbox", activity["mailbox"]), ("Came through", addresses(activity["mailboxes"])),
        ]
        if outgoing:
            fields += [("Queued (UTC)", activity["created_on"]), ("Queued by", activity["created_by"]),
                       ("Attempts", activity["attempts"]), ("Next attempt", activity["next_attempt"]),
                       ("Last error", " ".join(filter(None, (activity["last_error_code"],
                                                             activity["last_error_text"]))))]
        width = max(len(title) for title, _ in fields)
        lines = [f"{title:<{width}}  {cell(value)}" for title, value in fields]
        lines += ["", "Parties"] + [f"  {safe(name)}" for name in activity["party_names"] or ["(none)"]]
        lines += ["", "Attachments"] + ([f"  {safe(a['name'])} ({a['size']:,} bytes)" for a in activity["attachments"]]
                                        or ["  (none)"])
        return lines

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        activity = self.activity
        if action == "resend" and (activity is None or activity["direction"] != ActivityDirection.OUTGOING.value
                                   or activity["state"] not in outgoing.RESENDABLE):
            return False
        if action == "reply" and (activity is None or activity["direction"] != ActivityDirection.INCOMING.value):
            return False
        return super().check_action(action, parameters)

    def action_back(self) -> None:
        self.leave()

    def action_resend(self) -> None:
        activity = self.activity
        if activity is None:
            return
        activity_id = activity["id"]
        detail = (f"Send activity {activity_id} ({activity['state']}) to {addresses(activity['to'])} again?"
                  + (" It may have been sent already: the recipients could get it twice."
                     if activity["state"] == ActivityState.UNCERTAIN.value else ""))

        def resent(_result: object) -> None:
            self.notify(f"Activity {activity_id} is queued to be sent again", title="Resend")
            self.action_reload()

        def answered(yes: bool | None) -> None:
            if yes:
                self.call(lambda: outgoing.resend(self.actor, activity_id), resent, group="resend",
                          title="Not resent")

        self.app.push_screen(ConfirmScreen("Resend", detail, confirm_label="Resend"), answered)

    def action_reply(self) -> None:
        if self.activity is not None:
            self.app.push_screen(ComposeForm(reply_to=self.activity))
