"""Processing that keeps running (``mbxtui worker``, ``mbxtui console --process``, the demo): a sync
pass over the due mailboxes (``SyncRunner.run_once``, then ``OutgoingRunner.run_once``) every few
seconds, and the re-tests of R33 queued as they fall due.

It runs on a thread of its own, beside the Test & Enable runner's loop rather than interleaved with
it: a pass waits on mail servers for up to a profile's timeout, and the test runner's thread must
meanwhile go on renewing its jobs' leases and writing results every second. Both share each
profile's connection bound through their leased slots (jobs/leases.py), under names of their own.

Stopping (``stop`` set): no new cycle starts, those in flight finish within their profile's
timeout, and every mailbox the pass claimed is given back (``SyncRunner``'s closing release)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from mbxtui.core import faults
from mbxtui.core.faults import fault_sentence, forget_connection
from mbxtui.core.jobs import queue, retests
from mbxtui.core.models import database, utcnow
from mbxtui.core.secrets import SecretStore
from mbxtui.core.sync.outgoing import OutgoingRunner
from mbxtui.core.sync.runner import MailboxCycled, SyncRunner, SyncSummary

log = logging.getLogger(__name__)

PAUSE_SECONDS = 5.0
RETEST_CHECK_SECONDS = 60.0
# After a pass that failed as a whole (the database did not answer), wait this long before the next.
FAILED_PASS_PAUSE = 10.0
PASS_FAILED = "a processing pass could not run"
RETESTS_FAILED = "the re-tests due could not be queued"


@dataclass
class ProcessingTotals:
    passes: int = 0
    cycles: int = 0
    messages: int = 0
    recorded: int = 0
    failed: int = 0
    retests: int = 0

    def add(self, summary: SyncSummary) -> None:
        self.passes += 1
        self.cycles += len(summary.mailboxes)
        self.messages += sum(m.messages for m in summary.mailboxes)
        self.recorded += sum(m.recorded for m in summary.mailboxes)
        self.failed += summary.failed


def eventful(cycled: MailboxCycled) -> bool:
    """A cycle worth a line of the log: it failed, or recorded, kept unresolved or deleted mail. A
    cycle that found nothing new, or only mail its mailbox does not track (R27), is not an event."""
    return not cycled.ok or bool(cycled.recorded or cycled.unresolved or cycled.deleted)


class ProcessingLoop:
    """``process``: run sync passes (False: only queue the re-tests, for a worker that only tests).
    ``on_pass``: called with each pass's summary (on the loop's thread); ``on_retests``: with the
    number of re-tests just queued, so that the caller can wake its Test & Enable runner.
    ``requested_by``: who the re-test jobs are recorded as asked by. ``lease_seconds``: how long the
    mailboxes a pass claimed and its connection slots stay held once it stops renewing them (its host
    died or was cut off) before other workers take them over; None: the runners' own default."""

    def __init__(self, secrets: SecretStore | None, *, requested_by: str, stop: threading.Event | None = None,
                 process: bool = True, threads: int = 8, pause_seconds: float = PAUSE_SECONDS,
                 retest_check_seconds: float = RETEST_CHECK_SECONDS,
                 on_pass: Callable[[SyncSummary], None] | None = None,
                 on_retests: Callable[[int], None] | None = None, lease_seconds: float | None = None) -> None:
        self.stop = stop or threading.Event()
        self.lease_seconds = lease_seconds
        self.process = process
        self.requested_by = requested_by
        self.pause_seconds = pause_seconds
        self.retest_check_seconds = retest_check_seconds
        self.on_pass = on_pass
        self.on_retests = on_retests
        self.secrets = secrets
        self.threads = threads
        self.totals = ProcessingTotals()
        self._retests_checked = float("-inf")
        self._said: dict[str, str] = {}  # what a fault stops -> the fault last said

    def run(self, *, once: bool = False) -> ProcessingTotals:
        """Passes until ``stop`` is set (``once``: one pass). Closes this thread's database
        connection as it ends."""
        try:
            while not self.stop.is_set():
                pause = self.pause_seconds
                try:
                    self.retest_if_due()
                    self._said.pop(RETESTS_FAILED, None)
                except Exception as exc:  # a refusal or the database away: processing goes on regardless
                    self._failed(RETESTS_FAILED, exc)
                    pause = FAILED_PASS_PAUSE
                try:
                    if self.process:
                        summary = self.run_pass()
                        self.totals.add(summary)
                        if self._said.pop(PASS_FAILED, None) is not None:
                            faults.log.info("processing goes on: the database answers again")
                        if self.on_pass is not None:
                            self.on_pass(summary)
                except Exception as exc:  # the database went away: say so, and try again later
                    self._failed(PASS_FAILED, exc)
                    pause = FAILED_PASS_PAUSE
                if once:
                    break
                self.stop.wait(pause)
        finally:
            database.close()
        return self.totals

    def _failed(self, what: str, exc: Exception) -> None:
        """One line for a fault of the machine (a full disk, every connection slot taken...) the
        first time it stops ``what`` (``mbxtui worker`` prints it); a traceback for anything else."""
        forget_connection()  # maybe broken (the server restarted or ended it), or refused: the next try connects anew
        fault = fault_sentence(exc)
        if fault is None:
            log.exception(what)
            return
        if self._said.get(what) != fault:
            self._said[what] = fault
            paused = {"paused": "Processing", "fault": fault} if what == PASS_FAILED else {}
            faults.log.warning("%s: %s", what, fault, extra=paused)

    def run_pass(self) -> SyncSummary:
        """One pass, by runners of their own (what a runner gathers, such as the profiles that
        failed, is per pass): the incoming cycles, then the due outgoing email (R29)."""
        lease = {} if self.lease_seconds is None else {"lease_seconds": self.lease_seconds}
        incoming = SyncRunner(self.secrets, threads=self.threads, stop=self.stop, **lease)
        outgoing = OutgoingRunner(self.secrets, threads=self.threads, stop=self.stop, **lease)
        # The Test & Enable runner of this process must not take these runners' slots for a dead
        # worker's (queue.recover).
        queue.running_here.update((incoming.worker, outgoing.worker))
        try:
            summary = incoming.run_once()
            if not self.stop.is_set():
                summary.outgoing = outgoing.run_once()
            return summary
        finally:
            queue.running_here.difference_update((incoming.worker, outgoing.worker))

    def retest_if_due(self) -> int:
        """Queue the re-tests that fell due (R33), at most every ``retest_check_seconds``."""
        if time.monotonic() - self._retests_checked < self.retest_check_seconds:
            return 0
        self._retests_checked = time.monotonic()
        queued = retests.schedule_retests(self.requested_by, utcnow())
        if queued:
            self.totals.retests += queued
            if self.on_retests is not None:
                self.on_retests(queued)
        return queued

    def start(self, *, once: bool = False) -> threading.Thread:
        """Run on a thread of its own (see the module's text); join it after setting ``stop``."""
        thread = threading.Thread(target=self.run, kwargs={"once": once}, name="mbxtui-processing", daemon=True)
        thread.start()
        return thread
