"""The HTTP face of ``mbxtui worker --health-port``: ``/healthz`` for supervisors and load balancers
(200 with a small JSON when the worker is fit to keep its work, 503 with the reason otherwise; see
core/readiness.py) and ``/metrics`` in the Prometheus text format (the counts of core/metrics.py).
It serves on a daemon thread, started and stopped with the worker."""

from __future__ import annotations

import errno
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mbxtui.core.errors import MbxError
from mbxtui.core.metrics import WorkerMetrics
from mbxtui.core.readiness import DatabaseProbe, Readiness, readiness


class WorkerCollector(Collector):
    """The worker's counts as Prometheus metrics, read at each scrape."""

    def __init__(self, metrics: WorkerMetrics, worker: str, processing: bool) -> None:
        self.metrics = metrics
        self.worker = worker
        self.processing = processing

    def collect(self) -> Iterator[Metric]:
        snapshot = self.metrics.snapshot()
        now = time.monotonic()
        tests = CounterMetricFamily("mbxtui_test_jobs", "Test & Enable jobs this worker finished, by outcome",
                                    labels=["outcome"])
        for outcome in ("passed", "failed", "postponed"):
            tests.add_metric([outcome], snapshot.tests.get(outcome, 0))
        yield tests
        cycles = CounterMetricFamily("mbxtui_cycles", "Processing cycles (incoming) this worker ran, by result",
                                     labels=["result"])
        for result in ("ok", "failed"):
            cycles.add_metric([result], snapshot.cycles.get(result, 0))
        yield cycles
        yield CounterMetricFamily("mbxtui_messages_read", "Messages this worker's cycles read from mail servers",
                                  value=snapshot.messages_read)
        yield CounterMetricFamily("mbxtui_messages_recorded", "Messages this worker recorded as activities",
                                  value=snapshot.messages_recorded)
        yield CounterMetricFamily("mbxtui_emails_sent", "Queued email this worker sent", value=snapshot.emails_sent)
        yield CounterMetricFamily("mbxtui_emails_refused", "Queued email the servers refused from this worker",
                                  value=snapshot.emails_refused)
        yield CounterMetricFamily("mbxtui_lease_renewals", "Renewals of this worker's job and connection leases",
                                  value=snapshot.lease_renewals)
        connections = GaugeMetricFamily("mbxtui_connections_in_use", "Mail server connections this worker has "
                                        "open, per profile id (within the profile's bound, R8)",
                                        labels=["profile_id"])
        for profile_id, count in sorted(snapshot.connections_in_use.items()):
            connections.add_metric([str(profile_id)], count)
        yield connections
        if self.processing:
            since = snapshot.last_pass_at if snapshot.last_pass_at is not None else snapshot.started_at
            yield GaugeMetricFamily(
                "mbxtui_cycle_lag_seconds", "Seconds since this worker last finished a processing pass (one "
                "starts every --poll seconds: far above that, processing is stuck or falling behind)",
                value=round(now - since, 3))
        if snapshot.last_renewal_at is not None:
            yield GaugeMetricFamily("mbxtui_lease_age_seconds", "Seconds since this worker last renewed its leases",
                                    value=round(now - snapshot.last_renewal_at, 3))


class HealthServer:
    """Serves ``/healthz`` and ``/metrics`` on ``host:port`` until ``close``. ``stopping``: whether
    the worker is draining (then ``/healthz`` answers 503)."""

    def __init__(self, host: str, port: int, *, metrics: WorkerMetrics, probe: DatabaseProbe, worker: str,
                 lease_seconds: float, processing: bool, stopping: Callable[[], bool]) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(WorkerCollector(metrics, worker, processing))

        def verdict() -> Readiness:
            return readiness(metrics, probe, lease_seconds=lease_seconds, stopping=stopping())

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    answer = verdict()
                    body = json.dumps({**answer.as_dict(), "worker": worker}).encode()
                    self._send(200 if answer.ok else 503, "application/json", body)
                elif path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
                pass  # a scrape every few seconds is not worth a line of the worker's log

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MbxError(f"--health-port: port {port} on {host} is already in use: choose another port "
                               "or stop what listens there") from None
            raise MbxError(f"--health-port: cannot listen on {host} port {port}: {exc.strerror}") from None
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="mbxtui-health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
