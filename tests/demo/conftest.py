"""The demo's first start (which seeds the organisation and runs a first Test & Enable, taking
seconds) happens once per session, in an environment that names a real keyring and master
password the demo must ignore. Tests that only look share that demo; tests that change it get a
copy, started again as a person's second `mbxtui demo` is."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from mbxtui.core import models
from mbxtui.core.secrets import KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV, SECRETS_FILE_NAME
from mbxtui.demo import DATABASE_NAME, Demo, prepare_demo

REAL_MASTER_PASSWORD = "the master password of the real keyring"


@dataclass(frozen=True)
class FirstStart:
    demo: Demo
    seconds: float
    environment_after: dict[str, str | None]


@pytest.fixture(scope="session")
def first_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstStart]:
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv(KEYRING_CHOICE_ENV, "auto")
        environment.setenv(MASTER_PASSWORD_ENV, REAL_MASTER_PASSWORD)
        started = time.perf_counter()
        demo = prepare_demo(tmp_path_factory.mktemp("first-start"))
        seconds = time.perf_counter() - started
        after = {name: os.environ.get(name) for name in (KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV)}
    yield FirstStart(demo, seconds, after)
    demo.stop()


@pytest.fixture
def demo(first_start: FirstStart) -> Demo:
    """The first-started demo, to look at only. Its database becomes the models' again (another
    test's demo may have taken their place)."""
    models.database.initialize(first_start.demo.database)
    return first_start.demo


def copy_demo(source: Demo, directory: Path) -> Path:
    """What a demo directory keeps between starts: the database (copied consistently while the
    source runs) and the keyring file its secrets are in."""
    directory.mkdir(mode=0o700)
    shutil.copy2(source.directory / SECRETS_FILE_NAME, directory / SECRETS_FILE_NAME)
    original, copy = sqlite3.connect(source.db_path), sqlite3.connect(directory / DATABASE_NAME)
    try:
        original.backup(copy)
    finally:
        original.close()
        copy.close()
    return directory


@pytest.fixture
def demo_dir(first_start: FirstStart, tmp_path: Path) -> Path:
    return copy_demo(first_start.demo, tmp_path / "demo")


@pytest.fixture
def restarted_demo(demo_dir: Path) -> Iterator[Demo]:
    """A copy of the first demo, started again: for tests that change it or stop it."""
    demo = prepare_demo(demo_dir)
    yield demo
    demo.stop()
