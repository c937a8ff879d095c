"""The event log's figures in the Prometheus text format, served while ``lakehouse run``
runs (``observe.metrics_port``; off by default).

Figures come from the run's own ``EventLog`` in memory (no table is read per scrape):
counters since the process started, and gauges of each pipeline's newest batch. Names
follow Prometheus conventions: a ``lakehouse_`` prefix, base units (seconds, records),
``_total`` on counters. Freshness is ``time() - lakehouse_newest_event_timestamp_seconds``
in PromQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.observe.events import EventLog, Totals

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


@contextlib.contextmanager
def serving(log: EventLog, host: str, port: int, printer: Any) -> Iterator[str | None]:
    """Serve ``/metrics`` at ``host:port`` while the block runs (port 0: nothing); yields
    the URL."""
    if not port:
        yield None
        return
    registry = CollectorRegistry()
    registry.register(_Figures(log))
    try:
        server, thread = start_http_server(port, host, registry=registry)
    except OSError as exc:
        raise LakehouseError(ErrorCode.METRICS_PORT_TAKEN,
                             f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}",
                             hint="choose another observe.metrics_port (0 turns the endpoint "
                                  "off)", port=port) from None
    url = f"http://{host}:{port}/metrics"
    printer(f"metrics (Prometheus) at {url}")
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
