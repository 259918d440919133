"""What the machine under the console says while it runs: too few file descriptors for its Test &
Enable threads (so the tests are slower), a full disk or a PostgreSQL server its runners wait out
(said as Test & Enable or processing stopped until the database answers again, and why), and that
they go on. ``mbxtui worker`` prints these lines on stderr (``logs.echo``); the console shows each
as a notification, posted from whichever thread logged it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from textual.app import App
from textual.message import Message

# The loggers the runners tell these through, as ``mbxtui worker`` echoes them.
LOGGERS = ("mbxtui.core.descriptors", "mbxtui.core.faults")


@dataclass
class MachineNotice(Message):
    text: str
    warning: bool  # else it tells that a fault passed


def console_text(record: logging.LogRecord) -> str:
    """The line as the console says it. A runner waiting a fault out (``paused``: what, ``fault``:
    why) has stopped meanwhile: the worker's "Test & Enable waits: ..." read in the console as if
    the tests were only slower, while none ran until the database answered again. Too few file
    descriptors (``why``, and ``raise_to`` what) is the console's own limit: the worker's advice
    named the worker's systemd unit."""
    paused = getattr(record, "paused", None)
    if paused:
        return f"{paused} stopped until the database answers again: {record.fault}"
    why = getattr(record, "why", None)
    if why:  # too few file descriptors: the worker's line names its systemd unit, none runs the console
        return f"{why}; raise `ulimit -n` in the shell that starts the console {record.raise_to}"
    return record.getMessage()


class _Poster(logging.Handler):
    def __init__(self, app: App) -> None:
        super().__init__(logging.INFO)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.app.post_message(MachineNotice(console_text(record), record.levelno >= logging.WARNING))
        except Exception:  # the console closing: the line is in the log file, if any
            self.handleError(record)


class MachineNotices:
    """Posts the lines of ``LOGGERS`` to ``app`` from now until ``close``."""

    def __init__(self, app: App) -> None:
        self._handler = _Poster(app)
        self._levels = {}
        for name in LOGGERS:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.addHandler(self._handler)
            logger.setLevel(logging.INFO)  # "goes on" lines are INFO

    def close(self) -> None:
        for name, level in self._levels.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self._handler)
            logger.setLevel(level)
