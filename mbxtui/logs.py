"""mbxtui's log, through the standard ``logging`` module under the logger ``mbxtui``.

It goes to a file only, and only when asked (``--log-file PATH``, else ``MBXTUI_LOG``): the console
owns the terminal, and the command line's stdout and stderr are its contract. The file is created
owner-only (0600) and appended to; every line is made harmless for a terminal as the screens are
(an escape sequence in a name is written as ``\\x1b``). ``mbxtui/__init__.py`` gives the logger a
NullHandler, so that without a file nothing reaches the terminal, even a warning.

An unexpected exception (a bug) is reported by ``report_crash``: its traceback, never the values of
local variables (a typed password may be one), goes to the log file, or without one to a crash
report file ``crash-*.txt`` (0600) in the data directory; the terminal gets one line naming the
report."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Iterable, Iterator

from mbxtui.core import paths
from mbxtui.core.display import safe, shown

LOG_ENV = "MBXTUI_LOG"
ROOT = "mbxtui"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d %(threadName)s] %(message)s"
CRASH_REPORT_PREFIX = "crash-"
HIDDEN = "[hidden]"
log = logging.getLogger(__name__)


class SafeFormatter(logging.Formatter):
    """Each line of a record (a traceback's too) with its control characters made visible."""

    def format(self, record: logging.LogRecord) -> str:
        return shown(super().format(record))


def log_file_from(flag: str | None) -> Path | None:
    """Where the log goes: the --log-file flag, else $MBXTUI_LOG, else nowhere."""
    chosen = flag or os.environ.get(LOG_ENV)
    return Path(chosen).expanduser() if chosen else None


class LogFile(logging.FileHandler):
    """A log file that, once a write fails (a full disk), stops writing and keeps why in
    ``failure``, instead of printing a traceback on the terminal for every line."""

    failure: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.failure is None:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        self.failure = getattr(error, "strerror", None) or str(error)

    def close(self) -> None:
        try:
            super().close()
        except OSError as exc:
            self.failure = self.failure or exc.strerror


def open_log_file(path: Path) -> logging.Handler:
    """Start appending mbxtui's log (INFO and above) to ``path``, created owner-only. Raises
    OSError when the file cannot be opened. Returns the handler, for ``close_log_file``."""
    os.close(paths.open_owner_only(path, os.O_APPEND))
    handler = LogFile(path, mode="a", encoding="utf-8", errors="backslashreplace")
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


def active_log_file() -> Path | None:
    """The file mbxtui's log goes to now, or None."""
    for handler in logging.getLogger(ROOT).handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


def crash_report_text(error: BaseException, *, hide: Iterable[str] = ()) -> str:
    """The traceback of ``error`` and of the exceptions it was raised from, without the values of
    local variables, each of ``hide`` (secrets the caller knows of) replaced by ``[hidden]``."""
    text = "".join(traceback.format_exception(error))
    for secret in sorted({s for s in hide if s}, key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text


def report_crash(error: BaseException, *, what: str, data_dir: Path | None = None, hide: Iterable[str] = (),
                 into: Path | None = None) -> tuple[str, Path | None]:
    """Record the unexpected ``error`` of ``what`` (a command, the console): to the log file when
    there is one, else to ``into`` (appended) or a new crash report file in ``data_dir`` (default:
    the data directory). Returns the one line to print and the report's path (None when it could
    not be written). Never raises."""
    text = crash_report_text(error, hide=hide)
    kind = type(error).__name__
    report = active_log_file()
    try:
        if report is not None:
            log.critical("%s stopped on an unexpected error:\n%s", what, text.rstrip("\n"))
        else:
            report = into or _new_crash_report(data_dir)
            _append_owner_only(report, f"{time.strftime('%Y-%m-%d %H:%M:%S')} mbxtui {what} stopped on an "
                                       f"unexpected error (process {os.getpid()}):\n{text}\n")
    except OSError as exc:
        return (f"mbxtui stopped on an unexpected error ({kind}); its report could not be written to "
                f"{safe(report)}: {exc.strerror or exc}. Run it again with --log-file PATH to keep the report."), None
    return (f"mbxtui stopped on an unexpected error ({kind}). The report is in {safe(report)}: "
            "send it to whoever maintains mbxtui."), report


def _new_crash_report(data_dir: Path | None) -> Path:
    directory = paths.ensure_private_dir(Path(data_dir) if data_dir is not None else paths.data_dir())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(100):
        path = directory / f"{CRASH_REPORT_PREFIX}{stamp}-{os.getpid()}{f'-{attempt}' if attempt else ''}.txt"
        try:
            os.close(paths.open_owner_only(path, os.O_EXCL))
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory}: too many crash reports this second")


def _append_owner_only(path: Path, text: str) -> None:
    fd = paths.open_owner_only(path, os.O_APPEND)
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as file:
        file.write(shown(text))
