"""What counts as running out of file descriptors (core/descriptors.py), in a child process whose
limit is lowered: SQLite's "unable to open database file" carries no errno."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHILD = r"""
import os, resource, sqlite3, sys
from mbxtui.core import descriptors
directory = sys.argv[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))
sqlite3.connect(os.path.join(directory, "open.db")).execute("CREATE TABLE t (x)")
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
answers = []
try:
    sqlite3.connect(os.path.join(directory, "open.db")).execute("SELECT 1")
except sqlite3.OperationalError as exc:
    answers.append(descriptors.out_of_descriptors(exc))
    for fd in held[:3]:  # other threads closed a few before the failure is read
        os.close(fd)
    answers.append(descriptors.out_of_descriptors(exc))
for fd in held[3:]:
    os.close(fd)
try:
    sqlite3.connect(f"file:{directory}/missing/x.db?mode=rw", uri=True)
except sqlite3.OperationalError as exc:
    answers.append(descriptors.out_of_descriptors(exc))
try:
    os.open(os.path.join(directory, "missing", "x"), os.O_RDONLY)
except OSError as exc:
    answers.append(descriptors.out_of_descriptors(exc))
print(answers)
"""


def test_sqlites_cannot_open_counts_as_out_of_descriptors_only_near_the_limit(tmp_path: Path):
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # at the limit, and a few freed since; far from the limit (a missing directory) it is not
    assert done.stdout.strip() == "[True, True, False, False]"
