"""Benchmark of the console's mailbox grid at 100,000 and 1,000,000 mailboxes, beside Textual's
built-in DataTable holding 100,000 rows (what a console would otherwise give).

    python bench/grid.py [--sizes 100000,1000000] [--data-dir DIR] [--skip-datatable] [--skip-approve]
                         [--backends sqlite,postgresql] [--postgres-url URL] [--latency-ms 20] [--start-only]

Prints its figures; asserts nothing. The databases are built once by make_mailboxes.py and reused.
On PostgreSQL: the database ``--postgres-url`` names, which must hold a copy of the same SQLite
database (``transfer.copy_installation``); without it a private server is started as the tests
do (tests/lab/postgres.py) and the copy is made first (minutes at 1,000,000). With
``--latency-ms`` each PostgreSQL run is repeated through ``latency_proxy.py``, a loopback TCP
proxy that delays every read by that much (a round trip gains twice the delay).
Each measurement runs in its own process, so that start-up and peak memory are those of one grid:

- start: process start to the console's first frame (``MbxApp`` as ``mbxtui console`` makes it,
  headless, 120x40: it paints "Opening the database…" while its worker opens the database and
  the operator), to that worker's end and to the first frame with the grid's rows; and the grid in
  an app of its own, the database opened first: to its first frame (rows still being read may be
  placeholders) and to the first frame with its rows' cells; also the cost of the imports alone
  (``python -c``).
- keys: key events are handed to the app's driver as a terminal would (``Pilot.press`` sleeps
  between keys); "key to frame" runs from the event to the end of the frame that shows it, which
  includes waiting for Textual's frame timer (up to 1/60 s: keys are sent at random moments);
  "work" is the action plus a full repaint, run directly (paging and jumps repaint everything).
- filter: one ``set_query`` per keystroke of a growing text, from the keystroke to the first frame
  showing the new ids (rows still read may be placeholders) and to the first frame showing their
  cells; the whole list (and so the count) follows on the worker. Also the worst of every
  keystroke of ``SHORT_FILTERS`` (one and two characters, common and rare), each from the
  unfiltered view, which the trigram index cannot serve.
- sort: ``set_query`` by another column, to the first frame showing the new order (order read
  from its index) and reversed.
- mark all + approve: ``a`` in the Pending Approval view and in All, then ``bulk.approve``
  with the view itself (``target_selection``, what the console sends after "mark all") and with
  the marked ids (``Selection.of_ids``, what it sends when the marks are not a whole view, say
  after unmarking one row), each on a fresh copy of the database; then the grid's reload.
- memory: peak resident set size of the process (``resource.getrusage``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))


SIZE = (120, 40)
KEY_ROUNDS = 40
FILTER_TEXT = "ada.abbott.4"
SHORT_FILTERS = ("a", "e", "z", "q", "9", "ad", "ex", "zq", "qx", "99", "@e", "org")
SORTS = ("email", "approval", "last_tested", "profile", "enabled")
TARGETS = {
    "start": "< 0.6 s", "keys": "< 16 ms median, < 50 ms worst", "filter": "<= 100 ms worst",
    "sort": "< 300 ms", "approve": "< 3 s", "rss": "< 200 MB",
}


def bench_login() -> str:
    """The operator of the bench's databases. make_mailboxes.py is imported only where needed: it
    imports mbxtui's core, which the console's start must not find already imported."""
    import make_mailboxes  # beside this file

    return make_mailboxes.LOGIN


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class AnonymousMemory:
    """The largest private (anonymous) resident memory seen at the sampling points. The peak RSS
    also counts pages of the database file that SQLite maps into memory (mmap_size), which the
    kernel can drop at any time."""

    def __init__(self) -> None:
        self.peak_mb = 0.0

    def sample(self) -> None:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)


async def until_read(grid, give_up_after: float = 60.0) -> float:
    """Wait for the grid's background read of a large view; return how long it took."""
    started = time.perf_counter()
    while grid.still_reading and time.perf_counter() - started < give_up_after:
        await asyncio.sleep(0.001)
    return time.perf_counter() - started


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


# --- measuring inside a running app ---------------------------------------------------------------

