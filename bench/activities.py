"""The Activities screen and its reads (core/services/activities.py) at N activities, SQLite.

    .venv/bin/python bench/activities.py [--activities 100000] [--repeat 5] [--rebuild]

The database (the real schema, a global_admin, 200 queues and their mailboxes, N activities: 1 in 100
outgoing, 1 in 10 of those failed; 1 in 10 subjects holds "Invoice") is built once by one
``INSERT ... SELECT`` and kept in $MBXTUI_BENCH_DIR (else /tmp/mbxtui-bench) under a name carrying
its size, the schema version and a build number. That is a build, not what is measured: the product
writes activities one cycle at a time through core/sync/store.py. Then it prints the median wall
time of each read the screen makes:

  * the first page (200 rows, newest first), a page deep in the list (keyset: ``id < ?``);
  * the views (Incoming, Outgoing, Failed) and a filter naming a mailbox;
  * the text filter (``instr`` over subject and addresses, no index) where matches are common and
    where there are none: the whole page, which walks every row when nothing matches, and the first
    screen (``head_activities``: what the walk finds within its time budget);
  * the count, bounded at 10,000, with and without a text filter;

then the screen itself (headless, 120x40, the encrypted-file keyring): from F9 to its first page
shown; for each filter, from the filter (after the screen's pause for typing) to its first rows or
"searching…", to the whole page and to its count; and keys as the terminal sends them (a key event
to the end of the frame that shows it): the cursor moving down the table from the top, then on down
while the table scrolls at each key, and letters typed into the filter while the filter's reads run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grid import FrameClock, key_to_frame  # noqa: E402  (beside this file)
from make_mailboxes import default_directory  # noqa: E402

from mbxtui.core import db  # noqa: E402
from mbxtui.core.migrations import LATEST_VERSION  # noqa: E402
from mbxtui.core.models import database  # noqa: E402
from mbxtui.core.services import activities, operators, users  # noqa: E402

QUEUES = 200
BUILD = 2  # raise when the generated data changes, so that saved databases are built again
KEY_ROUNDS = 40
TEXTS = ("invoice", "queue7@corp.test", "no such words")
TARGETS = {"F9 to the first page shown": "<= 600 ms (1,000,000)", "keys": "<= 16 ms median",
           "filter keystroke": "<= 100 ms"}


def build(path: Path, count: int) -> None:
    db.open_database(path)
    admin = operators.initialise(login="bench")
    users.add_user(admin, "Owner", "owner@corp.test")
    for number in range(QUEUES):
        users.add_queue(admin, f"Queue {number}", f"queue{number}@corp.test", "owner@corp.test")
    started = time.perf_counter()
    with database.atomic():
        database.execute_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO email_activity (direction, state, message_id, sender, \"to\", cc, subject, received_on, "
            "sent_on, size, attachments, preview, in_reply_to, mailbox_id, created_on) "
            "SELECT CASE WHEN i % 100 = 0 THEN 'outgoing' ELSE 'incoming' END, "
            "CASE WHEN i % 1000 = 0 THEN 'failed' WHEN i % 100 = 0 THEN 'sent' "
            "WHEN i % 50 = 0 THEN 'unresolved' ELSE 'received' END, "
            "'<' || i || '@bench.test>', "
            "CASE WHEN i % 100 = 0 THEN 'queue' || (i % 200) || '@corp.test' "
            "ELSE 'customer' || (i % 5000) || '@outside.test' END, "
            "CASE WHEN i % 100 = 0 THEN '[\"customer' || (i % 5000) || '@outside.test\"]' "
            "ELSE '[\"queue' || (i % 200) || '@corp.test\"]' END, '[]', "
            "CASE WHEN i % 10 = 0 THEN 'Invoice ' || i ELSE 'Question about order ' || i END, "
            "CASE WHEN i % 100 <> 0 THEN datetime('2026-01-01', '+' || i || ' seconds') END, "
            "CASE WHEN i % 100 = 0 THEN datetime('2026-01-01', '+' || i || ' seconds') END, 2048, '[]', 'Hello', '', "
            "(SELECT id FROM mailbox WHERE email = 'queue' || (i % 200) || '@corp.test'), "
            "datetime('2026-01-01', '+' || i || ' seconds') FROM n", [count])
    database.close()
    print(f"built {count:,} activities in {time.perf_counter() - started:.1f} s")


def ensure(count: int, rebuild: bool) -> Path:
    directory = default_directory()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"activities-{count}-schema{LATEST_VERSION}-build{BUILD}.db"
    if rebuild or not path.exists():
        with tempfile.TemporaryDirectory(dir=directory) as scratch:
            built = Path(scratch) / "activities.db"
            build(built, count)
            built.rename(path)
    return path


def median_ms(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activities", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rebuild", action="store_true", help="build the database again")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    path = ensure(args.activities, args.rebuild)
    db.open_database(path)
    actor = operators.current_actor(login="bench")
    middle = args.activities // 2
    nowhere = "no such words"
    reads: list[tuple[str, Callable[[], object]]] = [
        ("first page", lambda: activities.page_activities(actor)),
        ("a page halfway down (id < N/2)", lambda: activities.page_activities(actor, before_id=middle)),
        ("view: Incoming", lambda: activities.page_activities(actor, direction="incoming")),
        ("view: Outgoing (1 in 100)", lambda: activities.page_activities(actor, direction="outgoing")),
        ("view: Failed (1 in 1,000)", lambda: activities.page_activities(actor, direction="outgoing", state="failed")),
        ("filter: a mailbox's address", lambda: activities.page_activities(actor, text="queue7@corp.test")),
        ("filter: text in 1 of 10 subjects", lambda: activities.page_activities(actor, text="invoice")),
        ("filter: text found nowhere, the whole page", lambda: activities.page_activities(actor, text=nowhere)),
        ("filter: text found nowhere, the first screen (head)",
         lambda: activities.head_activities(actor, text=nowhere)),
        ("count, no filter", lambda: activities.count_activities(actor)),
        ("count, view Outgoing", lambda: activities.count_activities(actor, direction="outgoing")),
        ("count, text in 1 of 10", lambda: activities.count_activities(actor, text="invoice")),
        ("count, text found nowhere", lambda: activities.count_activities(actor, text=nowhere)),
    ]
    print(f"\n| read at {args.activities:,} activities | median of {args.repeat} |\n|---|---|")
    for title, call in reads:
        print(f"| {title} | {median_ms(call, args.repeat):.1f} ms |")
    database.close()
    print("\n| the screen | wall | target |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for title, figure in asyncio.run(screen_times(actor, path, Path(folder))):
            target = next((goal for name, goal in TARGETS.items() if title.startswith(name)), "")
            print(f"| {title} | {figure} | {target} |")


async def typed_to_frame(app, clock: FrameClock, key: str, character: str | None, rng: random.Random) -> float:
    """``grid.key_to_frame`` for a key that types a character: key event to the end of its frame."""
    from textual import events

    await asyncio.sleep(rng.uniform(0, 0.02))
    count = len(clock.frames)
    sent = time.perf_counter()
    app._driver.send_message(events.Key(key, character))
    frame = await clock.next_frame_after(count)
    if frame is None:
        raise RuntimeError(f"no frame after {key!r}")
    return frame[1] - sent


async def until(condition: Callable[[], bool], give_up_after: float = 120.0) -> float:
    started = time.perf_counter()
    while not condition() and time.perf_counter() - started < give_up_after:
        await asyncio.sleep(0.001)
    return time.perf_counter() - started


async def screen_times(actor, path: Path, folder: Path) -> list[tuple[str, str]]:
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    from mbxtui.core.secrets import SecretStore
    from mbxtui.tui.app import MbxApp

    store = SecretStore.open(folder / "secrets")
    store.unlock("bench master password")
    app = MbxApp(actor, db_path=path, data_dir=folder, run_tests=False, store=store)
    figures: list[tuple[str, str]] = []
    rng = random.Random(7)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        started = time.perf_counter()
        app.action_go("activities")
        await until(lambda: bool(getattr(app.screen, "rows", None)) and not app.screen.reading)
        figures.append(("F9 to the first page shown", f"{(time.perf_counter() - started) * 1000:.0f} ms"))
        screen = app.screen
        await until(lambda: not screen.counting)
        clock = FrameClock(screen)
        # From the top (the table scrolls for the last few), then on down (it scrolls at every key).
        # The key's frame waits for Textual's next screen update besides the work the key costs,
        # which the frame's paint shows apart.
        for title in ("keys: down in the table, key to frame", "keys: on down, the table scrolling at each key"):
            timed = [await key_to_frame(app, clock, "down", rng) for _ in range(KEY_ROUNDS)]
            downs = [to_frame for to_frame, _ in timed]
            figures.append((title, f"median {statistics.median(downs) * 1000:.1f} ms, worst {max(downs) * 1000:.1f} ms "
                            f"(the frame's paint: median {statistics.median(paint for _, paint in timed) * 1000:.1f} ms)"))
        for text in TEXTS:
            started = time.perf_counter()
            screen.filter_now(text)
            first = await until(lambda: not screen.reading)
            whole = await until(lambda: not screen.reading and not screen.searching) + first
            counted = await until(lambda: not screen.counting) + whole
            figures.append((f"filter {text!r}: first rows or searching… / whole page / count shown",
                            f"{first * 1000:.0f} / {whole * 1000:.0f} / {counted * 1000:.0f} ms"))
        screen.filter_now("")
        await until(lambda: not screen.reading and not screen.searching and not screen.counting)
        await pilot.press("slash")
        typed = []
        for letter in "no such words":  # each letter restarts the filter's pause; the last one reads
            typed.append(await typed_to_frame(app, clock, "space" if letter == " " else letter, letter, rng))
        figures.append(("filter keystroke: key to frame, typing a filter",
                        f"median {statistics.median(typed) * 1000:.1f} ms, worst {max(typed) * 1000:.1f} ms"))
        typed = []
        await asyncio.sleep(activities_pause())
        for _ in range(10):  # while the rare filter's page and count are read
            typed.append(await typed_to_frame(app, clock, "x", "x", rng))
            typed.append(await typed_to_frame(app, clock, "backspace", None, rng))
        figures.append(("filter keystroke: key to frame while a rare filter is read",
                        f"median {statistics.median(typed) * 1000:.1f} ms, worst {max(typed) * 1000:.1f} ms"))
    return figures


def activities_pause() -> float:
    from mbxtui.tui.screens.activities import FILTER_PAUSE_SECONDS

    return FILTER_PAUSE_SECONDS + 0.05


if __name__ == "__main__":
    main()
