"""The one helper that runs a service call off the UI thread: the answer comes back as a message,
a refusal as ServiceFailed with its message, anything else as ServiceFailed with its traceback
logged, and a newer call of the same group drops the older one's answer."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Awaitable, Callable

import pytest
from textual.app import App
from textual.message import Message

from mbxtui.core.errors import NotFound
from mbxtui.tui.messages import ServiceFailed
from mbxtui.tui.workers import run_service


@dataclass
class Answered(Message):
    value: object


class Caller(App):
    def __init__(self) -> None:
        super().__init__()
        self.answers: list[object] = []
        self.failures: list[ServiceFailed] = []

    def on_answered(self, message: Answered) -> None:
        self.answers.append(message.value)

    def on_service_failed(self, message: ServiceFailed) -> None:
        self.failures.append(message)


def run(scenario: Callable[[Caller], Awaitable[None]]) -> Caller:
    app = Caller()

    async def main() -> None:
        async with app.run_test() as pilot:
            await scenario(app)
            await app.workers.wait_for_complete()
            await pilot.pause()

    asyncio.run(main())
    return app


def test_the_answer_comes_back_as_a_message_and_the_call_ran_off_the_ui_thread():
    ran_on: list[threading.Thread] = []

    def call() -> str:
        ran_on.append(threading.current_thread())
        return "rows"

    async def scenario(app: Caller) -> None:
        run_service(app, call, Answered, group="load")

    app = run(scenario)
    assert app.answers == ["rows"] and not app.failures
    assert ran_on and ran_on[0] is not threading.main_thread()


def test_a_refusal_comes_back_with_its_message_and_no_traceback(caplog: pytest.LogCaptureFixture):
    def call() -> None:
        raise NotFound("no mailbox with email nobody@corp.test")

    async def scenario(app: Caller) -> None:
        run_service(app, call, Answered, group="open", title="Refused")

    with caplog.at_level(logging.ERROR, logger="mbxtui.tui.workers"):
        app = run(scenario)
    [failure] = app.failures
    assert (failure.group, failure.title) == ("open", "Refused")
    assert failure.problem == "no mailbox with email nobody@corp.test"
    assert isinstance(failure.error, NotFound) and not app.answers
    assert not caplog.records


def test_a_failure_is_shown_and_logged_with_its_traceback(caplog: pytest.LogCaptureFixture):
    def call() -> None:
        raise ZeroDivisionError("division by zero")

    async def scenario(app: Caller) -> None:
        run_service(app, call, Answered, group="load")

    with caplog.at_level(logging.ERROR, logger="mbxtui.tui.workers"):
        app = run(scenario)
    [failure] = app.failures
    assert failure.problem == "ZeroDivisionError: division by zero"
    [record] = caplog.records
    assert record.exc_info is not None and "load failed" in record.getMessage()


def test_a_newer_call_of_the_group_drops_the_older_answer():
    release = threading.Event()

    def slow() -> str:
        release.wait(5)
        return "old"

    async def scenario(app: Caller) -> None:
        run_service(app, slow, Answered, group="page")
        await asyncio.sleep(0.05)
        run_service(app, lambda: "new", Answered, group="page")
        await asyncio.sleep(0.05)
        release.set()

    app = run(scenario)
    assert app.answers == ["new"]