class FrameClock:
    """Records the start and end of every frame the screen paints."""

    def __init__(self, screen, probe: Callable[[], Any] = lambda: None) -> None:
        self.frames: list[tuple[float, float, Any]] = []  # start, end, ``probe()`` as the frame ended
        paint = screen._compositor_refresh

        def timed_paint() -> None:
            started = time.perf_counter()
            paint()
            self.frames.append((started, time.perf_counter(), probe()))

        screen._compositor_refresh = timed_paint

    async def next_frame_after(self, count: int, deadline: float = 5.0) -> tuple[float, float, Any] | None:
        give_up = time.perf_counter() + deadline
        while len(self.frames) <= count and time.perf_counter() < give_up:
            await asyncio.sleep(0)
        return self.frames[count] if len(self.frames) > count else None


async def key_to_frame(app, clock: FrameClock, key: str, rng: random.Random) -> tuple[float, float]:
    """Send one key as the terminal driver would; return (key to frame, frame paint) in seconds."""
    from textual import events

    await asyncio.sleep(rng.uniform(0, 0.02))  # a moment unrelated to the frame timer
    count = len(clock.frames)
    sent = time.perf_counter()
    app._driver.send_message(events.Key(key, " " if key == "space" else None))
    frame = await clock.next_frame_after(count)
    if frame is None:
        raise RuntimeError(f"no frame after {key!r}")
    return frame[1] - sent, frame[1] - frame[0]


def direct(widget, action: Callable[[], Any]) -> float:
    """Run ``action`` and repaint ``widget`` at once, without the event loop: the work a key costs."""
    screen = widget.screen
    started = time.perf_counter()
    action()
    screen._dirty_widgets.add(widget)  # what the widget's Update message would do on the next idle
    screen._on_timer_update()
    return time.perf_counter() - started


async def until_shown(grid, clock: FrameClock, action: Callable[[], Any],
                      give_up_after: float = 60.0) -> tuple[float, float, float]:
    """Run ``action`` (a new query); return the seconds to the end of the first frame that shows its
    ids, to the end of the first that shows their rows' cells too (judged as each frame ends: a
    frame that drew a placeholder has asked for rows), and the process CPU time meanwhile."""
    first = len(clock.frames)
    started, cpu = time.perf_counter(), time.process_time()
    action()
    ids_at = rows_at = None
    while rows_at is None and time.perf_counter() - started < give_up_after:
        await asyncio.sleep(0.001)
        for _, end, (query_shown, reading_rows) in clock.frames[first:]:
            if query_shown and ids_at is None:
                ids_at = end
            if query_shown and not reading_rows:
                rows_at = end
                break
    end = rows_at or time.perf_counter()
    return (ids_at or end) - started, end - started, time.process_time() - cpu


def summary(samples: list[float]) -> dict[str, float]:
    return {"median_ms": ms(statistics.median(samples)), "worst_ms": ms(max(samples)), "n": len(samples)}


# --- children -------------------------------------------------------------------------------------

def time_paints(screen_class) -> list[float]:
    """The monotonic time at the end of each frame every screen paints from now on."""
    frame_ends: list[float] = []
    paint = screen_class._compositor_refresh

    def timed_paint(screen) -> None:
        paint(screen)
        frame_ends.append(time.monotonic())

    screen_class._compositor_refresh = timed_paint
    return frame_ends


def child_start(db_path: str, spawned: float, widget: str) -> dict[str, Any]:
    """Process start to painted grid (or DataTable) in an app of its own, the database opened
    first; the parent passes its clock at spawn."""
    before_textual = time.monotonic()
    from textual.app import App
    from textual.screen import Screen
    from textual.widgets import DataTable

    from mbxtui.core import db
    from mbxtui.core.services import operators
    from mbxtui.tui.widgets.grid import MailboxGrid
    imported = time.monotonic()

    frame_ends = time_paints(Screen)
    widget_class = MailboxGrid if widget == "grid" else DataTable

    db.open_database(db_path)
    actor = operators.current_actor(login=bench_login())
    opened = time.monotonic()
    if widget == "grid":
        class Minimal(App):
            def compose(self):
                yield MailboxGrid(actor)
    else:
        rows = datatable_rows(actor)

        class Minimal(App):
            def compose(self):
                yield DataTable(cursor_type="row")

            def on_mount(self) -> None:
                table = self.query_one(DataTable)
                table.add_columns(*DATATABLE_COLUMNS)
                table.add_rows(rows)

    result: dict[str, Any] = {}

    async def run() -> None:
        app = Minimal()
        async with app.run_test(size=SIZE) as pilot:
            shown = app.query_one(widget_class)
            give_up = time.monotonic() + 600
            while not frame_ends:
                await pilot.pause(0.001)
            painted = frame_ends[0]
            if widget == "grid":
                rows_painted = await rows_painted_after(shown, frame_ends, painted, give_up)
                await until_read(shown)
            else:
                rows_painted = painted
            result.update({
                "before_textual_s": round(before_textual - spawned, 3),
                "imports_s": round(imported - before_textual, 3),
                "database_opened_s": round(opened - spawned, 3),
                "start_to_painted_s": round(painted - spawned, 3),
                "start_to_rows_s": round(rows_painted - spawned, 3),
                "start_to_whole_view_read_s": round(time.monotonic() - spawned, 3),
                "rows": shown.row_count,
                "cpu_s": round(time.process_time(), 3),
            })

    asyncio.run(run())
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


