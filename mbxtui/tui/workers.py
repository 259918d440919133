"""The one way the console calls a service: in a thread worker, never on the UI thread, so that a
slow database never holds the keys. The answer comes back as a message to the node that asked;
a refusal (``MbxError``), a database or keyring error or any other failure comes back as
``ServiceFailed`` with one line to show (``problem_sentence``): the node shows it in place (a form
under its title) or the app's one handler as a notification. A failure other than a refusal is
logged here, in the worker, with its traceback and never its local variables.

Follows Harlequin's ``@work(thread=True, exclusive=True)`` loads: a newer call of the same group
on the same node cancels the older one, whose answer is then dropped."""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from textual.dom import DOMNode
from textual.message import Message
from textual.worker import Worker, get_current_worker

from mbxtui.core.errors import DATABASE_BUSY, MbxError, problem_sentence
from mbxtui.core.faults import fault_sentence, forget_connection
from mbxtui.tui.messages import Done, ServiceFailed

T = TypeVar("T")
log = logging.getLogger(__name__)

LOAD_DELAY_SECONDS = 0.0
"""For tests only: seconds each service call waits in its worker thread before it runs, so that a
test can show the console staying usable while a load is slow. The product never sets it."""


def run_service(node: DOMNode, call: Callable[[], T], answer: Callable[[T], Message], *, group: str,
                title: str = "Refused", exclusive: bool = True) -> Worker[None]:
    """Run ``call`` in a thread worker of ``node``; post ``answer(result)`` to ``node``, or
    ``ServiceFailed`` (with ``title``) when it raises. ``exclusive``: cancel the group's older call."""

    def in_thread() -> None:
        if LOAD_DELAY_SECONDS:
            time.sleep(LOAD_DELAY_SECONDS)
        if get_current_worker().is_cancelled:  # its screen was closed, or a newer call made, meanwhile
            return
        try:
            result = call()
        except Exception as exc:  # shown to the operator where it happened; the console keeps working
            problem = problem_sentence(exc)
            if problem == DATABASE_BUSY or fault_sentence(exc) is not None:  # the machine's, not a bug
                log.warning("%s: %s: %s", type(node).__name__, group, problem)
                # The worker threads are pooled: a connection the server closed must not be the next call's.
                forget_connection()
            elif not isinstance(exc, MbxError):
                log.exception("%s: %s failed", type(node).__name__, group)  # the traceback, never locals
            report(node, ServiceFailed(group, title, problem, exc))
            return
        if not get_current_worker().is_cancelled:  # a newer call of the group was made meanwhile
            node.post_message(answer(result))

    return node.run_worker(in_thread, name=group, group=group, thread=True, exclusive=exclusive,
                           exit_on_error=False)


def run_then(node: DOMNode, call: Callable[[], T], then: Callable[[T], None], *, group: str,
             title: str = "Refused", exclusive: bool = False) -> Worker[None]:
    """``run_service`` for a single change: ``then(result)`` runs on the UI thread once it is done."""
    return run_service(node, call, lambda result: Done(result, then), group=group, title=title,
                       exclusive=exclusive)


def report(node: DOMNode, failure: ServiceFailed) -> None:
    """To the node that asked; to the app when that node is gone (the operator left its screen)."""
    if not node.post_message(failure):
        node.app.post_message(failure)
