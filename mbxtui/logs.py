"""mbxtui's log, through the standard ``logging`` module under the logger ``mbxtui``.

It goes to a file only, and only when asked (``--log-file PATH``, else ``MBXTUI_LOG``): the console
owns the terminal, and the command line's stdout and stderr are its contract. The file is created
owner-only (0600) and appended to; every line is made harmless for a terminal as the screens are
(an escape sequence in a name is written as ``\\x1b``). ``mbxtui/__init__.py`` gives the logger a
NullHandler, so that without a file nothing reaches the terminal, even a warning."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import IO, Iterator

from mbxtui.core.display import safe

LOG_ENV = "MBXTUI_LOG"
ROOT = "mbxtui"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d %(threadName)s] %(message)s"


class SafeFormatter(logging.Formatter):
    """Each line of a record (a traceback's too) with its control characters made visible."""

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(safe(line) for line in super().format(record).split("\n"))


def log_file_from(flag: str | None) -> Path | None:
    """Where the log goes: the --log-file flag, else $MBXTUI_LOG, else nowhere."""
    chosen = flag or os.environ.get(LOG_ENV)
    return Path(chosen).expanduser() if chosen else None


def open_log_file(path: Path) -> logging.Handler:
    """Start appending mbxtui's log (INFO and above) to ``path``, created owner-only. Raises
    OSError when the file cannot be opened. Returns the handler, for ``close_log_file``."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600))
    handler = logging.FileHandler(path, mode="a", encoding="utf-8", errors="backslashreplace")
    handler.setFormatter(SafeFormatter(FILE_FORMAT))
    logger = logging.getLogger(ROOT)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def close_log_file(handler: logging.Handler | None) -> None:
    if handler is None:
        return
    logger = logging.getLogger(ROOT)
    logger.removeHandler(handler)
    handler.close()
    if not any(isinstance(h, logging.FileHandler) for h in logger.handlers):
        logger.setLevel(logging.NOTSET)


@contextlib.contextmanager
def log_file(path: Path | None) -> Iterator[logging.Handler | None]:
    """The log written to ``path`` (nowhere when None) while the block runs."""
    handler = open_log_file(path) if path is not None else None
    try:
        yield handler
    finally:
        close_log_file(handler)


@contextlib.contextmanager
def echo(logger: logging.Logger, stream: IO[str]) -> Iterator[None]:
    """Also print the INFO records of ``logger`` on ``stream``, their message alone, one line each
    (how ``mbxtui worker`` reports), whether or not a log file is open."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