async def rows_painted_after(grid, frame_ends: list[float], painted: float, give_up: float) -> float:
    """When the first frame showing ``grid``'s rows (not placeholders) ended."""
    while not (grid.query_shown and not grid.reading_rows and frame_ends[-1] > painted):
        if time.monotonic() > give_up:
            raise RuntimeError("no rows painted in 600 s")
        await asyncio.sleep(0.001)
        if grid.query_shown and not grid.reading_rows:
            count = len(frame_ends)
            while len(frame_ends) <= count and time.monotonic() < give_up:
                await asyncio.sleep(0.001)
            if not grid.reading_rows:
                break
    return frame_ends[-1]


def child_console_start(location: str, spawned: float) -> dict[str, Any]:
    """Process start to the console's first frame (``MbxApp`` as ``mbxtui console`` starts it: the
    database and the operator opened in its worker), then to its grid's rows painted."""
    before_textual = time.monotonic()
    from textual.screen import Screen

    from mbxtui.tui.app import MbxApp
    imported = time.monotonic()
    frame_ends = time_paints(Screen)
    opened: list[float] = []

    def opening():
        from mbxtui.core import db
        from mbxtui.core.services import operators

        db.open_database(location)
        actor = operators.current_actor(login=bench_login())
        opened.append(time.monotonic())
        return actor

    result: dict[str, Any] = {}

    async def run() -> None:
        with tempfile.TemporaryDirectory(prefix="mbxtui-bench-console-") as data_dir:
            app = MbxApp(None, opening=opening, db_path=location, data_dir=Path(data_dir), run_tests=False)
            async with app.run_test(size=SIZE) as pilot:
                give_up = time.monotonic() + 600
                while not frame_ends:
                    await pilot.pause(0.001)
                painted = frame_ends[0]
                while len(app.screen_stack) < 2 or not app.screen_stack[1].query("MailboxGrid"):
                    if time.monotonic() > give_up:
                        raise RuntimeError("the console showed no grid in 600 s")
                    await asyncio.sleep(0.001)
                grid = app.screen_stack[1].query_one("MailboxGrid")
                rows_painted = await rows_painted_after(grid, frame_ends, painted, give_up)
                result.update({
                    "before_textual_s": round(before_textual - spawned, 3),
                    "imports_s": round(imported - before_textual, 3),
                    "start_to_painted_s": round(painted - spawned, 3),
                    "database_opened_s": round(opened[0] - spawned, 3),
                    "start_to_rows_s": round(rows_painted - spawned, 3),
                    "rows": grid.row_count,
                })

    asyncio.run(run())
    return result


DATATABLE_COLUMNS = ("Name", "Email address", "Approval", "In", "Out", "Enabled", "Profile", "Last tested")


def datatable_rows(actor) -> list[tuple]:
    from mbxtui.core.services.mailbox_pages import GridQuery, MailboxPages
    from mbxtui.tui.widgets.grid_drawing import row_view

    pages = MailboxPages(actor)
    ids = pages.ordered_ids(GridQuery())
    rows = []
    for start in range(0, len(ids), 5000):
        found = pages.rows(ids[start:start + 5000])
        for mailbox_id in ids[start:start + 5000]:
            cells = row_view(found[mailbox_id]).cells
            rows.append(tuple(cells[key][0] for key in (
                "name", "email", "approval", "incoming_status", "outgoing_status", "enabled", "profile",
                "last_tested")))
    return rows


