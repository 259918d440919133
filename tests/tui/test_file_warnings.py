"""The console shows, as notifications, the warnings the command line prints about files others
could read or change (the data directory, the SQLite file)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from mbxtui.tui.app import MbxApp
from tests.backends import ON_POSTGRES
from tests.tui.conftest import Console, notifications


def opened_notifications(app: MbxApp) -> list[str]:
    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()

    asyncio.run(main())
    return notifications(app)


def test_a_data_directory_others_can_write_is_a_notification(console: Console, tmp_path: Path):
    data_dir = tmp_path / "odd [b]data[i]"  # a path is shown as it is, never read as markup
    data_dir.mkdir()
    os.chmod(data_dir, 0o777)
    app = MbxApp(console.admin, db_path=console.db_path, data_dir=data_dir, run_tests=False, store=console.store)
    assert f"the data directory {data_dir} can be written by other users; run: chmod 700 {data_dir}" \
        in opened_notifications(app)


@pytest.mark.skipif(ON_POSTGRES, reason="the SQLite file's mode")
def test_a_database_others_can_write_is_a_notification(console: Console):
    os.chmod(console.db_path, 0o664)
    shown = opened_notifications(console.app())
    assert f"{console.db_path} can be read and written by other users; run: chmod 600 {console.db_path}" in shown


def test_private_files_give_no_notification(console: Console):
    assert not any("other users" in text for text in opened_notifications(console.app()))
