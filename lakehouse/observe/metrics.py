"""The event log's figures in the Prometheus text format, served while ``lakehouse run``
runs (``observe.metrics_port``; off by default).

Figures come from the run's own ``EventLog`` in memory (no table is read per scrape):
counters since the process started, and gauges of each pipeline's newest batch. Names
follow Prometheus conventions: a ``lakehouse_`` prefix, base units (seconds, records),
``_total`` on counters. Freshness is ``time() - lakehouse_newest_event_timestamp_seconds``
in PromQL.

The endpoint binds the loopback unless ``observe.metrics_host`` says otherwise, and can
want HTTP basic auth (``metrics_users``) and serve HTTPS (``metrics_certificate``):
``prometheus_client``'s own server has no basic auth, and handshakes TLS on its one
accepting thread (one idle connection stalls every scrape), so it is served here by a
small threading WSGI server that handshakes each connection on its own thread.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.observe.events import EventLog, Totals
from lakehouse.settings import ObserveConfig

LOOPBACK = ("127.0.0.1", "::1", "localhost")
HANDSHAKE_TIMEOUT_S = 10.0

LATENCIES = (("50", "latency_p50_ms"), ("95", "latency_p95_ms"),
             ("99", "latency_p99_ms"), ("100", "latency_max_ms"))
"""``percentile`` label -> column (``quantile`` is reserved for summaries)."""


def families(totals: dict[str, Totals]) -> list[Metric]:
    """The metric families of every pipeline's totals (pure)."""
    counter = partial(CounterMetricFamily, labels=("pipeline",))
    gauge = partial(GaugeMetricFamily, labels=("pipeline",))
    batches = counter("lakehouse_batches", "Micro-batches run")
    failed = counter("lakehouse_failed_batches", "Micro-batches that failed")
    inputs = counter("lakehouse_input_records", "Records the batches read")
    quarantined = counter("lakehouse_quarantined_records",
                          "Records silver sent to quarantine (contract or suite failed)")
    duplicates = counter("lakehouse_duplicate_records",
                         "Records silver dropped as duplicates (counted, not lost)")
    outputs = counter("lakehouse_output_records", "Rows committed, per table",
                      labels=("pipeline", "table"))
    lag = gauge("lakehouse_kafka_lag_records",
                "Records the topic held past the newest batch, per partition",
                labels=("pipeline", "partition"))
    duration = gauge("lakehouse_batch_duration_seconds", "Duration of the newest batch")
    latency = gauge("lakehouse_event_latency_seconds",
                    "Event (Kafka timestamp) to commit latency over the newest batch's records",
                    labels=("pipeline", "percentile"))
    last = gauge("lakehouse_last_batch_timestamp_seconds", "When the newest batch ended")
    newest = gauge("lakehouse_newest_event_timestamp_seconds",
                   "The newest Kafka timestamp committed (freshness: time() minus this)")
    for name, t in sorted(totals.items()):
        row: dict[str, Any] = t.last
        batches.add_metric([name], t.batches)
        failed.add_metric([name], t.failed_batches)
        inputs.add_metric([name], t.input_rows)
        quarantined.add_metric([name], t.quarantined)
        duplicates.add_metric([name], t.duplicates)
        for table, rows in sorted(t.output_rows.items()):
            outputs.add_metric([name, table], rows)
        for partition, records in sorted((row.get("kafka_lag_by_partition") or {}).items()):
            lag.add_metric([name, partition], records)
        took = (row.get("duration_ms") or {})
        if "triggerExecution" in took or "batch" in took:
            duration.add_metric([name], took.get("triggerExecution", took.get("batch", 0)) / 1000)
        for percentile, column in LATENCIES:
            if row.get(column) is not None:
                latency.add_metric([name, percentile], row[column] / 1000)
        if row.get("ended_at") is not None:
            last.add_metric([name], row["ended_at"].timestamp())
        if row.get("newest_event_time") is not None:
            newest.add_metric([name], row["newest_event_time"].timestamp())
    return [batches, failed, inputs, quarantined, duplicates, outputs, lag, duration,
            latency, last, newest]


class _Figures(Collector):
    def __init__(self, log: EventLog) -> None:
        self.log = log

    def collect(self) -> Iterator[Metric]:
        yield from families(self.log.totals())


def with_basic_auth(app: Callable[..., Iterable[bytes]], users: Mapping[str, str]
                    ) -> Callable[..., Iterable[bytes]]:
    """``app`` answering only requests whose basic auth names one of ``users`` with its
    password (compared in constant time); 401 otherwise."""
    accepted = [f"Basic {base64.b64encode(f'{u}:{p}'.encode()).decode()}".encode()
                for u, p in users.items()]

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        given = environ.get("HTTP_AUTHORIZATION", "").encode()
        if any(hmac.compare_digest(given, a) for a in accepted):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="lakehouse"'),
                                            ("Content-Type", "text/plain")])
        return [b"authentication required\n"]
    return guarded


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged."""


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per connection; with ``tls``, each handshakes on its own thread."""

    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            tls = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return  # no TLS, or a client that never handshakes: that connection only
        with tls:
            super().finish_request(tls, client_address)


@contextlib.contextmanager
def serving(log: EventLog, observe: ObserveConfig, printer: Any) -> Iterator[str | None]:
    """Serve ``/metrics`` at ``observe.metrics_host``:``metrics_port`` while the block runs
    (port 0: nothing), behind basic auth and TLS if configured; yields the URL."""
    host, port = observe.metrics_host, observe.metrics_port
    if not port:
        yield None
        return
    registry = CollectorRegistry()
    registry.register(_Figures(log))
    app = make_wsgi_app(registry)
    if observe.metrics_users:
        app = with_basic_auth(app, observe.metrics_users)
    tls = None
    if observe.metrics_certificate:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls.load_cert_chain(observe.metrics_certificate)
        except (OSError, ssl.SSLError) as exc:
            raise LakehouseError(
                ErrorCode.CONFIG_BAD_VALUE,
                f"observe.metrics_certificate {observe.metrics_certificate}: {exc}",
                hint="give one readable PEM file holding the unencrypted private key and its "
                     "certificate chain", key="observe.metrics_certificate") from None
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server: WSGIServer = make_server(host, port, app, handler_class=_Quiet, server_class=type(
            "MetricsServer", (_Server,), {"address_family": family, "tls": tls}))
    except OSError as exc:
        raise LakehouseError(ErrorCode.METRICS_PORT_TAKEN,
                             f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}",
                             hint="choose another observe.metrics_port (0 turns the endpoint "
                                  "off)", port=port) from None
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    url = f"{'https' if tls else 'http'}://{host}:{port}/metrics"
    printer(f"metrics (Prometheus) at {url}"
            + (" (basic auth)" if observe.metrics_users else ""))
    if host not in LOOPBACK and not observe.metrics_users:
        printer(f"warning: metrics at {url} are open to anyone who reaches {host}:{port}: "
                "set observe.metrics_users (and metrics_certificate), or bind the loopback")
    elif host not in LOOPBACK and not tls:
        printer(f"warning: metrics at {url} take passwords in clear over the network: set "
                "observe.metrics_certificate")
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
