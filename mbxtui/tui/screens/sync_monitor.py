"""The Sync monitor: processing read at a glance (R31). Mailboxes by processing state, messages
recorded per minute over the last hour, failures by error code and each profile's lag, read again
every few seconds, when processing reports progress and when others change the database."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Sparkline, Static

from mbxtui.core.display import cell
from mbxtui.core.services import sync_monitor
from mbxtui.core.services.sync_monitor import NEVER_CYCLED, STATES, ProfileLag, SyncSnapshot
from mbxtui.tui.messages import ServiceFailed, SyncSnapshotLoaded
from mbxtui.tui.screens.base import LOADING, BaseScreen

STATE_TITLES = {"idle": "Idle", "processing": "Processing", "waiting": "Waiting", "disabled": "Disabled",
                NEVER_CYCLED: "Never cycled"}


def duration(seconds: int | None) -> str:
    """An age as a person reads it: 40 s, 12 min, 3 h 5 min, 2 d 4 h; "never" for none."""
    if seconds is None:
        return "never"
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def states_text(seen: SyncSnapshot) -> str:
    counts = "   ".join(f"{STATE_TITLES.get(state, state)} {seen.states.get(state, 0):,}"
                        for state in (*STATES, NEVER_CYCLED))
    return f"{counts}\nStale {seen.stale:,} (enabled, no successful sync for over {seen.stale_hours} h)"


def rate_text(seen: SyncSnapshot) -> str:
    return (f"Messages recorded per minute, last hour: {seen.messages_last_hour:,} in all, "
            f"{seen.per_minute[-1]:,} this minute, peak {max(seen.per_minute):,}")


def failures_text(seen: SyncSnapshot) -> str:
    codes = " · ".join(f"{cell(code)} {count:,}" for code, count in seen.failures) or "none"
    return f"Failing mailboxes by error code: {codes}"


def lag_cells(lag: ProfileLag) -> list[Text]:
    oldest = lag.oldest_success[:16] if lag.oldest_success else None  # to the minute
    values = (lag.profile, f"{lag.mailboxes:,}", duration(lag.lag_seconds), oldest, f"{lag.never_succeeded:,}",
              f"{lag.stale:,}")
    return [Text(cell(value), no_wrap=True, overflow="ellipsis") for value in values]


class SyncMonitorScreen(BaseScreen):
    TITLE_TEXT = "Sync monitor"
    DEFAULT_CSS = """
    SyncMonitorScreen #states { height: 2; padding: 0 1; }
    SyncMonitorScreen #rate { height: 1; padding: 0 1; margin-top: 1; }
    SyncMonitorScreen #per-minute { width: 60; height: 2; margin: 0 1; }
    SyncMonitorScreen #axis { height: 1; width: 62; padding: 0 1; color: $text-muted; }
    SyncMonitorScreen #failures { height: auto; max-height: 3; padding: 0 1; margin-top: 1; }
    SyncMonitorScreen #lags { height: 1fr; margin-top: 1; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("ctrl+r", "reload", "Reload", id="reload"),
    ]
    REFRESH_SECONDS = 5.0
    # A slow read (a very large organisation) waits this many times its own length before the next,
    # so that watching the monitor never keeps the database busier than a tenth of the time.
    REFRESH_FACTOR = 10

    def __init__(self) -> None:
        super().__init__()
        self.snapshot: SyncSnapshot | None = None
        self.reading = False
        self._next_read: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"mbxtui · {self.TITLE_TEXT} · {self.actor.login} ({self.actor.role.value})", id="title",
                     markup=False)
        yield Static(LOADING, id="states", markup=False)
        yield Static(LOADING, id="rate", markup=False)
        yield Sparkline([], id="per-minute")
        yield Static(f"{'60 min ago':<52}{'now':>8}", id="axis", markup=False)
        yield Static(LOADING, id="failures", markup=False)
        lags: DataTable = DataTable(id="lags", cursor_type="row", zebra_stripes=True)
        lags.add_column("Profile", width=18)
        lags.add_columns("Enabled", "Lag", "Oldest sync", "Unsynced", "Stale")
        yield lags
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.app.mailboxes_processed.subscribe(self, lambda _: self.read_soon())
        self.action_reload()
        self.query_one("#lags", DataTable).focus()

    def action_reload(self) -> None:
        if self._next_read is not None:
            self._next_read.stop()
            self._next_read = None
        self.reading = True
        actor = self.actor

        def read() -> SyncSnapshotLoaded:
            started = time.monotonic()
            seen = sync_monitor.snapshot(actor)
            return SyncSnapshotLoaded(seen, time.monotonic() - started)

        self.load(read, lambda loaded: loaded, title="Sync monitor not loaded")

    def read_soon(self) -> None:
        """Read again now, unless a read is on its way (then its answer is new enough) or another
        screen covers this one (then it reads when it is shown again)."""
        if self.is_current and not self.reading:
            self.action_reload()

    def on_screen_resume(self) -> None:
        if self.snapshot is not None and not self.reading:
            self.action_reload()

    def data_changed(self) -> None:
        self.read_soon()

    def action_back(self) -> None:
        self.leave()

    def service_failed(self, message: ServiceFailed) -> None:
        self.reading = False
        if self.snapshot is None:
            self.query_one("#states", Static).update(f"Not loaded: {message.problem} (ctrl+r tries again)")
        self._schedule(self.REFRESH_SECONDS)

    def on_sync_snapshot_loaded(self, message: SyncSnapshotLoaded) -> None:
        self.reading = False
        self.snapshot = seen = message.snapshot
        self.query_one("#states", Static).update(states_text(seen))
        self.query_one("#rate", Static).update(rate_text(seen))
        self.query_one("#per-minute", Sparkline).data = seen.per_minute
        self.query_one("#failures", Static).update(failures_text(seen))
        lags = self.query_one("#lags", DataTable)
        cursor = lags.cursor_row
        lags.clear()
        for lag in seen.lags:
            lags.add_row(*lag_cells(lag))
        if not seen.lags:
            lags.add_row(Text("none processed yet"), "", "", "", "", "")
        lags.move_cursor(row=min(cursor, lags.row_count - 1))  # a refresh keeps the operator's place
        self._schedule(max(self.REFRESH_SECONDS, self.REFRESH_FACTOR * message.seconds))

    def _schedule(self, seconds: float) -> None:
        if self._next_read is not None:
            self._next_read.stop()
        self._next_read = self.set_timer(seconds, self.read_soon)