def child_grid(db_path: str, approve: bool = True) -> dict[str, Any]:
    """Keys, filter, sort, mark all and approve on one grid."""
    from textual.app import App

    from mbxtui.core import db
    from mbxtui.core.services import bulk, operators
    from mbxtui.core.services.selection import Selection
    from mbxtui.tui.widgets.grid import MailboxGrid

    db.open_database(db_path)
    actor = operators.current_actor(login=bench_login())
    rng = random.Random(4)
    result: dict[str, Any] = {}
    memory = AnonymousMemory()

    class Minimal(App):
        def __init__(self, view: str) -> None:
            super().__init__()
            self.view = view

        def compose(self):
            yield MailboxGrid(actor, view=self.view)

        def on_mount(self) -> None:
            self.query_one(MailboxGrid).focus()

    async def keys_filter_sort() -> None:
        app = Minimal("active")
        async with app.run_test(size=SIZE) as pilot:
            grid = app.query_one(MailboxGrid)
            await pilot.pause()
            await until_read(grid)
            memory.sample()
            clock = FrameClock(app.screen, lambda: (grid.query_shown, grid.reading_rows))
            result["rows"] = grid.row_count
            plans = {
                "cursor down": ["down"] * KEY_ROUNDS,
                "cursor up": ["up"] * (KEY_ROUNDS // 2),
                "page down": ["pagedown"] * KEY_ROUNDS,
                "page up": ["pageup"] * (KEY_ROUNDS // 2),
                "end / home": ["end", "home"] * (KEY_ROUNDS // 2),
                "space (mark)": ["space", "space"] * (KEY_ROUNDS // 2),
            }
            keys: dict[str, Any] = {}
            for label, sequence in plans.items():
                walls, paints = [], []
                for key in sequence:
                    wall, paint = await key_to_frame(app, clock, key, rng)
                    walls.append(wall)
                    paints.append(paint)
                keys[label] = {"key_to_frame": summary(walls), "paint": summary(paints)}
            grid.cursor_row = grid.row_count // 2
            work = {
                "page down": [direct(grid, grid.action_page_down) for _ in range(KEY_ROUNDS)],
                "end / home": [direct(grid, action) for _ in range(KEY_ROUNDS // 2)
                               for action in (grid.action_cursor_last, grid.action_cursor_first)],
            }
            for label, samples in work.items():
                keys[label]["work"] = summary(samples)
            result["keys"] = keys

            grid.cursor_row = 0
            await until_read(grid)

            async def keystrokes(texts: list[str], from_nothing: bool) -> dict[str, Any]:
                ids_s, rows_s, cpus, whole_s = [], [], [], []
                for text in texts:
                    if from_nothing:
                        grid.set_query(filter_text="")
                        await until_read(grid)
                    shown_ids, shown_rows, cpu = await until_shown(grid, clock, lambda: grid.set_query(filter_text=text))
                    ids_s.append(shown_ids)
                    rows_s.append(shown_rows)
                    cpus.append(cpu)
                    whole_s.append(shown_ids + await until_read(grid))
                    memory.sample()
                return {"texts": texts, "ids_ms": [ms(t) for t in ids_s], "rows_ms": [ms(t) for t in rows_s],
                        "cpu_ms": [ms(t) for t in cpus], "whole_ms": [ms(t) for t in whole_s],
                        "rows": summary(rows_s), "ids": summary(ids_s), "rows_left": grid.row_count}

            result["filter"] = await keystrokes([FILTER_TEXT[:n] for n in range(1, len(FILTER_TEXT) + 1)], False)
            result["short filters"] = await keystrokes(list(SHORT_FILTERS), True)
            grid.set_query(filter_text="")
            await until_read(grid)

            sorts = {}
            for column in SORTS:
                _, first, _ = await until_shown(grid, clock, lambda c=column: grid.set_query(sort=c, descending=False))
                whole = first + await until_read(grid)
                memory.sample()
                _, reverse, _ = await until_shown(grid, clock, lambda: grid.set_query(descending=True))
                sorts[column] = {"first_ms": ms(first), "whole_ms": ms(whole), "reversed_ms": ms(reverse)}
                await until_read(grid)
            _, back, _ = await until_shown(grid, clock, lambda: grid.set_query(sort="name", descending=False))
            sorts["name (back)"] = {"first_ms": ms(back)}
            await until_read(grid)
            result["sort"] = sorts
            views = {}
            for view in ("pending", "failed", "disabled", "all", "active"):
                _, views[view], _ = await until_shown(grid, clock, lambda v=view: grid.set_query(view=v))
                views[view] = ms(views[view])
                await until_read(grid)
                memory.sample()
            result["view switch"] = views
            result["mark_all_active_ms"] = ms(direct(grid, grid.mark_all_in_view))
            memory.sample()
            result["clear_marks_ms"] = ms(direct(grid, grid.clear_marks))
        result["peak_rss_mb_before_approve"] = round(peak_rss_mb(), 1)
        result["peak_anonymous_mb_before_approve"] = round(memory.peak_mb, 1)
        result["cpu_s"] = round(time.process_time(), 2)

    asyncio.run(keys_filter_sort())
    if "://" in db_path or not approve:
        return result  # the approvals copy the database file: SQLite only

    async def mark_all_and_approve(view: str, how: str, scratch: Path) -> dict[str, Any]:
        copy = scratch / "copy.db"
        shutil.copyfile(db_path, copy)
        copied = db.open_database(copy)
        checkpoints = db.BackgroundCheckpoints()  # as the console runs
        measured: dict[str, Any] = {}
        try:
            app = Minimal(view)
            async with app.run_test(size=SIZE) as pilot:
                grid = app.query_one(MailboxGrid)
                await pilot.pause()
                await until_read(grid)
                measured["rows"] = grid.row_count
                measured["mark_all_ms"] = ms(direct(grid, grid.mark_all_in_view))
                started = time.perf_counter()
                if how == "of_ids":
                    outcome = bulk.approve(actor, Selection.of_ids(grid.marked))  # as when not a whole view
                else:
                    outcome = bulk.approve(actor, grid.target_selection())
                measured["approve_ms"] = ms(time.perf_counter() - started)
                measured["reload_ms"] = ms(direct(grid, lambda: (grid.clear_marks(), grid.reload())))
                measured["total_ms"] = round(measured["mark_all_ms"] + measured["approve_ms"]
                                             + measured["reload_ms"], 1)
                measured["changed"] = outcome.changed
                await until_read(grid)
                memory.sample()
        finally:
            checkpoints.stop()
            copied.close()
            for leftover in scratch.iterdir():
                leftover.unlink(missing_ok=True)
        return measured

    approvals = {}
    with tempfile.TemporaryDirectory(prefix="mbxtui-bench-grid-") as scratch:
        for view in ("pending", "all"):
            for how in ("of_ids", "of_view"):
                approvals[f"{view} / {how}"] = asyncio.run(mark_all_and_approve(view, how, Path(scratch)))
    result["mark all + approve"] = approvals
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["peak_anonymous_mb"] = round(memory.peak_mb, 1)
    return result


def child_datatable(db_path: str) -> dict[str, Any]:
    """The same keys, a sort and a filter keystroke on a DataTable holding every row."""
    from textual.app import App
    from textual.widgets import DataTable

    from mbxtui.core import db
    from mbxtui.core.services import operators

    db.open_database(db_path)
    actor = operators.current_actor(login=bench_login())
    rows = datatable_rows(actor)
    rng = random.Random(4)
    result: dict[str, Any] = {"rows": len(rows)}

    class Minimal(App):
        def compose(self):
            yield DataTable(cursor_type="row")

        def on_mount(self) -> None:
            table = self.query_one(DataTable)
            table.focus()
            table.add_columns(*DATATABLE_COLUMNS)
            table.add_rows(rows)

    async def run() -> None:
        app = Minimal()
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one(DataTable)
            await pilot.pause()
            clock = FrameClock(app.screen)
            keys = {}
            for label, sequence in {"cursor down": ["down"] * KEY_ROUNDS, "page down": ["pagedown"] * KEY_ROUNDS,
                                    "end / home": ["end", "home"] * (KEY_ROUNDS // 4)}.items():
                walls, paints = [], []
                for key in sequence:
                    wall, paint = await key_to_frame(app, clock, key, rng)
                    walls.append(wall)
                    paints.append(paint)
                keys[label] = {"key_to_frame": summary(walls), "paint": summary(paints)}
            result["keys"] = keys
            column = table.ordered_columns[1].key
            result["sort"] = {"email": {
                "first_ms": ms(direct(table, lambda: table.sort(column))),
                "reversed_ms": ms(direct(table, lambda: table.sort(column, reverse=True)))}}

            def refill(text: str) -> None:
                table.clear()
                table.add_rows([row for row in rows if text in row[0].lower() or text in row[1]])

            typed = [direct(table, lambda n=n: refill(FILTER_TEXT[:n])) for n in range(1, len(FILTER_TEXT) + 1)]
            result["filter"] = {"per_keystroke_ms": [ms(t) for t in typed], **summary(typed), "text": FILTER_TEXT,
                                "rows_left": table.row_count}

    asyncio.run(run())
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


# --- the parent: run the children, print the figures ----------------------------------------------

def run_child(*args: str, timeout: float = 1800) -> dict[str, Any]:
    spawned = time.monotonic()
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", *args, "--spawned", repr(spawned)],
        capture_output=True, text=True, timeout=timeout,
        env={name: value for name, value in os.environ.items() if name != "NO_COLOR"},
    )
    if completed.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def import_cost(statement: str, rounds: int = 5) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    print(f"\n{title}")
    widths = [max(len(fmt(cell)) for cell in column) for column in zip(header, *rows)]
    for line in [header, ["-" * w for w in widths], *rows]:
        print("  " + "  ".join(fmt(cell).ljust(width) for cell, width in zip(line, widths)))


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the mailbox grid (prints figures).")
    parser.add_argument("--sizes", default="100000,1000000", help="mailbox counts, comma separated")
    parser.add_argument("--data-dir", type=Path, default=None, help="where the databases are kept")
    parser.add_argument("--skip-datatable", action="store_true", help="leave out the DataTable reference")
    parser.add_argument("--backends", default="sqlite", help="sqlite, postgresql or both, comma separated")
    parser.add_argument("--postgres-url", help="a PostgreSQL database holding a copy of the (one) size's database")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="also measure PostgreSQL behind a proxy delaying every read this much")
    parser.add_argument("--skip-approve", action="store_true", help="leave out mark all + approve (SQLite)")
    parser.add_argument("--start-only", action="store_true", help="measure the starts alone (no keys, filter, sort)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--spawned", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.pop("NO_COLOR", None)

    if args.child:
        kind, db_path, *rest = args.child
        if kind == "start":
            outcome = child_start(db_path, args.spawned, rest[0])
        elif kind == "console":
            outcome = child_console_start(db_path, args.spawned)
        elif kind == "grid":
            outcome = child_grid(db_path, approve=rest != ["skip-approve"])
        else:
            outcome = child_datatable(db_path)
        print(json.dumps(outcome))
        return 0

    sizes = [int(size) for size in args.sizes.split(",")]
    backends = [backend.strip() for backend in args.backends.split(",")]
    if args.postgres_url and len(sizes) != 1:
        parser.error("--postgres-url holds one size: give one --sizes")
    load = os.getloadavg()
    print(f"mailbox grid benchmark: {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, "
          f"Python {sys.version.split()[0]}, terminal {SIZE[0]}x{SIZE[1]} headless")
    import make_mailboxes  # beside this file

    paths = {size: make_mailboxes.ensure(size, args.data_dir) for size in sizes}
    figures: dict[str, dict[str, Any]] = {}
    cleanup: list[Callable[[], Any]] = []
    try:
        for size in sizes:
            runs: list[tuple[str, str]] = []
            if "sqlite" in backends:
                runs.append((f"SQLite {size:,}", str(paths[size])))
            if "postgresql" in backends:
                url = args.postgres_url or postgres_copy(paths[size], size, cleanup)
                runs.append((f"PostgreSQL {size:,}", url))
                if args.latency_ms:
                    runs.append((f"PostgreSQL {size:,} +{args.latency_ms:g} ms", behind_proxy(url, args.latency_ms,
                                                                                          cleanup)))
            for label, location in runs:
                print(f"measuring the grid: {label} ...", file=sys.stderr)
                starts = [run_child("start", location, "grid") for _ in range(3)]
                consoles = [run_child("console", location) for _ in range(3)]
                figures[label] = {"start": min(starts, key=lambda s: s["start_to_painted_s"]),
                                  "starts": [s["start_to_painted_s"] for s in starts],
                                  "console": min(consoles, key=lambda s: s["start_to_painted_s"]),
                                  "consoles": [s["start_to_painted_s"] for s in consoles],
                                  "load": round(os.getloadavg()[0], 1)}
                if not args.start_only:
                    figures[label].update(run_child("grid", location, *(["skip-approve"] if args.skip_approve else [])))
    finally:
        for step in reversed(cleanup):
            step()
    reference_size = min(sizes)
    if not args.skip_datatable:
        print(f"measuring DataTable at {reference_size:,} rows (slow) ...", file=sys.stderr)
        figures[f"DataTable {reference_size:,}"] = {"start": run_child("start", str(paths[reference_size]), "table"),
                                                   **run_child("datatable", str(paths[reference_size]))}
    imports = {
        "python -c pass": import_cost("pass"),
        "import mbxtui.tui.app": import_cost("import mbxtui.tui.app"),
        "import mbxtui.tui.widgets.grid": import_cost("import mbxtui.tui.widgets.grid"),
        "import textual.app": import_cost("import textual.app"),
    }
    report(figures, imports)
    return 0


def postgres_copy(sqlite_path: Path, size: int, cleanup: list[Callable[[], Any]]) -> str:
    """A private PostgreSQL server (as the tests start it) holding a copy of ``sqlite_path``."""
    sys.path.insert(0, str(BENCH_DIR.parent))  # tests.lab lives beside the package
    from mbxtui.core import transfer
    from tests.lab.postgres import start_postgres

    server = start_postgres()
    cleanup.append(server.stop)
    name = f"grid_{size}"
    url = server.create_database(name)
    started = time.perf_counter()
    print(f"copying {sqlite_path.name} into PostgreSQL (minutes at 1,000,000) ...", file=sys.stderr)
    transfer.copy_installation(sqlite_path, url)
    # Else autovacuum visits the copied tables during the first run: its keys and paints came
    # 2-3 times slower (page down 25 ms median against 11-12 ms in the run behind the proxy).
    server.psql("VACUUM ANALYZE", database=name)
    print(f"copied and vacuumed in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return url


def behind_proxy(url: str, delay_ms: float, cleanup: list[Callable[[], Any]]) -> str:
    """``url`` reached through latency_proxy.py (a process of its own, stopped at the end)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    proxy = subprocess.Popen([sys.executable, str(BENCH_DIR / "latency_proxy.py"), "--target-port", str(parts.port),
                              "--delay-ms", str(delay_ms)], stdout=subprocess.PIPE, text=True)

    def stop() -> None:
        proxy.terminate()
        proxy.wait(timeout=10)

    cleanup.append(stop)
    port = int(proxy.stdout.readline())
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


def report(figures: dict[str, dict[str, Any]], imports: dict[str, float]) -> None:
    names = list(figures)
    header = ["operation", *names, "target (1M)"]

    def get(name: str, *path: str) -> Any:
        value: Any = figures[name]
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    def pair(name: str, *path: str) -> str | None:
        found = get(name, *path)
        return None if found is None else f"{found['median_ms']} / {found['worst_ms']}"

    rows = [
        ["mailboxes in the Active view", *[get(n, "start", "rows") for n in names], ""],
        ["load average (1 min) at the start of the run", *[get(n, "load") for n in names], ""],
        ["process start to the console's first frame, s (best of 3; placeholders)",
         *[get(n, "console", "start_to_painted_s") for n in names], TARGETS["start"]],
        ["  all three runs, s", *[get(n, "consoles") for n in names], ""],
        ["  its database and operator opened (in its worker), s",
         *[get(n, "console", "database_opened_s") for n in names], ""],
        ["  its grid's rows painted, s", *[get(n, "console", "start_to_rows_s") for n in names], ""],
        ["  of which imports, s", *[get(n, "console", "imports_s") for n in names], ""],
        ["process start to painted grid in an app of its own (database opened first), s (best of 3)",
         *[get(n, "start", "start_to_painted_s") for n in names], TARGETS["start"]],
        ["process start to painted rows, s", *[get(n, "start", "start_to_rows_s") for n in names], ""],
        ["  of which opening the database and the operator, s", *[get(n, "start", "database_opened_s") for n in names], ""],
        ["  CPU time of the process to the whole view read, s", *[get(n, "start", "cpu_s") for n in names], ""],
        ["  of which before importing textual, s", *[get(n, "start", "before_textual_s") for n in names], ""],
        ["  of which imports, s", *[get(n, "start", "imports_s") for n in names], ""],
        ["  all three runs, s", *[get(n, "starts") for n in names], ""],
        ["process start to whole view read, s", *[get(n, "start", "start_to_whole_view_read_s") for n in names], ""],
    ]
    for label in ("cursor down", "cursor up", "page down", "page up", "end / home", "space (mark)"):
        rows.append([f"{label}: key to frame, ms median / worst", *[pair(n, "keys", label, "key_to_frame")
                                                                    for n in names], TARGETS["keys"]])
        rows.append([f"{label}: paint, ms median / worst", *[pair(n, "keys", label, "paint") for n in names], ""])
        rows.append([f"{label}: work, ms median / worst", *[pair(n, "keys", label, "work") for n in names], ""])
    for name, label in (("filter", f"filter keystrokes ({FILTER_TEXT})"),
                        ("short filters", "filters of 1-2 characters (+ org), each from no filter")):
        rows.append([f"{label}: to rows drawn, ms median / worst", *[pair(n, name, "rows") for n in names],
                     TARGETS["filter"]])
        rows.append(["  to ids shown (cells may be placeholders), ms median / worst",
                     *[pair(n, name, "ids") for n in names], ""])
        rows.append(["  each, to rows drawn, ms", *[get(n, name, "rows_ms") for n in names], ""])
        rows.append(["  each, CPU of the process meanwhile, ms", *[get(n, name, "cpu_ms") for n in names], ""])
        rows.append(["  each, the whole list (the count) read, ms", *[get(n, name, "whole_ms") for n in names], ""])
    for column in SORTS:
        rows.append([f"sort by {column}, ms (shown / whole order read / reversed)",
                     *[(f"{get(n, 'sort', column, 'first_ms')} / {get(n, 'sort', column, 'whole_ms')} / "
                        f"{get(n, 'sort', column, 'reversed_ms')}") if get(n, "sort", column) else None
                       for n in names], TARGETS["sort"]])
    for view in ("pending", "failed", "disabled", "all", "active"):
        rows.append([f"switch to view {view}, ms", *[get(n, "view switch", view) for n in names], ""])
    rows.append(["mark all in the Active view / clear, ms",
                 *[(f"{get(n, 'mark_all_active_ms')} / {get(n, 'clear_marks_ms')}" if get(n, "mark_all_active_ms")
                    is not None else None) for n in names], ""])
    for case in ("pending / of_ids", "pending / of_view", "all / of_ids", "all / of_view"):
        rows.append([f"mark all + approve, {case}: rows", *[get(n, "mark all + approve", case, "rows")
                                                            for n in names], ""])
        rows.append(["  mark all / approve / reload, ms",
                     *[(f"{get(n, 'mark all + approve', case, 'mark_all_ms')} / "
                        f"{get(n, 'mark all + approve', case, 'approve_ms')} / "
                        f"{get(n, 'mark all + approve', case, 'reload_ms')}")
                       if get(n, "mark all + approve", case) else None for n in names], ""])
        rows.append(["  total, s", *[(round(get(n, "mark all + approve", case, "total_ms") / 1000, 2)
                                       if get(n, "mark all + approve", case) else None) for n in names],
                     TARGETS["approve"]])
    rows.append(["CPU time of the keys/filter/sort process, s", *[get(n, "cpu_s") for n in names], ""])
    rows.append(["peak RSS, MB (start)", *[get(n, "start", "peak_rss_mb") for n in names], TARGETS["rss"]])
    rows.append(["peak RSS, MB (keys, filter, sort)",
                 *[get(n, "peak_rss_mb_before_approve") or get(n, "peak_rss_mb") for n in names], TARGETS["rss"]])
    rows.append(["peak RSS, MB (after the approvals)", *[get(n, "peak_rss_mb") if get(n, "mark all + approve")
                                                         else None for n in names], ""])
    rows.append(["peak anonymous (private) RSS, MB, sampled: keys, filter, sort",
                 *[get(n, "peak_anonymous_mb_before_approve") for n in names], TARGETS["rss"]])
    rows.append(["  the same, with the approvals", *[get(n, "peak_anonymous_mb") for n in names], ""])
    table("figures", header, rows)
    table("import cost (python -c, median of 5)", ["statement", "s"],
          [[statement, round(seconds, 3)] for statement, seconds in imports.items()])


if __name__ == "__main__":
    raise SystemExit(main())
