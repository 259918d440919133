"""The console's reads of email activities (core/services/activities.py) at N activities, SQLite.

    .venv/bin/python bench/activities.py [--activities 100000] [--repeat 5]

Builds a fresh database (the real schema, a global_admin, 200 queues and their mailboxes) with N
incoming activities inserted by one ``INSERT ... SELECT`` (a build, not what is measured: the
product writes them one cycle at a time through core/sync/store.py), then prints the median wall
time of each read the Activities screen makes:

  * the first page (200 rows, newest first), a page deep in the list (keyset: ``id < ?``);
  * a view by state (the ``email_activity_state`` index) and a filter naming a mailbox;
  * the text filter (``instr`` over subject and addresses, no index) where matches are common and
    where there are none: the page stops at 200 matches, so "none" reads every row;
  * the count, bounded at 10,000, with and without a text filter;

then the screen itself (headless, 120x40, the encrypted-file keyring): from F9 to its first page
shown, and from a filter (after the screen's pause for typing) to its rows shown.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from mbxtui.core import db
from mbxtui.core.models import database
from mbxtui.core.services import activities, operators, users

QUEUES = 200


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
            "size, attachments, preview, in_reply_to, mailbox_id, created_on) "
            "SELECT 'incoming', CASE WHEN i % 50 = 0 THEN 'unresolved' ELSE 'received' END, "
            "'<' || i || '@bench.test>', "
            "'customer' || (i % 5000) || '@outside.test', '[\"queue' || (i % 200) || '@corp.test\"]', '[]', "
            "CASE WHEN i % 10 = 0 THEN 'Invoice ' || i ELSE 'Question about order ' || i END, "
            "datetime('2026-01-01', '+' || i || ' seconds'), 2048, '[]', 'Hello', '', "
            "(SELECT id FROM mailbox WHERE email = 'queue' || (i % 200) || '@corp.test'), "
            "datetime('2026-01-01', '+' || i || ' seconds') FROM n", [count])
    print(f"built {count:,} activities in {time.perf_counter() - started:.1f} s")


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
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder:
        build(Path(folder) / "activities.db", args.activities)
        actor = operators.current_actor(login="bench")
        middle = args.activities // 2
        reads: list[tuple[str, Callable[[], object]]] = [
            ("first page", lambda: activities.page_activities(actor)),
            ("a page halfway down (id < N/2)", lambda: activities.page_activities(actor, before_id=middle)),
            ("view: state unresolved", lambda: activities.page_activities(actor, state="unresolved")),
            ("filter: a mailbox's address", lambda: activities.page_activities(actor, text="queue7@corp.test")),
            ("filter: text in 1 of 10 subjects", lambda: activities.page_activities(actor, text="invoice")),
            ("filter: text found nowhere", lambda: activities.page_activities(actor, text="no such words")),
            ("count, no filter", lambda: activities.count_activities(actor)),
            ("count, text in 1 of 10", lambda: activities.count_activities(actor, text="invoice")),
            ("count, text found nowhere", lambda: activities.count_activities(actor, text="no such words")),
        ]
        print(f"\n| read at {args.activities:,} activities | median of {args.repeat} |\n|---|---|")
        for title, call in reads:
            print(f"| {title} | {median_ms(call, args.repeat):.1f} ms |")
        print("\n| the screen | wall |\n|---|---|")
        for title, seconds in asyncio.run(screen_times(actor, Path(folder))):
            print(f"| {title} | {seconds * 1000:.0f} ms |")


async def screen_times(actor, folder: Path) -> list[tuple[str, float]]:
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    from mbxtui.core.secrets import SecretStore
    from mbxtui.tui.app import MbxApp

    store = SecretStore.open(folder / "secrets")
    store.unlock("bench master password")
    app = MbxApp(actor, db_path=folder / "activities.db", data_dir=folder, run_tests=False, store=store)
    times = []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        started = time.perf_counter()
        app.action_go("activities")
        while not getattr(app.screen, "rows", None) or app.screen.reading:
            await asyncio.sleep(0.001)
        times.append(("F9 to the first page shown", time.perf_counter() - started))
        for text in ("invoice", "queue7@corp.test", "no such words"):
            screen = app.screen
            started = time.perf_counter()
            screen.filter_now(text)
            while screen.reading:
                await asyncio.sleep(0.001)
            times.append((f"filter {text!r} to its rows shown", time.perf_counter() - started))
    return times


if __name__ == "__main__":
    main()
