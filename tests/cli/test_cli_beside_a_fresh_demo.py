"""The command line beside a demo started for the first time: both processes share its database
file, as the demo's own instructions have a newcomer do (``export MBXTUI_DB=...``)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from mbxtui.core.secrets import KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV
from mbxtui.demo import DEMO_MASTER_PASSWORD, prepare_demo

REPO_ROOT = Path(__file__).resolve().parents[2]


def _mapped_files() -> set[str]:
    with open("/proc/self/maps") as maps:
        return {line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6}


def test_a_command_beside_the_first_started_demo_leaves_its_database_readable(tmp_path: Path):
    """The first start seeds the database under another name and moves it into place. No connection
    to it may outlive the move: this process would go on using the seeding file's (deleted) -shm
    while the command line makes a new one, two WAL indexes for one database, and the command's exit
    (the last connection it can see) removes the WAL this process still reads: "disk I/O error"."""
    demo = prepare_demo(tmp_path / "demo")
    try:
        assert not [name for name in _mapped_files() if ".seeding" in name]
        environment = {**os.environ, "MBXTUI_DB": str(demo.db_path), "MBXTUI_DATA_DIR": str(demo.directory),
                       KEYRING_CHOICE_ENV: "file", MASTER_PASSWORD_ENV: DEMO_MASTER_PASSWORD}
        for _ in range(2):
            with sqlite3.connect(demo.db_path) as writer:  # a commit of this process, in the WAL
                writer.execute("UPDATE meta SET value = value")
            writer.close()
            shown = subprocess.run([sys.executable, "-m", "mbxtui", "profile", "list"], env=environment,
                                   capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
            assert shown.returncode == 0, shown.stdout + shown.stderr
            original, copy = sqlite3.connect(demo.db_path), sqlite3.connect(tmp_path / "copy.db")
            try:
                original.backup(copy)
                assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            finally:
                original.close()
                copy.close()
    finally:
        demo.stop()
