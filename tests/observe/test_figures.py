"""Status, SLOs and metrics from event rows (pure: DuckDB over Arrow, no warehouse)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from lakehouse.config import SloConfig
from lakehouse.observe.events import SCHEMA, Totals
from lakehouse.observe.figures import (
    Pipeline,
    describe_slos,
    describe_status,
    evaluate_slos,
    pipeline_figures,
)
from lakehouse.observe.metrics import families

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def row(pipeline: str, minutes_ago: float, **values: object) -> dict[str, object]:
    ended = NOW - timedelta(minutes=minutes_ago)
    return {"pipeline": pipeline, "layer": pipeline.split(".")[0], "batch_id": 1,
            "ended_at": ended, "event_date": ended.date(), **values}


EVENTS = pa.Table.from_pylist([
    row("bronze.orders", 50, input_rows=1000, kafka_lag=20_000),
    row("bronze.orders", 1, input_rows=1000, kafka_lag=0),
    row("silver.orders", 40, input_rows=1000, quarantined=10, duplicates=5),
    row("silver.orders", 2, input_rows=1000, quarantined=0, duplicates=0, input_version=7,
        error="[LH-QUALITY-001] a critical rule failed"),
    row("gold.revenue", 30, input_rows=990, latency_p95_ms=4_000.0,
        newest_event_time=NOW - timedelta(minutes=30, seconds=3)),
    row("gold.revenue", 3, input_rows=900, latency_p95_ms=90_000.0,
        newest_event_time=NOW - timedelta(minutes=5)),
    row("gold.revenue", 200, input_rows=5, latency_p95_ms=1.0),  # outside the window
], schema=SCHEMA)


def test_pipeline_figures_count_the_window_and_keep_the_newest_batch() -> None:
    figures = pipeline_figures(EVENTS, NOW - timedelta(hours=1))
    silver = figures["silver.orders"]
    assert (silver.batches, silver.errors, silver.input_rows, silver.quarantined) == (2, 1, 2000,
                                                                                       10)
    assert silver.pass_rate == 0.995 and silver.last_error.startswith("[LH-QUALITY-001]")
    assert figures["bronze.orders"].kafka_lag == 0  # the newest batch's, not the worst
    gold = figures["gold.revenue"]
    assert gold.batches == 2 and gold.freshness(NOW) == timedelta(minutes=5)


def test_slos_burn_their_budget() -> None:
    window = EVENTS.filter(pa.compute.greater_equal(EVENTS["ended_at"],
                                                     pa.scalar(NOW - timedelta(hours=1))))
    slo = SloConfig(freshness_p95_seconds=60, pass_rate_min=0.98, duplicate_rate_max=0.0,
                    lag_p95_records=10_000)
    fresh, quality, dups, lag = evaluate_slos(slo, window, {"silver.orders": (1980, 0)})
    assert fresh.breached and fresh.burn_rate == 0.5 / 0.05  # 1 of 2 gold batches over 60 s
    # The failed batch committed nothing: 10 of 1,000 records against a 2% budget.
    assert quality.burn_rate == pytest.approx(0.5) and not quality.breached
    assert dups.burn_rate == 0 and dups.status == "ok"
    assert lag.breached and lag.observed.endswith("records")
    again = evaluate_slos(slo, window, {"silver.orders": (1980, 2)})[2]
    assert again.breached and math.isinf(again.burn_rate or 0)
    empty = evaluate_slos(slo, SCHEMA.empty_table(), {})
    assert [r.status for r in empty] == ["no data"] * 4
    table = describe_slos([fresh, quality, dups, lag], 60)
    assert "BREACHED" in table[2] and table[1].split()[:2] == ["objective", "target"]


def test_the_status_screen() -> None:
    found = [Pipeline("bronze.orders", "bronze", "shop.orders.v1",
                      {"pid": 42, "host": "node-1", "doing": "lakehouse run",
                       "since": "2026-12-01T11:00:00+00:00"}),
             Pipeline("silver.orders", "silver", "bronze.orders", None),
             Pipeline("gold.revenue", "gold", "silver.orders", None),
             Pipeline("gold.unused", "gold", "silver.orders", None)]
    lines = describe_status(found, pipeline_figures(EVENTS, NOW - timedelta(hours=1)), NOW,
                            60, False, {"bronze.orders": 10})
    text = "\n".join(lines)
    assert "running: pid 42 on node-1 (lakehouse run, since 11:00:00)" in lines[1]
    assert "60 s ago" in lines[1] and "0 records" in lines[1]
    assert "not running" in lines[2] and "3 versions" in lines[2] and "5.0 min" in lines[3]
    assert "never" in lines[4]
    assert "silver.orders: its newest batch failed: [LH-QUALITY-001]" in text
    assert "silver.orders  2,000    99.50%     10 (0.50%)   5" in text


def test_metrics_follow_the_prometheus_conventions() -> None:
    totals = Totals()
    for r in EVENTS.to_pylist()[:2]:
        totals.add({**r, "kafka_lag_by_partition": {"shop.orders.v1:0": 0}, "output_rows":
                    {"bronze.orders": 1000}, "duration_ms": {"triggerExecution": 1500}})
    registry = CollectorRegistry()

    class Fixed:
        def collect(self):  # type: ignore[no-untyped-def]
            return families({"bronze.orders": totals})

    registry.register(Fixed())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert parsed["lakehouse_batches"].type == "counter"
    assert parsed["lakehouse_batches"].samples[0].name == "lakehouse_batches_total"
    assert parsed["lakehouse_batches"].samples[0].value == 2
    assert parsed["lakehouse_input_records"].samples[0].value == 2000
    out = parsed["lakehouse_output_records"].samples[0]
    assert out.labels == {"pipeline": "bronze.orders", "table": "bronze.orders"}
    assert parsed["lakehouse_batch_duration_seconds"].samples[0].value == 1.5
    assert parsed["lakehouse_kafka_lag_records"].samples[0].labels["partition"] == \
        "shop.orders.v1:0"
    assert openmetrics(registry).decode().endswith("# EOF\n")  # valid OpenMetrics too


def test_the_newest_batch_decides_whether_a_pipeline_is_failing() -> None:
    healed = pa.Table.from_pylist([
        row("silver.orders", 5, input_rows=10, error="[LH-STREAM-001] broke"),
        row("silver.orders", 1, input_rows=10)], schema=SCHEMA)
    assert pipeline_figures(healed, NOW - timedelta(hours=1))["silver.orders"].last_error is None


def test_events_that_never_reach_gold_breach_freshness() -> None:
    stuck = pa.Table.from_pylist([row("bronze.orders", 5, input_rows=100, kafka_lag=0)],
                                 schema=SCHEMA)
    fresh = evaluate_slos(SloConfig(), stuck, {})[0]
    assert fresh.breached and fresh.observed == "none reached gold"
    idle = pa.Table.from_pylist([row("bronze.orders", 5, input_rows=0)], schema=SCHEMA)
    assert evaluate_slos(SloConfig(), idle, {})[0].status == "no data"
