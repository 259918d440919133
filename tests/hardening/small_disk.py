"""A small tmpfs for the disk-full tests, and a filler file that takes its free space (mounting
needs root; without it the test is skipped with the reason)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHUNK = 64 * 1024


class SmallDisk:
    """The tmpfs mounted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def fill(self, leave: int = 0) -> None:
        """Take every free byte but about ``leave``."""
        with open(self.filler, "ab", buffering=0) as file:
            try:
                while True:
                    file.write(b"\0" * CHUNK)
            except OSError:
                pass
        os.truncate(self.filler, max(0, self.filler.stat().st_size - leave))

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.root)], check=True, capture_output=True)


@contextmanager
def mounted_tmpfs(root: Path, size: str, *, owner: tuple[int, int] | None = None) -> Iterator[SmallDisk]:
    """A tmpfs of ``size`` at ``root`` (made here), owned by ``owner`` (uid, gid) when given."""
    root.mkdir()
    options = f"size={size},mode=700" + (f",uid={owner[0]},gid={owner[1]}" if owner else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(root)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the disk-full tests (needs root): {done.stderr.strip()}")
    disk = SmallDisk(root)
    try:
        yield disk
    finally:
        disk.free()
        subprocess.run(["umount", "-l", str(root)], capture_output=True)


def worker_waits_out_the_full_disk(worker: subprocess.Popen, err_file: Path, *, said: str,
                                   finished: Callable[[], int], free: Callable[[], None],
                                   done: Callable[[], bool], done_within: float) -> None:
    """Once ``worker`` (its stderr in ``err_file``) has said ``said`` and tried a few times more on
    the full disk, alive and with nothing ``finished``: ``free`` the disk, wait until ``done`` (at
    most ``done_within`` seconds) and stop the worker with SIGTERM. The caller kills it if this
    fails on the way."""
    deadline = time.monotonic() + 30
    while said not in err_file.read_text() and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.1)
    time.sleep(2)  # a few tries more, on the full disk
    assert worker.poll() is None, err_file.read_text()
    assert finished() == 0, err_file.read_text()
    free()
    deadline = time.monotonic() + done_within
    while not done() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker.poll() is None, err_file.read_text()
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
