"""Test & Enable: ``test-enable`` (queue the tests, or run them at once with --wait) and ``worker``
(run queued tests and due retries and, unless --no-process, process the enabled mailboxes: see
core/sync/loop.py). The worker reports through logging: one line per tested mailbox and per
cycle that recorded mail or failed on stdout, re-tests queued and the summary on stderr, all also in
the log file when there is one."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Sequence

from mbxtui import logs
from mbxtui.cli.context import Context, selection
from mbxtui.cli.options import Commands, UsageError, command, json_option, selection_options
from mbxtui.cli.output import EXIT_OK, EXIT_TEST_FAILED, emit, print_json, print_table
from mbxtui.core.display import safe
from mbxtui.core.errors import MbxError

if TYPE_CHECKING:
    from mbxtui.cli.health_server import HealthServer
    from mbxtui.core.jobs.runner import EnablementRunner
    from mbxtui.core.sync.loop import ProcessingLoop
    from mbxtui.core.sync.runner import SyncSummary

tested_log = logging.getLogger("mbxtui.worker.tested")
processed_log = logging.getLogger("mbxtui.worker.processed")
summary_log = logging.getLogger("mbxtui.worker.summary")

RESULT_COLUMNS = [("email", "EMAIL"), ("outcome", "OUTCOME"), ("incoming_status", "IN"),
                  ("outgoing_status", "OUT"), ("act_status", "ACT"), ("error_code", "ERROR"),
                  ("error", "WHAT TO DO")]


def log_tested(events: Sequence[Any]) -> None:
    """One line per tested mailbox: its address, the outcome, and each failed direction's code. Each
    value is escaped on its own, so that a line break in an address cannot start a forged line."""
    for event in events:
        codes = ", ".join(f"{safe(direction)}: {safe(code)}" for direction, code in event.failures.items())
        tested_log.info("%s: %s%s", safe(event.email), safe(event.outcome), f" ({codes})" if codes else "")


def log_processed(summary: SyncSummary) -> None:
    """One line per eventful cycle (see ``sync.loop.eventful``): the address, what was read and
    recorded, or the error code; and one per mailbox that sent email or failed to."""
    from mbxtui.core.sync.loop import eventful

    for cycled in filter(eventful, summary.mailboxes):
        if not cycled.ok:
            processed_log.info("%s: failed (%s)", safe(cycled.email), safe(cycled.error_code))
            continue
        extra = "".join(f", {count} {what}" for count, what in ((cycled.unresolved, "unresolved"),
                                                                 (cycled.deleted, "deleted")) if count)
        processed_log.info("%s: %d read, %d recorded%s", safe(cycled.email), cycled.messages, cycled.recorded, extra)
    for sending in summary.outgoing.mailboxes:
        if not sending.ok:
            processed_log.info("%s: sending failed (%s)", safe(sending.email), safe(sending.error_code))
        elif sending.sent or sending.failed or sending.uncertain:
            processed_log.info("%s: %d sent, %d refused, %d uncertain", safe(sending.email), sending.sent,
                               sending.failed, sending.uncertain)


def _runner(ctx: Context, *, threads: int, on_tested: Callable[[Sequence[Any]], None] | None = None,
            **options: Any) -> EnablementRunner:
    from mbxtui.core.jobs.runner import EnablementRunner

    return EnablementRunner(ctx.store, threads=threads, on_tested=on_tested, **options)


def cmd_test_enable(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.jobs import queue as jobs
    from mbxtui.core.services import enablement, mailbox_views

    request = enablement.schedule(ctx.actor, selection(args)).as_dict()
    if not args.wait:
        emit(args, request, lambda d: print(
            f"Test & Enable queued for {d['queued']} mailbox(es) (batch {d['batch']}); "
            "run `mbxtui worker` or open the console to run it"))
        return EXIT_OK
    batch = request["batch"]
    show_progress = sys.stderr.isatty()

    def report(events: Sequence[Any]) -> None:
        log_tested(events)
        if show_progress:
            p = jobs.batch_progress(batch)
            print(f"\rtested {p.done}/{p.total}: {p.passed} passed, {p.failed} failed, "
                  f"{p.postponed} postponed, {p.remaining} remaining ", end="", file=sys.stderr, flush=True)

    _runner(ctx, threads=args.threads, on_tested=report).run(until_idle=True)
    if show_progress:
        print(file=sys.stderr)
    results = []
    for row in jobs.batch_results(batch):
        details = mailbox_views.rows_by_ids(ctx.actor, [row.mailbox_id])[row.mailbox_id]
        results.append({
            "email": details["email"], "outcome": row.outcome,
            "incoming_status": details["incoming_status"], "outgoing_status": details["outgoing_status"],
            "act_status": details["act_status"], "error_code": details["last_error_code"],
            "error": details["last_error_text"], "next_retry": details["postponed_until"],
            "directions": row.directions,
        })
    progress = jobs.batch_progress(batch)
    if args.json:
        print_json({"batch": batch, "progress": progress.as_dict(), "results": results})
    else:
        print_table(results, RESULT_COLUMNS,
                    footer=f"{progress.passed} passed, {progress.failed} failed, {progress.postponed} postponed")
    return EXIT_OK if progress.passed == progress.total else EXIT_TEST_FAILED


def cmd_worker(ctx: Context, args: argparse.Namespace) -> int:
    from mbxtui.core.metrics import WORKER as metrics
    from mbxtui.core.sync.loop import ProcessingLoop

    if args.lease <= 0:
        raise UsageError("--lease: a number of seconds above 0")
    if args.sync_threads < 1:
        raise UsageError("--sync-threads: a whole number above 0")
    if args.health_port is not None and not 1 <= args.health_port <= 65535:
        raise UsageError(f"--health-port: {args.health_port} is out of range 1-65535")
    metrics.restart()

    def tested(events: Sequence[Any]) -> None:
        metrics.tested(event.outcome.value for event in events)
        log_tested(events)

    def processed(summary: SyncSummary) -> None:
        metrics.pass_ended(summary)
        log_processed(summary)

    runner = _runner(ctx, threads=args.threads, on_tested=tested, lease_seconds=args.lease)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        runner.wake()

    def retests_queued(count: int) -> None:
        summary_log.info("re-test queued for %d mailbox(es): not proven within their profile's interval (R33)", count)
        runner.wake()

    processing = ProcessingLoop(ctx.store, requested_by=ctx.actor.login, stop=stop, process=not args.no_process,
                                threads=args.sync_threads, pause_seconds=args.poll, on_pass=processed,
                                on_retests=retests_queued, lease_seconds=args.lease)
    health = _health_server(ctx, args, runner.worker, stop) if args.health_port is not None else None
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, request_stop)
    try:
        with logs.echo(tested_log, sys.stdout), logs.echo(processed_log, sys.stdout), \
                logs.echo(summary_log, sys.stderr), \
                logs.echo(logging.getLogger("mbxtui.core.descriptors"), sys.stderr), \
                logs.echo(logging.getLogger("mbxtui.core.clock"), sys.stderr), \
                logs.echo(logging.getLogger("mbxtui.core.faults"), sys.stderr):  # open files, clock jumps, full disks
            if health is not None:
                summary_log.info("health: http://%s:%d/healthz and /metrics", safe(args.health_host), health.port)
            return _work(args, runner, processing, stop)
    finally:
        if health is not None:
            health.close()


def _health_server(ctx: Context, args: argparse.Namespace, worker: str, stop: threading.Event) -> HealthServer:
    from mbxtui.cli.health_server import HealthServer
    from mbxtui.core.metrics import WORKER as metrics
    from mbxtui.core.readiness import DatabaseProbe

    return HealthServer(args.health_host, args.health_port, metrics=metrics, probe=DatabaseProbe(ctx.db_path),
                        worker=worker, lease_seconds=args.lease, processing=not args.no_process,
                        stopping=stop.is_set).start()


def _work(args: argparse.Namespace, runner: EnablementRunner, processing: ProcessingLoop,
          stop: threading.Event) -> int:
    """Run until stopped (``--once``: what is due now), then log the totals."""
    if args.once:
        # What is due now: the re-tests, the tests, then one pass over what they enabled.
        try:
            processing.retest_if_due()
        except MbxError as exc:  # a refusal (the role may not queue tests): the rest runs
            summary_log.warning("re-tests not queued: %s", safe(str(exc)))
        summary = runner.run(stop=stop, until_idle=True)
        processing.start(once=True).join()
    else:
        thread = processing.start()
        try:
            summary = runner.run(stop=stop, until_idle=False, poll_seconds=args.poll)  # waits out faults that pass
        finally:
            stop.set()
            thread.join()  # the cycles in flight finish, each within its profile's timeout
    totals = processing.totals
    if totals.recorded or totals.failed:
        summary_log.info("processed %d cycle(s): %d message(s) read, %d recorded, %d failed",
                         totals.cycles, totals.messages, totals.recorded, totals.failed)
    summary_log.info("tested %d: %d passed, %d failed, %d postponed",
                     summary.tested, summary.passed, summary.failed, summary.postponed)
    return EXIT_OK


def register_test_enable(commands: Commands) -> None:
    p = command(commands, "test-enable", cmd_test_enable,
                "Test & Enable mailboxes: connect to their servers and enable what passes")
    selection_options(p, profile=True)
    p.add_argument("--wait", action="store_true", help="run the tests now and print each result "
                   "(exit 0 if all passed, 3 if any failed)")
    p.add_argument("--threads", type=int, default=32, help="tests run at once (each profile's bound still holds)")
    json_option(p)


def register_worker(commands: Commands) -> None:
    p = command(commands, "worker", cmd_worker, "run queued Test & Enable jobs and due retries, and process the "
                "enabled mailboxes (read their mail)")
    p.add_argument("--once", action="store_true", help="run what is due now (tests, then one processing pass), "
                   "then exit")
    p.add_argument("--threads", type=int, default=32, help="tests run at once")
    p.add_argument("--no-process", action="store_true", help="only run tests: process no mailbox")
    p.add_argument("--sync-threads", type=int, default=8, help="mailboxes processed at once (each profile's "
                   "bound, shared with the tests and every other worker, still holds)")
    p.add_argument("--poll", type=float, default=5.0, metavar="SECONDS", help="how often to look for new jobs "
                   "and for mailboxes due for processing")
    p.add_argument("--lease", type=float, default=60.0, metavar="SECONDS",
                   help="how long the jobs, mailboxes and connection slots of a worker that died stay held "
                   "before other workers take them over (a live worker renews them)")
    p.add_argument("--health-port", type=int, metavar="PORT", help="serve /healthz (200 when the worker is fit "
                   "to keep its work, 503 with the reason otherwise) and /metrics (Prometheus) on this port")
    p.add_argument("--health-host", default="127.0.0.1", metavar="HOST",
                   help="the address --health-port listens on (default 127.0.0.1: this host only)")


def register(commands: Commands) -> None:
    register_test_enable(commands)
    register_worker(commands)
